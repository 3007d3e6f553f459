"""Accounts, mailboxes, folders, deliver/list, blobs, queue, audit: the first contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from caducee.core.errors import Conflict, NotFound, QuotaExceeded
from caducee.core.model import AuditEvent, Mailbox, MailboxType, QueueRecipient
from caducee.storage.interfaces import DEFAULT_FOLDERS, Storage


async def test_account_password_and_cache(storage: Storage) -> None:
    acc = await storage.accounts.create_account("bob", "correct horse", display_name="Bob")
    assert acc.login == "bob" and acc.display_name == "Bob"
    assert await storage.accounts.verify_password("bob", "correct horse") == acc
    assert await storage.accounts.verify_password("BOB", "correct horse") == acc
    assert await storage.accounts.verify_password("bob", "wrong") is None
    assert await storage.accounts.verify_password("nobody", "x") is None
    # The cached success must not survive a password change.
    await storage.accounts.set_password("bob", "new one")
    assert await storage.accounts.verify_password("bob", "correct horse") is None
    assert await storage.accounts.verify_password("bob", "new one") == acc
    with pytest.raises(Conflict):
        await storage.accounts.create_account("Bob", "x")
    tokenless = await storage.accounts.create_account("app", None)
    assert await storage.accounts.verify_password(tokenless.login, "") is None
    assert [a.login for a in await storage.accounts.list_accounts()] == ["app", "bob"]
    await storage.accounts.delete_account("app")
    assert await storage.accounts.get_account("app") is None


async def test_mailbox_creation_default_folders_and_lookup(
    storage: Storage, mailbox: Mailbox
) -> None:
    assert mailbox.address == "Alice.Martin@ch-exemple.mssante.test"
    got = await storage.accounts.get_mailbox("alice.martin@CH-EXEMPLE.mssante.test")
    assert got == mailbox
    assert await storage.accounts.get_mailbox_by_id(mailbox.mailbox_id) == mailbox
    folders = await storage.messages.list_folders(mailbox.mailbox_id)
    assert {(f.name, f.special_use) for f in folders} == set(DEFAULT_FOLDERS)
    assert folders[0].name == "INBOX"
    assert len({f.uidvalidity for f in folders}) == len(folders)
    with pytest.raises(Conflict):
        await storage.accounts.create_mailbox("alice.martin@ch-exemple.mssante.test",
                                              MailboxType.PER, "x")  # fmt: skip
    assert [
        m.address for m in await storage.accounts.list_mailboxes("ch-exemple.mssante.test")
    ] == [mailbox.address]
    assert await storage.accounts.list_mailboxes("other.test") == []


async def test_delegation_rights(storage: Storage, mailbox: Mailbox) -> None:
    org = await storage.accounts.create_mailbox(
        "secretariat@ch-exemple.mssante.test", MailboxType.ORG, "123456789", quota_bytes=10_000
    )
    await storage.accounts.create_account("carol", "pw")
    assert await storage.accounts.rights("carol", org.mailbox_id) == ""
    await storage.accounts.grant("carol", org.address, "lrs")
    await storage.accounts.grant("alice", org.address, "lrswipkxtea")
    assert await storage.accounts.rights("carol", org.mailbox_id) == "lrs"
    held = {m.address: r for m, r in await storage.accounts.mailboxes_of("alice")}
    assert held == {mailbox.address: "lrswipkxtea", org.address: "lrswipkxtea"}
    await storage.accounts.revoke("carol", org.address)
    assert await storage.accounts.mailboxes_of("carol") == []
    # A login equal to the address owns the mailbox.
    await storage.accounts.create_account("secretariat@ch-exemple.mssante.test", "pw")
    assert await storage.accounts.rights("SECRETARIAT@ch-exemple.mssante.test",
                                         org.mailbox_id) == "lrswipkxtea"  # fmt: skip


async def test_deliver_list_dedup_and_quota(storage: Storage, mailbox: Mailbox) -> None:
    other = await storage.accounts.create_mailbox(
        "small@ch-exemple.mssante.test", MailboxType.ORG, "1", quota_bytes=150
    )
    ref = await storage.blobs.put(b"Subject: hi\r\n\r\n" + b"x" * 85)
    assert ref.size == 100
    got = await storage.messages.deliver(
        ref, [mailbox.mailbox_id, other.mailbox_id], flags=["\\seen", "$Label1"], dedup_key="m1"
    )
    assert [m.uid for m in got] == [1, 1]
    assert got[0].flags == frozenset({"\\Seen", "$Label1"})
    # Re-delivery with the same key: nothing new.
    assert await storage.messages.deliver(ref, [mailbox.mailbox_id], dedup_key="m1") == []
    # Quota: the second BAL is full, so nothing is stored anywhere (atomic).
    with pytest.raises(QuotaExceeded):
        await storage.messages.deliver(ref, [mailbox.mailbox_id, other.mailbox_id])
    inbox = await storage.messages.get_folder(mailbox.mailbox_id, "inbox")
    assert inbox is not None
    assert inbox.uidnext == 2 and inbox.message_count == 1 and inbox.unseen_count == 0
    msgs = await storage.messages.list_messages(inbox.folder_id)
    assert [(m.uid, m.size) for m in msgs] == [(1, 100)]
    assert await storage.blobs.get(msgs[0].blob) == b"Subject: hi\r\n\r\n" + b"x" * 85
    mb = await storage.accounts.get_mailbox_by_id(other.mailbox_id)
    assert mb is not None and mb.used_bytes == 100
    with pytest.raises(NotFound):
        await storage.messages.deliver(ref, [mailbox.mailbox_id], folder="Nope")


async def test_queue_enqueue_claim_lifecycle(storage: Storage) -> None:
    ref = await storage.blobs.put(b"message")
    expires = datetime.now(UTC) + timedelta(days=5)
    rcpts = [
        QueueRecipient("a@medecin.mssante.test", frozenset({"SUCCESS", "FAILURE"}), "rfc822;a@x"),
        QueueRecipient("b@medecin.mssante.test"),
    ]
    item_id = await storage.queue.enqueue(
        "sender@ch.test",
        rcpts,
        ref,
        "Medecin.mssante.test",
        expires=expires,
        envid="E1",
        ret="HDRS",
    )
    claimed = await storage.queue.claim("node-a", limit=10, lease_seconds=60)
    assert [i.item_id for i in claimed] == [item_id]
    item = claimed[0]
    assert item.domain == "medecin.mssante.test" and item.envid == "E1" and item.ret == "HDRS"
    assert item.recipients == tuple(rcpts) and item.blob == ref
    assert abs((item.expires - expires).total_seconds()) < 0.001
    assert await storage.queue.claim("node-b", limit=10, lease_seconds=60) == []
    await storage.queue.reschedule(item_id, datetime.now(UTC) + timedelta(hours=1), "4.4.1 timeout")
    assert await storage.queue.claim("node-b", limit=10, lease_seconds=60) == []
    await storage.queue.retry_now(item_id)
    again = await storage.queue.claim("node-b", limit=10, lease_seconds=60)
    assert again[0].attempts == 1 and again[0].last_error == "4.4.1 timeout"
    await storage.queue.set_recipient_state(item_id, "a@medecin.mssante.test",
                                            rcpts[0].state.DELIVERED, "250 ok")  # fmt: skip
    got = await storage.queue.get(item_id)
    assert got is not None and got.recipients[0].state == "delivered"
    assert [i.item_id for i in await storage.queue.list()] == [item_id]
    await storage.queue.finish(item_id)
    assert await storage.queue.get(item_id) is None
    await storage.blobs.delete(ref)
    with pytest.raises(NotFound):
        await storage.blobs.get(ref)


async def test_expired_lease_is_claimable_again(storage: Storage) -> None:
    ref = await storage.blobs.put(b"m")
    exp = datetime.now(UTC) + timedelta(days=1)
    item_id = await storage.queue.enqueue("", [QueueRecipient("x@y.test")], ref, "y.test",
                                          expires=exp)  # fmt: skip
    assert len(await storage.queue.claim("crashed", limit=1, lease_seconds=0.0)) == 1
    assert [i.item_id for i in await storage.queue.claim("n", limit=1, lease_seconds=30)] == [
        item_id
    ]


async def test_audit_record_and_query(storage: Storage) -> None:
    t0 = datetime.now(UTC) - timedelta(seconds=1)
    await storage.audit.record(AuditEvent("smtp.relay.refused", "refused", "CN=mx.x", "x.test",
                                          {"reason": "DN not listed"}))  # fmt: skip
    await storage.audit.record(AuditEvent("mailbox.created", "ok", "admin", "a@b.test"))
    await storage.audit.record(AuditEvent("smtp.relay.accepted", "ok", "CN=mx.y", "y.test"))
    events = await storage.audit.query()
    assert [e.kind for e in events] == ["smtp.relay.accepted", "mailbox.created",
                                        "smtp.relay.refused"]  # fmt: skip
    assert events[0].node == "test" and events[0].time is not None and events[0].time >= t0
    smtp = await storage.audit.query(kind_prefix="smtp.")
    assert [e.target for e in smtp] == ["y.test", "x.test"]
    assert smtp[1].details == {"reason": "DN not listed"}
    assert [e.kind for e in await storage.audit.query(target="a@b.test")] == ["mailbox.created"]
    assert len(await storage.audit.query(limit=1)) == 1
    assert await storage.audit.query(since=datetime.now(UTC) + timedelta(hours=1)) == []


async def test_account_by_idnps_and_disabled(storage: Storage) -> None:
    acc = await storage.accounts.create_account("dr.house", "pw", idnps="810001234567")
    assert await storage.accounts.get_account_by_idnps("810001234567") == acc
    assert await storage.accounts.get_account_by_idnps("899999999999") is None
    await storage.accounts.set_disabled("dr.house", True)
    assert await storage.accounts.verify_password("dr.house", "pw") is None
    await storage.accounts.set_disabled("dr.house", False)
    assert await storage.accounts.verify_password("dr.house", "pw") is not None


async def test_release_leases_of_a_restarted_node(storage: Storage) -> None:
    ref = await storage.blobs.put(b"m")
    exp = datetime.now(UTC) + timedelta(days=1)
    for _ in range(3):
        await storage.queue.enqueue("", [QueueRecipient("x@y.test")], ref, "y.test", expires=exp)
    claimed = await storage.queue.claim("node-a", limit=2, lease_seconds=600)
    await storage.queue.release(claimed[0].item_id)
    assert await storage.queue.release_node("node-a") == 1
    assert len(await storage.queue.claim("node-b", limit=10, lease_seconds=600)) == 3


async def test_migrations_are_idempotent(storage: Storage) -> None:
    await storage.migrate()
    await storage.migrate()
    assert await storage.accounts.list_accounts() == []


async def test_purge_old_dedup_keys(storage: Storage, mailbox: Mailbox) -> None:
    ref = await storage.blobs.put(b"x")
    await storage.messages.deliver(ref, [mailbox.mailbox_id], dedup_key="old")
    assert await storage.messages.purge_dedup(datetime.now(UTC) - timedelta(days=1)) == 0
    assert await storage.messages.purge_dedup(datetime.now(UTC) + timedelta(seconds=1)) == 1
    # Forgotten: the same key delivers again.
    assert len(await storage.messages.deliver(ref, [mailbox.mailbox_id], dedup_key="old")) == 1


async def test_acl_epoch_moves_with_every_change_of_visible_bals(
    storage: Storage, mailbox: Mailbox
) -> None:
    """IMAP sessions keep their BAL list while the epoch stands: every change that can alter
    a ``mailboxes_of`` answer must move it, and nothing else need."""
    acc = storage.accounts
    seen = [await acc.acl_epoch()]

    async def moved() -> bool:
        seen.append(await acc.acl_epoch())
        return seen[-1] != seen[-2]

    org = await acc.create_mailbox("cab@ch-exemple.mssante.test", MailboxType.CAB, "123456789")
    assert await moved()
    await acc.create_account("dave", "pw")
    assert await moved()
    await acc.grant("dave", org.address, "lr")
    assert await moved()
    await acc.grant("dave", org.address, "lrs")
    assert await moved()
    assert not await moved()  # reads do not move it
    await acc.revoke("dave", org.address)
    assert await moved()
    await acc.create_account("cab@ch-exemple.mssante.test", "pw")  # owns it by its login
    assert await moved()
    await acc.delete_account("cab@ch-exemple.mssante.test")
    assert await moved()
    await acc.delete_mailbox(org.address)
    assert await moved()
