"""What IMAP needs from the message store: UIDs, MODSEQ, flags, expunge, copy/move, folders."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from caducee.core.errors import Conflict, InvalidInput, NotFound, QuotaExceeded
from caducee.core.model import Folder, Mailbox, MailboxType
from caducee.storage.interfaces import FlagMode, Storage

Opener = Callable[[], Awaitable[Storage]]


async def _folder(storage: Storage, mailbox: Mailbox, name: str) -> Folder:
    f = await storage.messages.get_folder(mailbox.mailbox_id, name)
    assert f is not None
    return f


async def _fill(storage: Storage, mailbox: Mailbox, n: int) -> Folder:
    for i in range(n):
        ref = await storage.blobs.put(f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())
        await storage.messages.deliver(ref, [mailbox.mailbox_id])
    return await _folder(storage, mailbox, "INBOX")


async def test_uid_modseq_and_flags(storage: Storage, mailbox: Mailbox) -> None:
    inbox = await _fill(storage, mailbox, 3)
    assert inbox.uidnext == 4 and inbox.message_count == 3
    assert inbox.unseen_count == 3 and inbox.first_unseen == 1
    start = inbox.highest_modseq
    changed, failed = await storage.messages.store_flags(
        inbox.folder_id, [1, 2], ["\\Seen", "$Forwarded"], FlagMode.ADD
    )
    assert failed == [] and [m.uid for m in changed] == [1, 2]
    assert all(m.modseq > start for m in changed)
    assert changed[0].flags == {"\\Seen", "$Forwarded"}
    again, _ = await storage.messages.store_flags(inbox.folder_id, [1], ["\\seen"], FlagMode.ADD)
    assert again == []  # no change, no new MODSEQ
    inbox = await _folder(storage, mailbox, "INBOX")
    assert inbox.unseen_count == 1 and inbox.first_unseen == 3
    assert inbox.highest_modseq == changed[0].modseq
    since = await storage.messages.changed_since(inbox.folder_id, start)
    assert [m.uid for m in since] == [1, 2]
    # UNCHANGEDSINCE (RFC 7162 §3.1.3): message 1 changed after `start`, so it fails.
    ch, failed = await storage.messages.store_flags(
        inbox.folder_id, [1, 3], ["\\Flagged"], FlagMode.REPLACE, unchanged_since=start
    )
    assert failed == [1] and [m.uid for m in ch] == [3]
    ch, _ = await storage.messages.store_flags(
        inbox.folder_id, [1], ["$Forwarded"], FlagMode.REMOVE
    )
    assert ch[0].flags == {"\\Seen"}
    with pytest.raises(InvalidInput):
        await storage.messages.store_flags(inbox.folder_id, [1], ["\\Bogus"], FlagMode.ADD)
    with pytest.raises(InvalidInput):
        await storage.messages.store_flags(inbox.folder_id, [1], ["a b"], FlagMode.ADD)


async def test_expunge_returns_uids_and_frees_quota(storage: Storage, mailbox: Mailbox) -> None:
    inbox = await _fill(storage, mailbox, 4)
    mb = await storage.accounts.get_mailbox_by_id(mailbox.mailbox_id)
    assert mb is not None
    used = mb.used_bytes
    msgs = await storage.messages.list_messages(inbox.folder_id)
    await storage.messages.store_flags(inbox.folder_id, [2, 3, 4], ["\\Deleted"], FlagMode.ADD)
    assert await storage.messages.expunge(inbox.folder_id, [2, 3]) == [2, 3]
    assert await storage.messages.expunge(inbox.folder_id) == [4]
    assert await storage.messages.expunge(inbox.folder_id) == []
    assert [m.uid for m in await storage.messages.list_messages(inbox.folder_id)] == [1]
    mb = await storage.accounts.get_mailbox_by_id(mailbox.mailbox_id)
    assert mb is not None and mb.used_bytes == used - sum(m.size for m in msgs[1:])
    # The expunged messages' blobs are gone; the kept one still reads.
    with pytest.raises(NotFound):
        await storage.blobs.get(msgs[1].blob)
    assert (await storage.blobs.get(msgs[0].blob)).startswith(b"Subject: 0")
    assert await storage.messages.vanished_since(inbox.folder_id, inbox.highest_modseq) == [2, 3, 4]
    # UIDs are never reused.
    ref = await storage.blobs.put(b"new")
    (m,) = await storage.messages.deliver(ref, [mailbox.mailbox_id])
    assert m.uid == 5


async def test_copy_and_move_give_uid_pairs(storage: Storage, mailbox: Mailbox) -> None:
    inbox = await _fill(storage, mailbox, 3)
    await storage.messages.store_flags(inbox.folder_id, [2], ["\\Flagged"], FlagMode.ADD)
    archive = await storage.messages.create_folder(mailbox.mailbox_id, "Archive/2026")
    pairs = await storage.messages.copy(inbox.folder_id, [2, 3, 99], archive.folder_id)
    assert pairs == [(2, 1), (3, 2)]
    copied = await storage.messages.list_messages(archive.folder_id)
    assert copied[0].flags == {"\\Flagged"}
    moved = await storage.messages.copy(inbox.folder_id, [1], archive.folder_id, move=True)
    assert moved == [(1, 3)]
    assert [m.uid for m in await storage.messages.list_messages(inbox.folder_id)] == [2, 3]
    assert await storage.messages.vanished_since(inbox.folder_id, 0) == [1]
    # Expunging the original keeps the copy's blob alive.
    await storage.messages.store_flags(inbox.folder_id, [2], ["\\Deleted"], FlagMode.ADD)
    assert await storage.messages.expunge(inbox.folder_id) == [2]
    assert (await storage.blobs.get(copied[0].blob)).startswith(b"Subject: 1")


async def test_copy_respects_quota(storage: Storage) -> None:
    small = await storage.accounts.create_mailbox("q@x.test", MailboxType.ORG, "1", quota_bytes=30)
    inbox = await _fill(storage, small, 1)
    trash = await _folder(storage, small, "Trash")
    with pytest.raises(QuotaExceeded):
        await storage.messages.copy(inbox.folder_id, [1], trash.folder_id)
    assert await storage.messages.copy(inbox.folder_id, [1], trash.folder_id, move=True) == [(1, 1)]


async def test_folders_create_rename_delete_subscribe(storage: Storage, mailbox: Mailbox) -> None:
    mid = mailbox.mailbox_id
    work = await storage.messages.create_folder(mid, "Work")
    child = await storage.messages.create_folder(mid, "Work/Projects")
    with pytest.raises(Conflict):
        await storage.messages.create_folder(mid, "Work")
    with pytest.raises(InvalidInput):
        await storage.messages.create_folder(mid, "bad//name")
    await storage.messages.rename_folder(mid, "Work", "Job")
    names = {f.name for f in await storage.messages.list_folders(mid)}
    assert {"Job", "Job/Projects"} <= names and "Work" not in names
    renamed = await _folder(storage, mailbox, "Job/Projects")
    assert renamed.folder_id == child.folder_id and renamed.uidvalidity == child.uidvalidity
    # A re-created name gets a new UIDVALIDITY.
    again = await storage.messages.create_folder(mid, "Work")
    assert again.uidvalidity != work.uidvalidity
    with pytest.raises(Conflict):
        await storage.messages.rename_folder(mid, "Job", "Work")
    with pytest.raises(NotFound):
        await storage.messages.rename_folder(mid, "Nope", "Other")
    await storage.messages.set_subscribed(mid, "Job", False)
    assert not (await _folder(storage, mailbox, "Job")).subscribed
    await storage.messages.delete_folder(mid, "Job")
    assert await storage.messages.get_folder(mid, "Job") is None
    with pytest.raises(Conflict):
        await storage.messages.delete_folder(mid, "inbox")


async def test_rename_inbox_moves_messages(storage: Storage, mailbox: Mailbox) -> None:
    inbox = await _fill(storage, mailbox, 2)
    await storage.messages.rename_folder(mailbox.mailbox_id, "INBOX", "Old")
    old = await _folder(storage, mailbox, "Old")
    assert [m.uid for m in await storage.messages.list_messages(old.folder_id)] == [1, 2]
    assert old.uidvalidity != inbox.uidvalidity
    new_inbox = await _folder(storage, mailbox, "INBOX")
    assert new_inbox.message_count == 0 and new_inbox.uidvalidity == inbox.uidvalidity
    assert new_inbox.uidnext >= inbox.uidnext


async def test_append_with_date_and_flags(storage: Storage, mailbox: Mailbox) -> None:
    sent = await _folder(storage, mailbox, "Sent")
    when = datetime(2024, 3, 1, 8, 30, tzinfo=UTC)
    ref = await storage.blobs.put(b"From: a\r\n\r\nhi")
    msg = await storage.messages.append(sent.folder_id, ref, flags=["\\Seen"], internal_date=when)
    assert msg.uid == 1 and msg.internal_date == when and msg.flags == {"\\Seen"}
    assert await storage.messages.get_messages(sent.folder_id, [1, 7]) == [msg]


async def test_dedup_lookup(storage: Storage, mailbox: Mailbox) -> None:
    ref = await storage.blobs.put(b"x")
    (m,) = await storage.messages.deliver(ref, [mailbox.mailbox_id], dedup_key="<id@x>:rcpt")
    assert await storage.messages.find_by_dedup(mailbox.mailbox_id, "<id@x>:rcpt") == m
    assert await storage.messages.find_by_dedup(mailbox.mailbox_id, "other") is None


async def test_notifier_wakes_subscribers(storage: Storage, mailbox: Mailbox) -> None:
    inbox = await _folder(storage, mailbox, "INBOX")
    sub = storage.notifier.subscribe(mailbox.mailbox_id)
    ref = await storage.blobs.put(b"x")
    await storage.messages.deliver(ref, [mailbox.mailbox_id])
    assert await asyncio.wait_for(anext(sub), 5) == inbox.folder_id
    await sub.aclose()


async def test_deleting_mailbox_removes_its_messages(storage: Storage, mailbox: Mailbox) -> None:
    inbox = await _fill(storage, mailbox, 1)
    (msg,) = await storage.messages.list_messages(inbox.folder_id)
    await storage.accounts.delete_mailbox(mailbox.address)
    assert await storage.accounts.get_mailbox(mailbox.address) is None
    assert await storage.messages.list_messages(inbox.folder_id) == []
    with pytest.raises(NotFound):
        await storage.blobs.get(msg.blob)


async def test_uidvalidity_uidnext_and_modseq_survive_a_restart(
    opener: Opener, mailbox: Mailbox
) -> None:
    st = await opener()
    try:
        before = await _fill(st, mailbox, 2)
    finally:
        await st.close()
    st = await opener()
    try:
        after = await _folder(st, mailbox, "INBOX")
        assert (after.uidvalidity, after.uidnext, after.highest_modseq) == (
            before.uidvalidity, before.uidnext, before.highest_modseq
        )  # fmt: skip
        ref = await st.blobs.put(b"after restart")
        (msg,) = await st.messages.deliver(ref, [mailbox.mailbox_id])
        assert msg.uid == before.uidnext and msg.modseq > before.highest_modseq
    finally:
        await st.close()


async def test_recent_mark_is_claimed_once(storage: Storage, mailbox: Mailbox) -> None:
    """RFC 3501 §2.3.2: the persistent \\Recent mark rises, never falls; concurrent claims
    never hand the same messages to two callers."""
    inbox = await _fill(storage, mailbox, 3)
    assert inbox.recent_uid == 0
    assert await storage.messages.claim_recent(inbox.folder_id, upto=2) == 0
    assert (await _folder(storage, mailbox, "INBOX")).recent_uid == 2
    assert await storage.messages.claim_recent(inbox.folder_id, upto=1) == 2  # never lowered
    assert await storage.messages.claim_recent(inbox.folder_id, upto=99) == 2  # capped
    assert (await _folder(storage, mailbox, "INBOX")).recent_uid == 3
    await _fill(storage, mailbox, 2)
    olds = await asyncio.gather(*(storage.messages.claim_recent(inbox.folder_id) for _ in range(4)))
    assert sorted(olds) == [3, 5, 5, 5]  # exactly one caller gets UIDs 4 and 5
    with pytest.raises(NotFound):
        await storage.messages.claim_recent(10**9)
