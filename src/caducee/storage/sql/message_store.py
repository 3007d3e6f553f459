"""``MessageStore`` over a ``Runner``: every change publishes to the ``ChangeNotifier``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime

from caducee.core.model import AuditEvent, BlobRef, Folder, StoredMessage
from caducee.storage.interfaces import Acceptance, ChangeNotifier, Delivery, Enqueue, FlagMode
from caducee.storage.sql import folders
from caducee.storage.sql import messages as ops
from caducee.storage.sql.audit import record_op
from caducee.storage.sql.base import Dialect, Op, Runner, to_us
from caducee.storage.sql.queue import enqueue_op

__all__ = ["SqlMessageStore"]


_Prepared = tuple[tuple[int, ...], str, frozenset[str], str | None, bool]


def _accept_op(
    blob: BlobRef,
    deliveries: list[_Prepared],
    enqueues: list[Enqueue],
    audit: list[tuple[AuditEvent, int]],
    idate: int,
    node: str,
    dialect: Dialect,
) -> Op[tuple[list[list[tuple[int, StoredMessage]]], list[int], list[int]]]:
    """``MessageStore.accept`` as one operation (one transaction). A delivery that may be
    skipped over quota skips the full BALs (their dedup rows undone), nothing else."""
    stored: list[list[tuple[int, StoredMessage]]] = []
    skipped: list[int] = []
    for i, (ids, folder, flags, dedup_key, optional) in enumerate(deliveries):
        full: list[int] | None = [] if optional else None
        stored.append((yield from ops.deliver_op(blob, ids, folder, flags, idate, dedup_key,
                                                 dialect, full)))  # fmt: skip
        if full:
            skipped.append(i)
    queued: list[int] = []
    for e in enqueues:
        queued.append((yield from enqueue_op(e.sender, list(e.recipients), blob, e.domain,
                                             to_us(e.expires), e.envid, e.ret)))  # fmt: skip
    for event, when in audit:
        yield from record_op(event, when, event.node or node, only=False)
    return stored, skipped, queued


class SqlMessageStore:
    def __init__(
        self,
        runner: Runner,
        notifier: ChangeNotifier,
        on_blobs_freed: Callable[[list[str]], Awaitable[None]],
        node: str = "",
    ) -> None:
        self._run = runner
        self._notify = notifier
        self._freed = on_blobs_freed
        self._node = node

    async def list_folders(self, mailbox_id: int) -> list[Folder]:
        return await self._run.read(lambda: folders.list_folders_op(mailbox_id))

    async def get_folder(self, mailbox_id: int, name: str) -> Folder | None:
        norm = ops.norm_folder(name)
        return await self._run.read(
            lambda: folders.get_folder_op("f.mailbox_id = ? AND f.name = ?", (mailbox_id, norm))
        )

    async def get_folder_by_id(self, folder_id: int) -> Folder | None:
        """The folder with fresh UIDNEXT, HIGHESTMODSEQ and counts (SELECT, STATUS)."""
        return await self._run.read(lambda: folders.get_folder_op("f.folder_id = ?", (folder_id,)))

    async def claim_recent(self, folder_id: int, upto: int | None = None) -> int:
        return await self._run.write(lambda: folders.claim_recent_op(folder_id, upto))

    async def create_folder(
        self, mailbox_id: int, name: str, *, special_use: str | None = None
    ) -> Folder:
        norm = ops.norm_folder(name)

        def op() -> Op[int]:
            return folders.create_folder_op(mailbox_id, norm, special_use)

        folder_id = await self._run.write(op)
        folder = await self.get_folder_by_id(folder_id)
        assert folder is not None  # noqa: S101 - just created, folders are never reused
        return folder

    async def rename_folder(self, mailbox_id: int, old: str, new: str) -> None:
        o, n = ops.norm_folder(old), ops.norm_folder(new)
        await self._run.write(lambda: folders.rename_folder_op(mailbox_id, o, n))
        await self._notify.publish(mailbox_id, 0)

    async def delete_folder(self, mailbox_id: int, name: str) -> None:
        norm = ops.norm_folder(name)
        freed = await self._run.write(lambda: folders.delete_folder_op(mailbox_id, norm))
        await self._freed(freed)
        await self._notify.publish(mailbox_id, 0)

    async def set_subscribed(self, mailbox_id: int, name: str, subscribed: bool) -> None:
        norm = ops.norm_folder(name)
        await self._run.write(lambda: folders.subscribe_op(mailbox_id, norm, subscribed))

    async def orphan_subscriptions(self, mailbox_id: int) -> list[str]:
        return await self._run.read(lambda: folders.orphan_subscriptions_op(mailbox_id))

    async def deliver(
        self,
        blob: BlobRef,
        mailbox_ids: Sequence[int],
        *,
        folder: str = "INBOX",
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
        dedup_key: str | None = None,
    ) -> list[StoredMessage]:
        norm = ops.norm_folder(folder)
        fl = ops.norm_flags(flags)
        idate = ops.idate_us(internal_date)
        ids = list(mailbox_ids)
        dialect = self._run.dialect
        done = await self._run.write(
            lambda: ops.deliver_op(blob, ids, norm, fl, idate, dedup_key, dialect)
        )
        for mid, msg in done:
            await self._notify.publish(mid, msg.folder_id)
        return [msg for _, msg in done]

    async def accept(
        self,
        blob: BlobRef,
        deliveries: Sequence[Delivery] = (),
        enqueues: Sequence[Enqueue] = (),
        audit: Sequence[AuditEvent] = (),
    ) -> Acceptance:
        prepared: list[_Prepared] = [
            (tuple(d.mailbox_ids), ops.norm_folder(d.folder), ops.norm_flags(d.flags),
             d.dedup_key, d.skip_over_quota)
            for d in deliveries
        ]  # fmt: skip
        now = datetime.now(UTC)
        events = [(e, to_us(e.time or now)) for e in audit]
        idate = ops.idate_us(now)
        enq = list(enqueues)
        dialect = self._run.dialect
        stored, skipped, queued = await self._run.write(
            lambda: _accept_op(blob, prepared, enq, events, idate, self._node, dialect)
        )
        for done in stored:
            for mid, msg in done:
                await self._notify.publish(mid, msg.folder_id)
        return Acceptance(
            tuple(tuple(msg for _, msg in done) for done in stored), tuple(skipped), tuple(queued)
        )

    async def append(
        self,
        folder_id: int,
        blob: BlobRef,
        *,
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
    ) -> StoredMessage:
        fl = ops.norm_flags(flags)
        idate = ops.idate_us(internal_date)
        tz = ops.zone_minutes(internal_date)
        mid, msg = await self._run.write(lambda: ops.append_op(folder_id, blob, fl, idate, tz))
        await self._notify.publish(mid, folder_id)
        return msg

    async def list_messages(
        self, folder_id: int, uid_min: int = 1, uid_max: int | None = None
    ) -> list[StoredMessage]:
        return await self._run.read(lambda: ops.list_op(folder_id, uid_min, uid_max))

    async def get_messages(self, folder_id: int, uids: Sequence[int]) -> list[StoredMessage]:
        """The messages among ``uids`` that exist, in UID order."""
        u = list(uids)
        return await self._run.read(lambda: ops.get_messages_op(folder_id, u))

    async def store_flags(
        self,
        folder_id: int,
        uids: Sequence[int],
        flags: Iterable[str],
        mode: FlagMode,
        *,
        unchanged_since: int | None = None,
    ) -> tuple[list[StoredMessage], list[int]]:
        fl = ops.norm_flags(flags)
        u = list(uids)
        mid, changed, failed = await self._run.write(
            lambda: ops.store_flags_op(folder_id, u, fl, FlagMode(mode).value, unchanged_since)
        )
        if changed:
            await self._notify.publish(mid, folder_id)
        return changed, failed

    async def expunge(self, folder_id: int, uids: Sequence[int] | None = None) -> list[int]:
        u = None if uids is None else list(uids)
        mid, gone, freed = await self._run.write(lambda: ops.expunge_op(folder_id, u))
        await self._freed(freed)
        if gone:
            await self._notify.publish(mid, folder_id)
        return gone

    async def copy(
        self, folder_id: int, uids: Sequence[int], dest_folder_id: int, *, move: bool = False
    ) -> list[tuple[int, int]]:
        u = list(uids)
        src_mb, dst_mb, pairs = await self._run.write(
            lambda: ops.copy_op(folder_id, u, dest_folder_id, move)
        )
        if pairs:
            await self._notify.publish(dst_mb, dest_folder_id)
            if move:
                await self._notify.publish(src_mb, folder_id)
        return pairs

    async def changed_since(self, folder_id: int, modseq: int) -> list[StoredMessage]:
        return await self._run.read(lambda: ops.changed_since_op(folder_id, modseq))

    async def vanished_since(self, folder_id: int, modseq: int) -> list[int]:
        """UIDs expunged after ``modseq`` (RFC 7162 §3.2.10 VANISHED, for QRESYNC)."""
        return await self._run.read(lambda: ops.vanished_since_op(folder_id, modseq))

    async def find_by_dedup(self, mailbox_id: int, dedup_key: str) -> StoredMessage | None:
        """The message a ``deliver(dedup_key=...)`` put in this BAL, if still there."""
        return await self._run.read(lambda: ops.find_dedup_op(mailbox_id, dedup_key))

    async def purge_dedup(self, older_than: datetime) -> int:
        before = ops.idate_us(older_than)
        return await self._run.write(lambda: ops.purge_dedup_op(before))
