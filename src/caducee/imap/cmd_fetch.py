"""FETCH (RFC 9051 §6.4.5, BINARY RFC 3516, CONDSTORE RFC 7162), STORE (§6.4.6) and SEARCH
(§6.4.4, ESEARCH RFC 4731, SEARCHRES RFC 5182) on the selected mailbox."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from caducee.core.model import StoredMessage
from caducee.imap.commands import MONTHS, FetchArgs, FetchAtt, SearchArgs, SeqSet, StoreArgs
from caducee.imap.matcher import MessageFacts, matches, needs_content
from caducee.imap.mime import Part
from caducee.imap.render import (
    SectionError,
    UnknownCte,
    binary_bytes,
    body_structure,
    envelope,
    section_bytes,
)
from caducee.imap.search import SearchKey
from caducee.imap.uidset import format_uids
from caducee.imap.view import SelectedView, flag_list
from caducee.storage.interfaces import FlagMode

if TYPE_CHECKING:
    from caducee.imap.parser import Command
    from caducee.imap.session import Session

__all__ = ["fetch", "internal_date", "load_message", "search", "selected", "store", "targets"]

_SEEN_SETTERS = frozenset({"BODY", "BINARY", "RFC822", "RFC822.TEXT"})
_DATA_ATTS = frozenset(
    {
        "ENVELOPE",
        "BODY",
        "BODYSTRUCTURE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.TEXT",
        "BODY.PEEK",
        "BINARY",
        "BINARY.PEEK",
        "BINARY.SIZE",
    }
)
_SYSTEM_FLAGS = frozenset({"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"})


def _reply(status: str, code: str, text: str) -> Exception:
    from caducee.imap.session import Reply

    return Reply(status, code, text)


def selected(s: Session) -> SelectedView:
    if s.selected is None:
        raise _reply("BAD", "", "No mailbox selected")
    return s.selected


def targets(view: SelectedView, seqset: SeqSet, uid: bool) -> list[tuple[int, int]]:
    """(seq, uid) pairs named by a set, ascending (RFC 9051 §6.4.8 for UID sets)."""
    if seqset.saved:
        return [(i + 1, u) for i, u in enumerate(view.uids) if u in view.saved]
    if uid:
        largest = view.uids[-1] if view.uids else 0
        return [(i + 1, u) for i, u in enumerate(view.uids) if seqset.contains(u, largest)]
    n = view.exists
    for lo, hi in seqset.ranges:
        if lo > n or hi > n or (n == 0 and (lo == 0 or hi == 0)):
            raise _reply("BAD", "", "Invalid sequence number")
    return [(seq, view.uids[seq - 1]) for seq in sorted(seqset.resolve(n))]


def internal_date(d: datetime) -> bytes:
    offset = d.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    text = (
        f'"{d.day:02d}-{MONTHS[d.month - 1].title()}-{d.year:04d} '
        f'{d.hour:02d}:{d.minute:02d}:{d.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}"'
    )
    return text.encode()


async def load_message(s: Session, msg: StoredMessage) -> tuple[bytes, Part]:
    cache = s.ctx.cache
    item = cache.get(msg.blob.blob_id)
    if item is not None:
        data = item[0]
    else:
        data = await s.ctx.storage.blobs.get(msg.blob)
        cache.put(msg.blob.blob_id, data)
    return data, cache.structure(msg.blob.blob_id, data)


def _literal(data: bytes, binary: bool = False) -> bytes:
    prefix = b"~" if binary and b"\x00" in data else b""
    return prefix + b"{%d}\r\n" % len(data) + data


def _partial(data: bytes, att: FetchAtt) -> tuple[bytes, bytes]:
    if att.partial is None:
        return b"", data
    start, length = att.partial
    return b"<%d>" % start, data[start : start + length]


def _render(
    s: Session,
    att: FetchAtt,
    msg: StoredMessage,
    seq: int,
    view: SelectedView,
    data: bytes,
    root: Part | None,
) -> bytes:
    name = att.name
    if name == "UID":
        return b"UID %d" % msg.uid
    if name == "FLAGS":
        return b"FLAGS " + flag_list(msg.flags, msg.uid in view.recent and not s.rev2)
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + internal_date(msg.internal_date)
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % msg.size
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % msg.modseq
    if root is None:
        raise _reply("NO", "SERVERBUG", "message data unavailable")
    if name == "ENVELOPE":
        return b"ENVELOPE " + envelope(root, utf8=s.utf8)
    if name == "BODYSTRUCTURE":
        return b"BODYSTRUCTURE " + body_structure(data, root, extended=True, utf8=s.utf8)
    if name == "BODY" and att.section is None:
        return b"BODY " + body_structure(data, root, extended=False, utf8=s.utf8)
    if name == "RFC822":
        return b"RFC822 " + _literal(data)
    if name == "RFC822.HEADER":
        return b"RFC822.HEADER " + _literal(section_bytes(data, root, "HEADER"))
    if name == "RFC822.TEXT":
        return b"RFC822.TEXT " + _literal(section_bytes(data, root, "TEXT"))
    section = att.section or ""
    if name in ("BODY", "BODY.PEEK"):
        try:
            content = section_bytes(data, root, section, att.fields)
        except SectionError:
            content = b""
        origin, content = _partial(content, att)
        return att.label.encode() + origin + b" " + _literal(content)
    try:
        if section and not section[-1].isdigit():  # a section text: nothing to decode
            decoded = section_bytes(data, root, section, att.fields)
        else:
            decoded = binary_bytes(data, root, section)
    except UnknownCte:
        raise _reply("NO", "UNKNOWN-CTE", "Cannot decode this part") from None
    except SectionError:
        decoded = b""
    if name == "BINARY.SIZE":
        return att.label.encode() + b" %d" % len(decoded)
    origin, content = _partial(decoded, att)
    return att.label.encode() + origin + b" " + _literal(content, True)


async def fetch(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, FetchArgs):
        raise _reply("BAD", "", "invalid arguments")
    view = selected(s)
    if args.changedsince is not None or any(a.name == "MODSEQ" for a in args.atts):
        enable_condstore(s, view)
    pairs = targets(view, args.seqset, cmd.uid)
    atts = list(args.atts)
    # Once CONDSTORE is enabled, FETCH responses carry the mod-sequence (RFC 7162 §3.1): with
    # CHANGEDSINCE, and whenever they carry FLAGS (as Dovecot does; IMAPClient expects it)
    if (
        s.condstore
        and (args.changedsince is not None or any(a.name == "FLAGS" for a in atts))
        and not any(a.name == "MODSEQ" for a in atts)
    ):
        atts.append(FetchAtt("MODSEQ", label="MODSEQ"))
    need_data = any(a.name in _DATA_ATTS for a in atts)
    sets_seen = (
        not view.readonly
        and "s" in (s.selected_bal.rights if s.selected_bal else "")
        and any(
            a.name in _SEEN_SETTERS and (a.name != "BODY" or a.section is not None) for a in atts
        )
    )
    if args.changedsince is not None:
        pairs = [(q, u) for q, u in pairs if (m := view.live(u)) and m.modseq > args.changedsince]
    if args.vanished and args.changedsince is not None:  # RFC 7162 §3.2.6
        gone = await s.ctx.storage.messages.vanished_since(view.folder.folder_id, args.changedsince)
        largest = view.uids[-1] if view.uids else 0
        named = [u for u in gone if args.seqset.contains(u, max(largest, u))]
        if named:
            s.untagged(b"VANISHED (EARLIER) " + format_uids(named).encode())
    flags_added: set[int] = set()
    if sets_seen:
        unseen = [u for _, u in pairs if (m := view.live(u)) and "\\Seen" not in m.flags]
        if unseen:
            changed, _ = await s.ctx.storage.messages.store_flags(
                view.folder.folder_id, unseen, ["\\Seen"], FlagMode.ADD
            )
            for m in changed:
                view.update(m)
                flags_added.add(m.uid)
    if need_data and pairs and s.selected_bal is not None:
        # Reading message content (headers, envelope, bodies) is access to health data: one
        # audit event per command, naming the BAL, the folder and the UIDs, never the content.
        uids = format_uids(sorted(u for _, u in pairs))
        await s.audit(
            "imap.message.read",
            "ok",
            s.selected_bal.mailbox.address,
            folder=view.folder.name[:200],
            uids=uids if len(uids) <= 500 else uids[:497] + "...",
            count=str(len(pairs)),
        )
    streamable = need_data and all(a.name not in _DATA_ATTS or _whole(a) for a in atts)
    for seq, uid in pairs:
        msg = view.live(uid)
        if msg is None:
            continue
        if streamable and msg.blob.size > s.ctx.settings.stream_above:
            await _stream_fetch(s, seq, msg, atts, view, uid in flags_added)
            continue
        data, root = b"", None
        if need_data:
            data, root = await load_message(s, msg)
        items = [_render(s, att, msg, seq, view, data, root) for att in atts]
        if uid in flags_added and not any(a.name == "FLAGS" for a in atts):
            items.append(b"FLAGS " + flag_list(msg.flags, uid in view.recent and not s.rev2))
            if s.condstore and not any(a.name == "MODSEQ" for a in atts):
                items.append(b"MODSEQ (%d)" % msg.modseq)
        s.out += b"* %d FETCH (" % seq + b" ".join(items) + b")\r\n"
        if len(s.out) > 256 * 1024:
            await s.flush()
    await s.sync(allow_expunge=cmd.uid)
    return b"OK " + (b"UID " if cmd.uid else b"") + b"FETCH completed"


def _whole(att: FetchAtt) -> bool:
    return att.name == "RFC822" or (att.name in ("BODY", "BODY.PEEK") and att.section == "")


async def _stream_fetch(
    s: Session,
    seq: int,
    msg: StoredMessage,
    atts: list[FetchAtt],
    view: SelectedView,
    flags_added: bool,
) -> None:
    """A big message's octets go from blob storage to the socket in chunks, never whole in
    memory (only whole-message items: BODY[], BODY.PEEK[], RFC822, with partial ranges)."""
    await s.flush()
    conn = s.conn
    conn.write(b"* %d FETCH (" % seq)
    size = msg.blob.size
    for i, att in enumerate(atts):
        if i:
            conn.write(b" ")
        if not _whole(att):
            conn.write(_render(s, att, msg, seq, view, b"", None))
            continue
        start, end = 0, size
        label = b"RFC822" if att.name == "RFC822" else att.label.encode()
        if att.partial is not None:
            start = min(att.partial[0], size)
            end = min(att.partial[0] + att.partial[1], size)
            label += b"<%d>" % att.partial[0]
        conn.write(label + b" {%d}\r\n" % (end - start))
        async for chunk in s.ctx.storage.blobs.stream(msg.blob, start, end):
            conn.write(chunk)
            await conn.drain()
    if flags_added and not any(a.name == "FLAGS" for a in atts):
        conn.write(b" FLAGS " + flag_list(msg.flags, msg.uid in view.recent and not s.rev2))
    conn.write(b")\r\n")
    await conn.drain()


async def store(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, StoreArgs):
        raise _reply("BAD", "", "invalid arguments")
    view = selected(s)
    if view.readonly:
        raise _reply("NO", "READ-ONLY", "Mailbox is read-only")
    for flag in args.flags:
        if flag.startswith("\\") and flag not in _SYSTEM_FLAGS:
            raise _reply("BAD", "", f"Invalid flag {flag}")
    rights = s.selected_bal.rights if s.selected_bal else ""
    for flag in args.flags:
        need = "s" if flag == "\\Seen" else "t" if flag == "\\Deleted" else "w"
        if need not in rights:
            raise _reply("NO", "NOPERM", "Permission denied")
    if args.unchangedsince is not None:
        enable_condstore(s, view)
    pairs = targets(view, args.seqset, cmd.uid)
    uids = [u for _, u in pairs if view.live(u) is not None]
    mode = {"+": FlagMode.ADD, "-": FlagMode.REMOVE, "": FlagMode.REPLACE}[args.mode]
    changed: list[StoredMessage] = []
    failed: list[int] = []
    if uids:
        changed, failed = await s.ctx.storage.messages.store_flags(
            view.folder.folder_id, uids, args.flags, mode, unchanged_since=args.unchangedsince
        )
    for m in changed:
        view.update(m)
    view.own_store(changed)
    changed_uids = {m.uid for m in changed}
    failed_set = set(failed)
    for seq, uid in pairs:
        msg = view.live(uid)
        if msg is None or uid in failed_set:
            continue
        mod = b" MODSEQ (%d)" % msg.modseq if s.condstore else b""
        uid_item = b"UID %d " % uid if cmd.uid else b""
        if not args.silent:
            flags = flag_list(msg.flags, uid in view.recent and not s.rev2)
            s.out += b"* %d FETCH (%sFLAGS %s%s)\r\n" % (seq, uid_item, flags, mod)
        elif args.unchangedsince is not None and uid in changed_uids:
            s.out += b"* %d FETCH (%sMODSEQ (%d))\r\n" % (seq, uid_item, msg.modseq)
    await s.sync(allow_expunge=cmd.uid)
    verb = b"UID STORE" if cmd.uid else b"STORE"
    if failed:
        if cmd.uid:
            mset = format_uids(failed)
        else:
            mset = format_uids(q for q, u in pairs if u in failed_set)
        return b"OK [MODIFIED " + mset.encode() + b"] Conditional " + verb + b" failed"
    return b"OK " + verb + b" completed"


def enable_condstore(s: Session, view: SelectedView) -> None:
    """A CONDSTORE-enabling command (RFC 7162 §3.1) in the selected state: the first one
    reports the folder's HIGHESTMODSEQ in an untagged OK before its own responses."""
    if not s.condstore:
        s.untagged(b"OK [HIGHESTMODSEQ %d] Highest" % view.highest_modseq)
    s.enabled.add("CONDSTORE")
    view.condstore = True


