"""The selected mailbox as one session sees it (RFC 9051 §2.3.1, §7.4, §7.5).

Sequence numbers are this session's: they change only when the session is told (EXPUNGE /
VANISHED). ``refresh`` compares the store with what the session was told and returns the
untagged updates to send: EXPUNGE (only when allowed), EXISTS, RECENT (rev1), FETCH FLAGS.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from caducee.core.model import Folder, StoredMessage
from caducee.storage.interfaces import MessageStore

if TYPE_CHECKING:
    from caducee.imap.cache import SharedReads

__all__ = ["FolderReader", "SelectedView", "SharedFolderReader", "flag_list"]


class FolderReader(Protocol):
    """The reads ``SelectedView.refresh`` needs (a ``MessageStore`` has them)."""

    async def changed_since(self, folder_id: int, modseq: int) -> list[StoredMessage]: ...

    async def vanished_since(self, folder_id: int, modseq: int) -> list[int]: ...

    async def list_messages(self, folder_id: int) -> list[StoredMessage]: ...


class SharedFolderReader:
    """``FolderReader`` whose reads are shared with the other sessions of the server that
    ask the same thing at the same time (``SharedReads``; ``after``: the session's mark)."""

    def __init__(self, shared: SharedReads, store: MessageStore, after: int) -> None:
        self._shared = shared
        self._store = store
        self._after = after

    async def get_folder_by_id(self, folder_id: int) -> Folder | None:
        return await self._shared.read(
            ("folder", folder_id), self._after, lambda: self._store.get_folder_by_id(folder_id)
        )

    async def changed_since(self, folder_id: int, modseq: int) -> list[StoredMessage]:
        return await self._shared.read(
            ("changed", folder_id, modseq),
            self._after,
            lambda: self._store.changed_since(folder_id, modseq),
        )

    async def vanished_since(self, folder_id: int, modseq: int) -> list[int]:
        return await self._shared.read(
            ("vanished", folder_id, modseq),
            self._after,
            lambda: self._store.vanished_since(folder_id, modseq),
        )

    async def list_messages(self, folder_id: int) -> list[StoredMessage]:
        return await self._shared.read(
            ("list", folder_id), self._after, lambda: self._store.list_messages(folder_id)
        )


def flag_list(flags: frozenset[str] | set[str], recent: bool = False) -> bytes:
    items = sorted(flags, key=lambda f: (not f.startswith("\\"), f.lower()))
    if recent:
        items.insert(0, "\\Recent")
    return ("(" + " ".join(items) + ")").encode("utf-8")


@dataclass(slots=True)
class SelectedView:
    folder: Folder
    readonly: bool
    uids: list[int] = field(default_factory=list)  # index = seq - 1
    msgs: dict[int, StoredMessage] = field(default_factory=dict)
    recent: set[int] = field(default_factory=set)
    gone: set[int] = field(default_factory=set)  # expunged elsewhere, not yet announced
    highest_modseq: int = 0
    uidnext: int = 1
    count: int = 0
    saved: frozenset[int] = frozenset()  # SEARCHRES $ (UIDs)
    recent_mark: int = 0  # the folder's \\Recent mark as this session left it
    condstore: bool = False

    @classmethod
    async def open(cls, store: MessageStore, folder: Folder, readonly: bool) -> SelectedView:
        view = cls(folder, readonly)
        msgs = await store.list_messages(folder.folder_id)
        view.uids = [m.uid for m in msgs]
        view.msgs = {m.uid: m for m in msgs}
        view.highest_modseq = max([folder.highest_modseq, *(m.modseq for m in msgs)], default=0)
        view.uidnext = max(folder.uidnext, (view.uids[-1] + 1) if view.uids else 1)
        view.count = len(msgs)
        return view

    @classmethod
    def reopen(cls, old: SelectedView, folder: Folder, readonly: bool) -> SelectedView | None:
        """SELECT of the folder this session already has selected: when the store's state
        (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, message count) is the one the old view was last
        brought to, its messages are current and need not be listed again. Every change to a
        folder raises its HIGHESTMODSEQ (RFC 7162 §3.1.2.1), so equal states mean equal
        contents."""
        f = old.folder
        same = (
            f.folder_id == folder.folder_id
            and f.uidvalidity == folder.uidvalidity
            and f.uidnext == folder.uidnext
            and f.highest_modseq == folder.highest_modseq
            and f.message_count == folder.message_count
            and not old.gone
            and len(old.uids) == folder.message_count
        )
        if not same:
            return None
        view = cls(folder, readonly, uids=list(old.uids), msgs=dict(old.msgs))
        view.highest_modseq = max(old.highest_modseq, folder.highest_modseq)
        view.uidnext = max(folder.uidnext, (view.uids[-1] + 1) if view.uids else 1)
        view.count = len(view.uids)
        return view

    def own_store(self, changed: list[StoredMessage]) -> None:
        """After this session's own STORE: when the new MODSEQ directly follows the folder
        state last read, nobody else changed the folder in between, so the known state
        advances without re-reading it (the store gives each change the next MODSEQ)."""
        if changed and all(m.modseq == self.folder.highest_modseq + 1 for m in changed):
            self.folder = replace(self.folder, highest_modseq=changed[0].modseq)

    def own_expunge(self, removed: list[int]) -> None:
        """After this session's own EXPUNGE (already removed from the view): an expunge that
        removed messages takes exactly the next MODSEQ. Assuming it is the only change since
        the state last read is safe: if someone else changed the folder too, the store's
        HIGHESTMODSEQ is higher still and the next refresh re-reads the difference."""
        f = self.folder
        if removed and not self.gone and len(self.uids) == f.message_count - len(removed):
            self.folder = replace(
                f, highest_modseq=f.highest_modseq + 1, message_count=len(self.uids)
            )

    def own_append(self, msg: StoredMessage, *, rev1: bool) -> list[bytes] | None:
        """After this session's own APPEND into the selected folder: the EXISTS (and RECENT)
        updates without re-reading the folder, when nothing else happened in between (its
        MODSEQ and UID directly follow the known state); ``None`` when the folder must be
        re-read."""
        f = self.folder
        if self.gone or msg.modseq != f.highest_modseq + 1 or msg.uid != f.uidnext:
            return None
        if len(self.uids) != f.message_count:
            return None
        current = replace(
            f, highest_modseq=msg.modseq, uidnext=msg.uid + 1, message_count=f.message_count + 1
        )
        self.folder = current
        last = self.uids[-1] if self.uids else 0
        return self._apply(
            [msg], last, allow_expunge=False, rev1=rev1, vanished=False, current=current
        )

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    @property
    def exists(self) -> int:
        return len(self.uids)

    def live(self, uid: int) -> StoredMessage | None:
        return None if uid in self.gone else self.msgs.get(uid)

    def update(self, msg: StoredMessage) -> None:
        if msg.uid in self.msgs:
            self.msgs[msg.uid] = msg
        self.highest_modseq = max(self.highest_modseq, msg.modseq)

    def remove(self, uids: list[int]) -> list[int]:
        """Drops UIDs from the view; the sequence numbers to announce, in announce order."""
        seqs: list[int] = []
        for uid in sorted(set(uids), reverse=True):
            seq = self.seq_of(uid)
            if seq is None:
                continue
            del self.uids[seq - 1]
            self.msgs.pop(uid, None)
            self.recent.discard(uid)
            self.gone.discard(uid)
            seqs.append(seq)
        return seqs

    async def refresh(
        self,
        store: FolderReader,
        current: Folder | None,
        *,
        allow_expunge: bool,
        rev1: bool,
        vanished: bool = False,
    ) -> list[bytes]:
        """Untagged responses bringing the session up to date with the store.

        Incremental: messages whose MODSEQ rose since the last sync (flag changes and new
        messages) and the UIDs expunged since (RFC 7162 §3.2.10); a full listing only when
        the counts do not add up.
        """
        if current is None:
            return []
        unchanged = (
            current.highest_modseq == self.folder.highest_modseq
            and current.uidnext == self.folder.uidnext
            and current.message_count == self.folder.message_count
        )
        if unchanged and not (allow_expunge and self.gone):
            return []
        since = self.folder.highest_modseq
        self.folder = current
        last = self.uids[-1] if self.uids else 0
        if unchanged:
            changed: list[StoredMessage] = []
        else:
            changed = await store.changed_since(current.folder_id, since)
            added = sum(1 for m in changed if m.uid > last)
            if len(self.uids) - len(self.gone) + added != current.message_count:
                expunged = await store.vanished_since(current.folder_id, since)
                self.gone.update(u for u in expunged if u in self.msgs)
            if len(self.uids) - len(self.gone) + added != current.message_count:
                msgs = await store.list_messages(current.folder_id)
                present = {m.uid for m in msgs}
                self.gone.update(u for u in self.uids if u not in present)
                changed = msgs
        return self._apply(
            changed,
            last,
            allow_expunge=allow_expunge,
            rev1=rev1,
            vanished=vanished,
            current=current,
        )

    def _apply(
        self,
        changed: list[StoredMessage],
        last: int,
        *,
        allow_expunge: bool,
        rev1: bool,
        vanished: bool,
        current: Folder,
    ) -> list[bytes]:
        out: list[bytes] = []
        if allow_expunge and self.gone:
            gone = sorted(self.gone)
            seqs = self.remove(gone)
            if vanished:
                from caducee.imap.uidset import format_uids

                out.append(b"* VANISHED " + format_uids(gone).encode() + b"\r\n")
            else:
                out.extend(b"* %d EXPUNGE\r\n" % s for s in seqs)
        added: list[StoredMessage] = []
        for new in changed:
            if new.uid > last:
                added.append(new)
                continue
            old = self.msgs.get(new.uid)
            if old is None or new.uid in self.gone:
                continue
            self.msgs[new.uid] = new
            if new.flags != old.flags:
                seq = self.seq_of(new.uid)
                if seq is not None:
                    mod = b" MODSEQ (%d)" % new.modseq if self.condstore else b""
                    flags = flag_list(new.flags, new.uid in self.recent and rev1)
                    out.append(b"* %d FETCH (UID %d FLAGS %s%s)\r\n" % (seq, new.uid, flags, mod))
        if added:
            for m in added:
                self.uids.append(m.uid)
                self.msgs[m.uid] = m
                self.recent.add(m.uid)
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
            if rev1:
                out.append(b"* %d RECENT\r\n" % len(self.recent))
        self.highest_modseq = max(
            [self.highest_modseq, current.highest_modseq, *(m.modseq for m in changed)]
        )
        self.uidnext = max(current.uidnext, (self.uids[-1] + 1) if self.uids else 1)
        return out
