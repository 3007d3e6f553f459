"""``MessageStore.accept`` (one transaction for an SMTP acceptance) and ``queue.finish``
deleting an unshared blob: the contract, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from caducee.core.errors import NotFound, QuotaExceeded
from caducee.core.model import AuditEvent, Mailbox, MailboxType, QueueRecipient
from caducee.storage.interfaces import Delivery, Enqueue, Storage


async def _box(storage: Storage, address: str, quota: int = 0) -> Mailbox:
    return await storage.accounts.create_mailbox(
        address, MailboxType.PER, "810001045367", quota_bytes=quota
    )


def _enqueue(domain: str = "medecin.mssante.test") -> Enqueue:
    exp = datetime.now(UTC) + timedelta(days=1)
    return Enqueue("a@ch.test", (QueueRecipient(f"x@{domain}", frozenset({"SUCCESS"})),),
                   domain, exp, "ENV1", "HDRS")  # fmt: skip


async def test_accept_stores_everything_in_one_go(storage: Storage) -> None:
    inbox = await _box(storage, "bob@ch.test")
    sender = await _box(storage, "a@ch.test")
    ref = await storage.blobs.put(b"Subject: x\r\n\r\nbody\r\n", durable=False)
    event = AuditEvent("smtp.submission.accepted", "ok", "a", "q1", {"size": "20"}, node="n1")
    done = await storage.messages.accept(
        ref,
        [
            Delivery((inbox.mailbox_id,), dedup_key="k1"),
            Delivery((sender.mailbox_id,), "Sent", frozenset({"\\Seen"}), "k2", True),
        ],
        [_enqueue()],
        [event],
    )
    assert [len(m) for m in done.messages] == [1, 1] and done.over_quota == ()
    assert done.messages[1][0].flags == {"\\Seen"}
    assert len(done.queue_ids) == 1
    item = await storage.queue.get(done.queue_ids[0])
    assert item is not None and item.blob == ref and item.envid == "ENV1"
    assert item.recipients[0].notify == {"SUCCESS"}
    got = await storage.audit.query(kind_prefix="smtp.submission.accepted")
    assert [(e.target, e.node, dict(e.details)) for e in got] == [("q1", "n1", {"size": "20"})]
    # The same dedup keys again (a retry): nothing stored twice.
    again = await storage.messages.accept(
        ref, [Delivery((inbox.mailbox_id,), dedup_key="k1")], [], []
    )
    assert again.messages == ((),)
    inbox_folder = await storage.messages.get_folder(inbox.mailbox_id, "INBOX")
    assert inbox_folder is not None
    assert len(await storage.messages.list_messages(inbox_folder.folder_id)) == 1


async def test_accept_is_all_or_nothing(storage: Storage) -> None:
    full = await _box(storage, "full@ch.test", quota=5)
    ref = await storage.blobs.put(b"x" * 100)
    event = AuditEvent("smtp.relay.accepted", "ok", "CN=x", "q2")
    with pytest.raises(QuotaExceeded):
        await storage.messages.accept(ref, [Delivery((full.mailbox_id,))], [_enqueue()], [event])
    assert await storage.queue.list() == []
    assert await storage.audit.query(kind_prefix="smtp.relay.accepted") == []
    with pytest.raises(NotFound):  # a missing BAL: nothing stored either
        await storage.messages.accept(ref, [Delivery((999_999,))], [_enqueue()], [event])
    assert await storage.queue.list() == []


async def test_accept_skips_an_optional_delivery_over_quota(storage: Storage) -> None:
    full = await _box(storage, "full@ch.test", quota=5)
    ref = await storage.blobs.put(b"x" * 100)
    done = await storage.messages.accept(
        ref, [Delivery((full.mailbox_id,), "Sent", dedup_key="s1", skip_over_quota=True)],
        [_enqueue()],
    )  # fmt: skip
    assert done.over_quota == (0,) and done.messages == ((),) and len(done.queue_ids) == 1
    mb = await storage.accounts.get_mailbox("full@ch.test")
    assert mb is not None and mb.used_bytes == 0  # the skipped delivery left nothing behind
    assert await storage.messages.find_by_dedup(full.mailbox_id, "s1") is None


async def test_finish_deletes_an_unshared_blob_and_records_its_audit(storage: Storage) -> None:
    box = await _box(storage, "bob@ch.test")
    shared = await storage.blobs.put(b"shared")
    alone = await storage.blobs.put(b"alone")
    a = await storage.messages.accept(shared, [Delivery((box.mailbox_id,))], [_enqueue()])
    b = await storage.messages.accept(alone, [], [_enqueue(), _enqueue("other.test")])
    event = AuditEvent("smtp.outbound.delivered", "ok", "system", "medecin.mssante.test")
    await storage.queue.finish(a.queue_ids[0], audit=[event])
    assert await storage.blobs.get(shared) == b"shared"  # still a message's
    await storage.queue.finish(b.queue_ids[0])
    assert await storage.blobs.get(alone) == b"alone"  # still the other item's
    await storage.queue.finish(b.queue_ids[1])
    with pytest.raises(NotFound):
        await storage.blobs.get(alone)
    got = await storage.audit.query(kind_prefix="smtp.outbound.delivered")
    assert len(got) == 1 and got[0].target == "medecin.mssante.test"


async def test_concurrent_logins_share_one_password_check(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from caducee.storage.passwords import PasswordHasher

    calls: list[str] = []
    real = PasswordHasher.verify

    def counting(self: PasswordHasher, login: str, stored: str, password: str) -> bool:
        calls.append(password)
        return real(self, login, stored, password)

    acc = await storage.accounts.create_account("carol", "s3cret pw")
    monkeypatch.setattr(PasswordHasher, "verify", counting)
    results = await asyncio.gather(
        *[storage.accounts.verify_password("carol", "s3cret pw") for _ in range(8)],
        *[storage.accounts.verify_password("carol", "wrong") for _ in range(4)],
    )
    assert results == [acc] * 8 + [None] * 4
    assert sorted(calls) == ["s3cret pw", "wrong"]  # one scrypt per distinct credential
