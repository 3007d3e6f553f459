"""Mailbox commands (RFC 9051 §6.3): CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST
(+ LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819, SPECIAL-USE RFC 6154), LSUB, NAMESPACE
(RFC 2342), STATUS, APPEND (+ MULTIAPPEND RFC 3502, UIDPLUS RFC 4315), QUOTA (RFC 9208),
ACL (RFC 4314).

Every name goes through :func:`find`: a BAL the account has no right on, and a folder that
does not exist, get the very same ``NO [NONEXISTENT]``.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

from caducee.core.errors import Conflict, NotFound
from caducee.core.model import BlobRef, Folder, StoredMessage
from caducee.imap.append import append_all
from caducee.imap.names import (
    DELIM,
    SHARED_PREFIX,
    BalView,
    Resolved,
    name_to_wire,
    pattern_regex,
    resolve_name,
    wire_to_name,
)
from caducee.imap.parser import (
    AclArgs,
    AppendArgs,
    Command,
    ListArgs,
    MailboxArgs,
    RenameArgs,
    StatusArgs,
)
from caducee.imap.render import astring, string
from caducee.imap.uidset import format_uids

if TYPE_CHECKING:
    from caducee.imap.session import Handler, Session

__all__ = ["HANDLERS", "find", "mailbox_name"]

ALL_RIGHTS = "lrswipkxtea"
_SPECIAL_USES = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)


def _reply(status: str, code: str, text: str) -> Exception:
    from caducee.imap.session import Reply

    return Reply(status, code, text)


def mailbox_name(s: Session, name: str) -> bytes:
    """A mailbox name as sent to this client (UTF-8 or modified UTF-7), quoted if needed."""
    return astring(name_to_wire(name, s.utf8))


def _decode_name(s: Session, raw: bytes) -> str:
    try:
        name = wire_to_name(raw, s.utf8)
    except ValueError as exc:
        raise _reply("BAD", "", f"invalid mailbox name: {exc}") from None
    return name.rstrip(DELIM) if name != DELIM else name


async def find(
    s: Session, raw: bytes, rights: str = "", *, trycreate: bool = False
) -> tuple[Resolved, Folder]:
    """Resolves a mailbox name to (BAL view, folder), checking ``rights`` (RFC 4314 §4)."""
    name = _decode_name(s, raw)
    resolved = resolve_name(await s.load_views(), name)
    if resolved is None or ("l" not in resolved.bal.rights and "r" not in resolved.bal.rights):
        raise _reply("NO", "NONEXISTENT", "Mailbox does not exist")
    missing = [r for r in rights if r not in resolved.bal.rights]
    folder = await s.ctx.storage.messages.get_folder(
        resolved.bal.mailbox.mailbox_id, resolved.folder
    )
    if folder is None:
        code = "TRYCREATE" if trycreate and "k" in resolved.bal.rights else "NONEXISTENT"
        raise _reply("NO", code, "Mailbox does not exist")
    if missing:
        raise _reply("NO", "NOPERM", "Permission denied")
    return resolved, folder


async def _create(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, MailboxArgs):
        raise _reply("BAD", "", "invalid arguments")
    name = _decode_name(s, args.mailbox)
    if not name or "*" in name or "%" in name or "//" in name or name.startswith(DELIM):
        raise _reply("NO", "CANNOT", "Invalid mailbox name")
    resolved = resolve_name(await s.load_views(), name)
    if resolved is None:
        raise _reply("NO", "CANNOT", "Cannot create a mailbox there")
    if resolved.folder == "INBOX":
        raise _reply("NO", "ALREADYEXISTS", "INBOX always exists")
    if "k" not in resolved.bal.rights:
        raise _reply("NO", "NOPERM", "Permission denied")
    uses = list(args.extra)
    if any(u not in _SPECIAL_USES for u in uses) or len(uses) > 1:
        raise _reply("NO", "USEATTR", "Unsupported special-use attribute")
    mid = resolved.bal.mailbox.mailbox_id
    store = s.ctx.storage.messages
    kept = resolved.folder in await store.orphan_subscriptions(mid)
    try:
        await store.create_folder(mid, resolved.folder, special_use=uses[0] if uses else None)
    except Conflict:
        raise _reply("NO", "ALREADYEXISTS", "Mailbox already exists") from None
    # RFC 9051 §6.3.4 / §6.3.6: CREATE does not subscribe (the operator's default folders are),
    # but a name that stayed subscribed after its folder was deleted is subscribed again
    if not kept:
        await store.set_subscribed(mid, resolved.folder, False)
    return b"OK CREATE completed"


async def _delete(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, MailboxArgs):
        raise _reply("BAD", "", "invalid arguments")
    resolved, folder = await find(s, args.mailbox, "x")
    if folder.name == "INBOX":
        raise _reply("NO", "CANNOT", "INBOX cannot be deleted")
    mid = resolved.bal.mailbox.mailbox_id
    folders = await s.ctx.storage.messages.list_folders(mid)
    if any(f.name.startswith(folder.name + DELIM) for f in folders):
        raise _reply("NO", "HASCHILDREN", "Mailbox has children, delete them first")
    if s.selected is not None and s.selected.folder.folder_id == folder.folder_id:
        s.selected = None
        s.selected_bal = None
        from caducee.imap.session import AUTH

        s.state = AUTH
        s.watch(None)
    await s.ctx.storage.messages.delete_folder(mid, folder.name)
    return b"OK DELETE completed"


async def _rename(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, RenameArgs):
        raise _reply("BAD", "", "invalid arguments")
    resolved, folder = await find(s, args.old, "x")
    new_name = _decode_name(s, args.new)
    target = resolve_name(s.views, new_name)
    if target is None or target.bal.mailbox.mailbox_id != resolved.bal.mailbox.mailbox_id:
        raise _reply("NO", "CANNOT", "Cannot rename to another mailbox set")
    if "k" not in target.bal.rights:
        raise _reply("NO", "NOPERM", "Permission denied")
    if not target.folder or "*" in target.folder or "%" in target.folder:
        raise _reply("NO", "CANNOT", "Invalid mailbox name")
    mid = resolved.bal.mailbox.mailbox_id
    if target.folder == "INBOX" or await s.ctx.storage.messages.get_folder(mid, target.folder):
        raise _reply("NO", "ALREADYEXISTS", "Mailbox already exists")
    try:
        await s.ctx.storage.messages.rename_folder(mid, folder.name, target.folder)
    except Conflict:
        raise _reply("NO", "ALREADYEXISTS", "Mailbox already exists") from None
    return b"OK RENAME completed"


async def _subscribe(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, MailboxArgs):
        raise _reply("BAD", "", "invalid arguments")
    on = cmd.name == "SUBSCRIBE"
    if on:
        resolved, folder = await find(s, args.mailbox)
    else:
        try:
            resolved, folder = await find(s, args.mailbox)
        except Exception:
            await _drop_orphan(s, args.mailbox)
            return b"OK UNSUBSCRIBE completed"
    await s.ctx.storage.messages.set_subscribed(resolved.bal.mailbox.mailbox_id, folder.name, on)
    return b"OK " + cmd.name.encode() + b" completed"


async def _drop_orphan(s: Session, wire: bytes) -> None:
    """UNSUBSCRIBE of a name whose folder is gone (RFC 3501 §6.3.6 keeps it subscribed)."""
    try:
        name = _decode_name(s, wire)
    except Exception:  # a bad name has no subscription to drop
        return
    resolved = resolve_name(await s.load_views(), name)
    if resolved is None or "l" not in resolved.bal.rights:
        return
    with contextlib.suppress(NotFound):
        await s.ctx.storage.messages.set_subscribed(
            resolved.bal.mailbox.mailbox_id, resolved.folder, False
        )


async def _orphans(s: Session) -> list[str]:
    out: list[str] = []
    for view in await s.load_views():
        if "l" in view.rights:
            orphans = await s.ctx.storage.messages.orphan_subscriptions(view.mailbox.mailbox_id)
            out.extend(view.prefix + name for name in orphans)
    return out


class _Entry:
    __slots__ = ("attrs", "folder", "name", "subscribed", "view")

    def __init__(self, name: str, view: BalView | None, folder: Folder | None) -> None:
        self.name = name
        self.view = view
        self.folder = folder
        self.attrs: list[str] = []
        self.subscribed = bool(folder and folder.subscribed)


async def _entries(s: Session) -> list[_Entry]:
    entries: dict[str, _Entry] = {}
    for view in await s.load_views():
        if "l" not in view.rights:
            continue
        if view.prefix:
            top = SHARED_PREFIX
            entries.setdefault(top, _Entry(top, None, None))
            node = view.prefix.rstrip(DELIM)
            entries.setdefault(node, _Entry(node, None, None))
        for folder in await s.ctx.storage.messages.list_folders(view.mailbox.mailbox_id):
            name = view.prefix + folder.name
            entries[name] = _Entry(name, view, folder)
            parts = name.split(DELIM)
            for i in range(1, len(parts)):
                parent = DELIM.join(parts[:i])
                entries.setdefault(parent, _Entry(parent, None, None))
    names = sorted(entries, key=lambda n: (n != "INBOX", n))
    for name in names:
        e = entries[name]
        has_children = any(n.startswith(name + DELIM) for n in names)
        if e.folder is None:
            e.attrs.append("\\Noselect")
        e.attrs.append("\\HasChildren" if has_children else "\\HasNoChildren")
        if e.folder is not None and e.folder.special_use:
            e.attrs.append(e.folder.special_use)
    return [entries[n] for n in names]


async def _list(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, ListArgs):
        raise _reply("BAD", "", "invalid arguments")
    try:
        ref = wire_to_name(args.reference, s.utf8) if args.reference else ""
        patterns = [wire_to_name(p, s.utf8) if p else "" for p in args.patterns]
    except ValueError:
        raise _reply("BAD", "", "invalid mailbox name") from None
    if not args.lsub and patterns == [""]:
        s.untagged(b'LIST (\\Noselect) "/" ""')
        return b"OK LIST completed"
    regexes = [pattern_regex(ref, p) for p in patterns if p]
    subscribed_only = args.lsub or "SUBSCRIBED" in args.select_opts
    special_only = "SPECIAL-USE" in args.select_opts
    show_sub = subscribed_only or "SUBSCRIBED" in args.return_opts
    keyword = b"LSUB" if args.lsub else b"LIST"
    entries = await _entries(s)
    recursive = "RECURSIVEMATCH" in args.select_opts and subscribed_only and not args.lsub
    for e in entries:
        if not any(rx.match(e.name) for rx in regexes):
            continue
        if subscribed_only and not e.subscribed:
            line = _subscribed_below(e, entries, regexes, args.lsub, recursive)
            if line is not None:
                attrs = [a for a in e.attrs if a != "\\Noselect" or args.lsub]
                if args.lsub:
                    attrs = ["\\Noselect"]
                s.untagged(
                    keyword + b" (" + " ".join(attrs).encode() + b') "/" '
                    + mailbox_name(s, e.name) + line
                )  # fmt: skip
            continue
        if special_only and not (e.folder and e.folder.special_use):
            continue
        attrs = list(e.attrs)
        if show_sub and e.subscribed and not args.lsub:
            attrs.append("\\Subscribed")
        if args.lsub:
            attrs = [a for a in attrs if a == "\\Noselect"]
        s.untagged(keyword + b" (" + " ".join(attrs).encode() + b') "/" ' + mailbox_name(s, e.name))
        if (
            args.status_atts
            and e.folder is not None
            and e.view is not None
            and "r" in e.view.rights
        ):
            await _status_line(s, e.name, e.view, e.folder, args.status_atts)
    if subscribed_only:
        # RFC 5258 §3.4: still subscribed, the folder is gone
        attrs_b = b"(\\Noselect)" if args.lsub else b"(\\NonExistent \\Subscribed)"
        for name in await _orphans(s):
            if any(rx.match(name) for rx in regexes):
                s.untagged(keyword + b" " + attrs_b + b' "/" ' + mailbox_name(s, name))
    return b"OK " + keyword + b" completed"


def _subscribed_below(
    e: _Entry, entries: list[_Entry], regexes: list[re.Pattern[str]], lsub: bool, recursive: bool
) -> bytes | None:
    """An unsubscribed name with a subscribed descendant: LSUB shows it ``\\Noselect``
    (RFC 3501 §6.3.9) when the descendant does not match the pattern itself; LIST
    (SUBSCRIBED RECURSIVEMATCH) shows it with CHILDINFO (RFC 5258 §3.5) when some
    subscribed descendant does not match the pattern. None: not shown."""
    if not lsub and not recursive:
        return None
    below = [d for d in entries if d.subscribed and d.name.startswith(e.name + DELIM)]
    outside = [d for d in below if not any(rx.match(d.name) for rx in regexes)]
    if not outside:
        return None
    return b"" if lsub else b' ("CHILDINFO" ("SUBSCRIBED"))'


async def _status_line(
    s: Session, name: str, view: BalView, folder: Folder, items: tuple[str, ...]
) -> None:
    msgs = await s.ctx.storage.messages.list_messages(folder.folder_id)
    values: list[str] = []
    for item in items:
        if item == "MESSAGES":
            n = len(msgs)
        elif item == "RECENT":
            n = _recent_count(s, folder, msgs)
        elif item == "UIDNEXT":
            n = max(folder.uidnext, (msgs[-1].uid + 1) if msgs else 1)
        elif item == "UIDVALIDITY":
            n = folder.uidvalidity
        elif item == "UNSEEN":
            n = sum(1 for m in msgs if "\\Seen" not in m.flags)
        elif item == "DELETED":
            n = sum(1 for m in msgs if "\\Deleted" in m.flags)
        elif item == "SIZE":
            n = sum(m.size for m in msgs)
        elif item == "HIGHESTMODSEQ":
            n = max([folder.highest_modseq, *(m.modseq for m in msgs)])
            s.enabled.add("CONDSTORE")
        elif item == "APPENDLIMIT":
            n = s.ctx.settings.max_literal
        else:
            continue
        values.append(f"{item} {n}")
    s.untagged(b"STATUS " + mailbox_name(s, name) + b" (" + " ".join(values).encode() + b")")


def _recent_count(s: Session, folder: Folder, msgs: list[StoredMessage]) -> int:
    """RFC 3501 §6.3.10 STATUS RECENT: the messages above the folder's persistent mark (no
    session has seen them yet), plus those recent in this session if it has the folder
    selected. IMAP4rev2 sessions have no \\Recent."""
    if s.rev2:
        return 0
    mine: set[int] = set()
    if s.selected is not None and s.selected.folder.folder_id == folder.folder_id:
        mine = s.selected.recent
    return sum(1 for m in msgs if m.uid > folder.recent_uid or m.uid in mine)


async def _status(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, StatusArgs):
        raise _reply("BAD", "", "invalid arguments")
    resolved, folder = await find(s, args.mailbox, "r")
    name = resolved.bal.prefix + folder.name
    await _status_line(s, name, resolved.bal, folder, args.items)
    return b"OK STATUS completed"


async def _namespace(s: Session, cmd: Command) -> bytes:
    shared = b"((" + string(name_to_wire(SHARED_PREFIX + DELIM, s.utf8)) + b' "/"))'
    s.untagged(b'NAMESPACE (("" "/")) NIL ' + shared)
    return b"OK NAMESPACE completed"


async def _append(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, AppendArgs):
        raise _reply("BAD", "", "invalid arguments")
    storage = s.ctx.storage
    try:
        resolved, folder = await find(s, args.mailbox, "i", trycreate=True)
    except Exception:
        for m in args.messages:
            if isinstance(m.literal.spool, BlobRef):
                await storage.blobs.delete(m.literal.spool)
        raise
    appended = await append_all(s, args, resolved.bal.rights, folder)
    uids = [m.uid for m in appended]
    view = s.selected
    if view is not None and view.folder.folder_id == folder.folder_id:
        for stored in appended:  # our own change: announce it now, without re-reading
            before = set(view.recent)
            lines = view.own_append(stored, rev1=not s.rev2)
            if lines is None:
                s.dirty = True
                break
            arrived = view.recent - before
            if arrived and not s.rev2 and not view.readonly:  # \Recent in one session only
                lines = await s.claim_arrived(view, arrived, lines)
            s.out += b"".join(lines)
        await s.sync(allow_expunge=False)
    code = f"[APPENDUID {folder.uidvalidity} {format_uids(uids, keep_order=True)}] "
    return b"OK " + code.encode() + b"APPEND completed"


# -- QUOTA (RFC 9208) -------------------------------------------------------------------------
async def _quota_line(s: Session, view: BalView) -> None:
    mailbox = await s.ctx.storage.accounts.get_mailbox_by_id(view.mailbox.mailbox_id)
    if mailbox is None or mailbox.quota_bytes <= 0:
        return
    used = (mailbox.used_bytes + 1023) // 1024
    limit = mailbox.quota_bytes // 1024
    s.untagged(b"QUOTA " + string(mailbox.address) + b" (STORAGE %d %d)" % (used, limit))


async def _getquotaroot(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, MailboxArgs):
        raise _reply("BAD", "", "invalid arguments")
    resolved, folder = await find(s, args.mailbox)
    name = mailbox_name(s, resolved.bal.prefix + folder.name)
    if resolved.bal.mailbox.quota_bytes > 0:
        s.untagged(b"QUOTAROOT " + name + b" " + string(resolved.bal.mailbox.address))
        await _quota_line(s, resolved.bal)
    else:
        s.untagged(b"QUOTAROOT " + name)
    return b"OK GETQUOTAROOT completed"


async def _getquota(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, MailboxArgs):
        raise _reply("BAD", "", "invalid arguments")
    root = args.mailbox.decode("utf-8", "replace").lower()
    for view in await s.load_views():
        if view.mailbox.address.lower() == root and view.mailbox.quota_bytes > 0:
            await _quota_line(s, view)
            return b"OK GETQUOTA completed"
    raise _reply("NO", "NONEXISTENT", "No such quota root")


async def _setquota(s: Session, cmd: Command) -> bytes:
    raise _reply("NO", "NOPERM", "Quotas are set by the operator")


# -- ACL (RFC 4314) ---------------------------------------------------------------------------
async def _getacl(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, MailboxArgs):
        raise _reply("BAD", "", "invalid arguments")
    resolved, folder = await find(s, args.mailbox, "a")
    accounts = s.ctx.storage.accounts
    out = b"ACL " + mailbox_name(s, resolved.bal.prefix + folder.name)
    for login, rights in await accounts.acl(resolved.bal.mailbox.mailbox_id):
        if rights:
            out += b" " + astring(login) + b" " + astring(rights)
    s.untagged(out)
    return b"OK GETACL completed"


def _apply_rights(current: str, spec: str) -> str:
    spec = spec.replace("c", "k").replace("d", "xte")
    if spec.startswith("+"):
        return "".join(r for r in ALL_RIGHTS if r in current or r in spec[1:])
    if spec.startswith("-"):
        return "".join(r for r in ALL_RIGHTS if r in current and r not in spec[1:])
    return "".join(r for r in ALL_RIGHTS if r in spec)


async def _setacl(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, AclArgs):
        raise _reply("BAD", "", "invalid arguments")
    resolved, _folder = await find(s, args.mailbox, "a")
    ident = args.identifier.decode("utf-8", "replace")
    spec = args.rights.decode("ascii", "replace")
    if any(c not in ALL_RIGHTS + "cd+-" for c in spec) or ident.startswith("-"):
        raise _reply("BAD", "", "invalid rights")
    accounts = s.ctx.storage.accounts
    if await accounts.get_account(ident) is None:
        raise _reply("NO", "CANNOT", "No such identifier")
    address = resolved.bal.mailbox.address
    current = await accounts.rights(ident, resolved.bal.mailbox.mailbox_id)
    new = _apply_rights(current, spec) if cmd.name == "SETACL" else ""
    if new:
        await accounts.grant(ident, address, new)
    else:
        await accounts.revoke(ident, address)
    await s.audit("mailbox.acl", "ok", address, identifier=ident[:128], rights=new)
    return b"OK " + cmd.name.encode() + b" completed"


async def _listrights(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, AclArgs):
        raise _reply("BAD", "", "invalid arguments")
    resolved, folder = await find(s, args.mailbox, "a")
    s.untagged(
        b"LISTRIGHTS "
        + mailbox_name(s, resolved.bal.prefix + folder.name)
        + b" "
        + astring(args.identifier.decode("utf-8", "replace"))
        + b' "" l r s w i p k x t e a'
    )
    return b"OK LISTRIGHTS completed"


async def _myrights(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, MailboxArgs):
        raise _reply("BAD", "", "invalid arguments")
    resolved, folder = await find(s, args.mailbox)
    s.untagged(
        b"MYRIGHTS "
        + mailbox_name(s, resolved.bal.prefix + folder.name)
        + b" "
        + astring(resolved.bal.rights)
    )
    return b"OK MYRIGHTS completed"


HANDLERS: dict[str, Handler] = {
    "CREATE": _create,
    "DELETE": _delete,
    "RENAME": _rename,
    "SUBSCRIBE": _subscribe,
    "UNSUBSCRIBE": _subscribe,
    "LIST": _list,
    "LSUB": _list,
    "STATUS": _status,
    "NAMESPACE": _namespace,
    "APPEND": _append,
    "GETQUOTAROOT": _getquotaroot,
    "GETQUOTA": _getquota,
    "SETQUOTA": _setquota,
    "GETACL": _getacl,
    "SETACL": _setacl,
    "DELETEACL": _setacl,
    "LISTRIGHTS": _listrights,
    "MYRIGHTS": _myrights,
}