def _result_modseq(found: list[tuple[int, int, int]], opts: tuple[str, ...] | None) -> int:
    """RFC 7162 §3.1.5 with RFC 4731: the highest MODSEQ of the messages *returned*; with
    only MIN and/or MAX asked, those are the only messages returned."""
    if not found:
        return 0
    wanted = set(opts or ()) - {"SAVE"}
    if wanted and wanted <= {"MIN", "MAX"}:
        picked = ([found[0][2]] if "MIN" in wanted else []) + (
            [found[-1][2]] if "MAX" in wanted else []
        )
        return max(picked)
    return max(m for _, _, m in found)


async def matching(
    s: Session, view: SelectedView, key: SearchKey
) -> list[tuple[int, int, StoredMessage]]:
    """(seq, uid, message) of the messages of the view that match a search program."""
    content = needs_content(key)
    max_seq = view.exists
    max_uid = view.uids[-1] if view.uids else 0
    found: list[tuple[int, int, StoredMessage]] = []
    for i, uid in enumerate(view.uids):
        msg = view.live(uid)
        if msg is None:
            continue
        facts = MessageFacts(
            i + 1,
            uid,
            msg.flags,
            msg.internal_date,
            msg.size,
            msg.modseq,
            uid in view.recent,
            max_seq,
            max_uid,
            saved=view.saved,
        )
        if content:
            data, root = await load_message(s, msg)
            facts.data = data
            facts._root = root
        if matches(key, facts):
            found.append((i + 1, uid, msg))
    return found


