"""Selection and message-moving commands: SELECT/EXAMINE (RFC 9051 §6.3.2-3, CONDSTORE and
QRESYNC RFC 7162), CLOSE, UNSELECT (RFC 3691), EXPUNGE and UID EXPUNGE (RFC 4315), COPY and
MOVE (RFC 6851) with COPYUID."""

from __future__ import annotations

from typing import TYPE_CHECKING

from caducee.core.errors import QuotaExceeded
from caducee.imap.cmd_fetch import fetch, search, selected, store, targets
from caducee.imap.cmd_mailbox import find, mailbox_name
from caducee.imap.cmd_sort import sort
from caducee.imap.cmd_thread import thread
from caducee.imap.parser import CopyArgs, SelectArgs, SeqSet
from caducee.imap.uidset import format_uids
from caducee.imap.view import SelectedView, flag_list

if TYPE_CHECKING:
    from caducee.imap.parser import Command
    from caducee.imap.session import Handler, Session

__all__ = ["HANDLERS"]

_PERMANENT = b"(\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)"
_BASE_FLAGS = frozenset({"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"})


def _reply(status: str, code: str, text: str) -> Exception:
    from caducee.imap.session import Reply

    return Reply(status, code, text)


def _deselect(s: Session) -> None:
    from caducee.imap.session import AUTH

    s.selected = None
    s.selected_bal = None
    s.state = AUTH
    s.watch(None)


async def _select(s: Session, cmd: Command) -> bytes:
    from caducee.imap.session import SELECTED

    args = cmd.args
    if not isinstance(args, SelectArgs):
        raise _reply("BAD", "", "invalid arguments")
    previous = s.selected
    if previous is not None:
        await s.settle_recent()
        _deselect(s)
        if s.rev2 or "QRESYNC" in s.enabled:
            s.untagged(b"OK [CLOSED] Previous mailbox closed")
    if args.qresync is not None and "QRESYNC" not in s.enabled:
        raise _reply("BAD", "", "QRESYNC not enabled")
    if args.condstore:
        s.enabled.add("CONDSTORE")
    resolved, folder = await find(s, args.mailbox, "r")
    readonly = cmd.name == "EXAMINE"
    s.watch(folder.folder_id, resolved.bal.mailbox.mailbox_id)
    s.dirty = False  # subscribed before reading: any later change marks the session dirty
    view = None if previous is None else SelectedView.reopen(previous, folder, readonly)
    if view is None:
        view = await SelectedView.open(s.ctx.storage.messages, folder, readonly)
    view.condstore = s.condstore
    mark = view.recent_mark = folder.recent_uid
    # RFC 3501 §2.3.2: messages above the mark are ours alone from now. Nothing to claim when
    # none is left (e.g. appended and expunged again): later arrivals reach this session as
    # updates and are settled when it leaves the folder.
    if not readonly and view.uids and view.uids[-1] > mark:
        mark = await s.ctx.storage.messages.claim_recent(folder.folder_id)
        view.recent_mark = max(mark, folder.uidnext - 1)
    view.recent = {u for u in view.uids if u > mark}
    keywords = set(_BASE_FLAGS)
    for m in view.msgs.values():
        keywords.update(m.flags)
    s.untagged(b"FLAGS " + flag_list(keywords))
    s.untagged(b"OK [PERMANENTFLAGS " + (b"()" if readonly else _PERMANENT) + b"] Flags")
    s.untagged(b"%d EXISTS" % view.exists)
    if not s.rev2:
        s.untagged(b"%d RECENT" % len(view.recent))
        first_unseen = next(
            (i + 1 for i, u in enumerate(view.uids) if "\\Seen" not in view.msgs[u].flags), None
        )
        if first_unseen is not None:
            s.untagged(b"OK [UNSEEN %d] First unseen" % first_unseen)
    s.untagged(b"OK [UIDVALIDITY %d] UIDs valid" % folder.uidvalidity)
    s.untagged(b"OK [UIDNEXT %d] Predicted next UID" % view.uidnext)
    if s.condstore:
        s.untagged(b"OK [HIGHESTMODSEQ %d] Highest" % view.highest_modseq)
    if s.rev2:
        s.untagged(b'LIST () "/" ' + mailbox_name(s, resolved.bal.prefix + folder.name))
    if args.qresync is not None and args.qresync[0] == folder.uidvalidity:
        _, since, known = args.qresync
        present = set(view.uids)
        gone = await s.ctx.storage.messages.vanished_since(folder.folder_id, since)
        limit = max([*view.uids, *gone, 0])
        vanished = [
            u for u in gone if u not in present and (known is None or known.contains(u, limit))
        ]
        if vanished:
            s.untagged(b"VANISHED (EARLIER) " + format_uids(vanished).encode())
        for i, uid in enumerate(view.uids):
            m = view.msgs[uid]
            if m.modseq > since:
                s.untagged(
                    b"%d FETCH (UID %d FLAGS %s MODSEQ (%d))"
                    % (i + 1, uid, flag_list(m.flags), m.modseq)
                )
    s.selected = view
    s.selected_bal = resolved.bal
    s.state = SELECTED
    mode = b"READ-ONLY" if readonly else b"READ-WRITE"
    return b"OK [" + mode + b"] " + cmd.name.encode() + b" completed"