async def search(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, SearchArgs):
        raise _reply("BAD", "", "invalid arguments")
    view = selected(s)
    key = args.key
    uses_modseq = _uses(key, "MODSEQ")
    if uses_modseq:
        enable_condstore(s, view)
    found = [(q, u, m.modseq) for q, u, m in await matching(s, view, key)]
    nums = [u if cmd.uid else q for q, u, _ in found]
    opts = args.return_opts
    if opts is not None and "SAVE" in opts:
        others = set(opts) - {"SAVE"}
        if not others or not others <= {"MIN", "MAX"}:
            view.saved = frozenset(u for _, u, _ in found)
        else:
            keep: set[int] = set()
            if "MIN" in opts and found:
                keep.add(found[0][1])
            if "MAX" in opts and found:
                keep.add(found[-1][1])
            view.saved = frozenset(keep)
    modseq = _result_modseq(found, opts)
    if opts is not None or s.rev2:
        wanted = [o for o in (opts or ()) if o != "SAVE"] or (["ALL"] if opts != ("SAVE",) else [])
        if opts is None:
            wanted = ["ALL"]
        line = b'ESEARCH (TAG "' + cmd.tag.encode() + b'")' + (b" UID" if cmd.uid else b"")
        if nums:
            if "MIN" in wanted:
                line += b" MIN %d" % min(nums)
            if "MAX" in wanted:
                line += b" MAX %d" % max(nums)
            if "ALL" in wanted:
                line += b" ALL " + format_uids(nums).encode()
        if "COUNT" in wanted:
            line += b" COUNT %d" % len(nums)
        if uses_modseq and nums:
            line += b" MODSEQ %d" % modseq
        if opts != ("SAVE",):
            s.untagged(line)
    else:
        line = b"SEARCH" + b"".join(b" %d" % n for n in nums)
        if uses_modseq and nums:
            line += b" (MODSEQ %d)" % modseq
        s.untagged(line)
    await s.sync(allow_expunge=cmd.uid)
    return b"OK " + (b"UID " if cmd.uid else b"") + b"SEARCH completed"


def _uses(key: SearchKey, op: str) -> bool:
    return key.op == op or any(isinstance(a, SearchKey) and _uses(a, op) for a in key.args)