async def _expunge_now(s: Session, uids: list[int] | None) -> None:
    view = selected(s)
    if view.readonly:
        raise _reply("NO", "READ-ONLY", "Mailbox is read-only")
    if s.selected_bal is None or "e" not in s.selected_bal.rights:
        raise _reply("NO", "NOPERM", "Permission denied")
    await s.sync(allow_expunge=True)
    removed = await s.ctx.storage.messages.expunge(view.folder.folder_id, uids)
    known = len(view.uids)
    _announce(s, view, removed)
    if len(view.uids) == known - len(removed):  # every removed UID was in this view
        view.own_expunge(removed)


def _announce(s: Session, view: SelectedView, removed: list[int]) -> None:
    present = [u for u in removed if view.seq_of(u) is not None]
    seqs = view.remove(present)
    if "QRESYNC" in s.enabled:
        if present:
            s.untagged(b"VANISHED " + format_uids(present).encode())
    else:
        for seq in seqs:
            s.untagged(b"%d EXPUNGE" % seq)


async def _expunge(s: Session, cmd: Command) -> bytes:
    if cmd.uid:
        if not isinstance(cmd.args, SeqSet):
            raise _reply("BAD", "", "invalid arguments")
        uids = [u for _, u in targets(selected(s), cmd.args, True)]
        if uids:
            await _expunge_now(s, uids)
        return b"OK UID EXPUNGE completed"
    await _expunge_now(s, None)
    return b"OK EXPUNGE completed"


async def _close(s: Session, cmd: Command) -> bytes:
    view = selected(s)
    await s.settle_recent()
    if (
        cmd.name == "CLOSE"
        and not view.readonly
        and s.selected_bal
        and "e" in s.selected_bal.rights
    ):
        await s.ctx.storage.messages.expunge(view.folder.folder_id, None)
    _deselect(s)
    return b"OK " + cmd.name.encode() + b" completed"


async def _copy(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, CopyArgs):
        raise _reply("BAD", "", "invalid arguments")
    view = selected(s)
    move = cmd.name == "MOVE"
    if move and (
        view.readonly or s.selected_bal is None or not {"t", "e"} <= set(s.selected_bal.rights)
    ):
        raise _reply("NO", "NOPERM" if not view.readonly else "READ-ONLY", "Cannot move from here")
    pairs = targets(view, args.seqset, cmd.uid)
    _resolved, dest = await find(s, args.mailbox, "i", trycreate=True)
    uids = [u for _, u in pairs if view.live(u) is not None]
    verb = (b"UID " if cmd.uid else b"") + cmd.name.encode()
    if not uids:
        return b"OK " + verb + b" completed (no messages)"
    try:
        mapping = await s.ctx.storage.messages.copy(
            view.folder.folder_id, uids, dest.folder_id, move=move
        )
    except QuotaExceeded:
        raise _reply("NO", "OVERQUOTA", "Quota exceeded") from None
    code = b""
    if mapping:
        src = format_uids((a for a, _ in mapping), keep_order=True)
        dst = format_uids((b for _, b in mapping), keep_order=True)
        code = b"[COPYUID %d %s %s] " % (dest.uidvalidity, src.encode(), dst.encode())
    if move:
        if code:
            s.untagged(b"OK " + code + b"Moved")
        _announce(s, view, [a for a, _ in mapping])
        if dest.folder_id == view.folder.folder_id:
            s.dirty = True
            await s.sync(allow_expunge=False)
        return b"OK " + verb + b" completed"
    if dest.folder_id == view.folder.folder_id:
        s.dirty = True
        await s.sync(allow_expunge=cmd.uid)
    return b"OK " + code + verb + b" completed"


HANDLERS: dict[str, Handler] = {
    "SELECT": _select,
    "EXAMINE": _select,
    "EXPUNGE": _expunge,
    "CLOSE": _close,
    "UNSELECT": _close,
    "COPY": _copy,
    "MOVE": _copy,
    "FETCH": fetch,
    "STORE": store,
    "SEARCH": search,
    "SORT": sort,
    "THREAD": thread,
}
