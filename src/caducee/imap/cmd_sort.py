"""SORT (RFC 5256 §3), its DISPLAYFROM/DISPLAYTO keys (RFC 5957) and ESORT (RFC 5267 §3.2).

Keys compare with the i;ascii-casemap collation (RFC 5256 §3: the default); ties fall back
to the sequence number, ascending whatever REVERSE said (RFC 5256 §3: "if all sort
criteria are equal, the order is the order of the messages in the mailbox")."""

from __future__ import annotations

import email.utils
import functools
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from caducee.imap.cmd_fetch import _reply, load_message, matching, selected
from caducee.imap.commands import SortArgs
from caducee.imap.matcher import decode_header_value
from caducee.imap.render import parse_addresses

if TYPE_CHECKING:
    from caducee.core.model import StoredMessage
    from caducee.imap.commands import Command
    from caducee.imap.mime import Part
    from caducee.imap.session import Session

__all__ = ["base_subject", "sent_date", "sort"]

_NEEDS_HEADERS = frozenset({"CC", "DATE", "FROM", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})
_WSP = re.compile(r"[ \t\r\n]+")
_TRAILER = re.compile(r"(?:[ \t]+|\(fwd\))$", re.IGNORECASE)
_BLOB = r"\[[^\[\]]*\][ \t]*"
_REFWD = re.compile(r"(?:" + _BLOB + r")*(?:re|fwd?)[ \t]*(?:" + _BLOB + r")?:", re.IGNORECASE)
_LEADING_BLOB = re.compile(_BLOB)


def base_subject(raw: str) -> str:
    """RFC 5256 §2.1: the subject without its reply/forward decorations."""
    subject = _WSP.sub(" ", raw)
    while True:
        # (2) trailers: "(fwd)" and white space at the end
        while (m := _TRAILER.search(subject)) is not None and m.group(0):
            subject = subject[: m.start()]
        # (3)-(5) leaders: white space, "re:", "fw:", "fwd:" with blobs, and a blob that is
        # not the whole remaining subject
        while True:
            before = subject
            subject = subject.lstrip(" \t")
            while (m := _REFWD.match(subject)) is not None:
                subject = subject[m.end() :].lstrip(" \t")
            m = _LEADING_BLOB.match(subject)
            if m is not None and subject[m.end() :].strip(" \t"):
                subject = subject[m.end() :]
            if subject == before:
                break
        # (6) "[fwd: ...]" wrapping the whole subject
        if subject[:5].lower() == "[fwd:" and subject.endswith("]"):
            subject = subject[5:-1]
            continue
        return subject


def _first_address(root: Part, name: str, display: bool) -> str:
    for k, v in root.headers:
        if k != name:
            continue
        for disp, _route, local, host in parse_addresses(v):
            if local is None and host is None:
                continue  # a group marker
            if display and disp:
                return decode_header_value(disp)
            mailbox = (local or b"").decode("utf-8", "replace")
            if display and host:
                return mailbox + "@" + host.decode("utf-8", "replace")
            return mailbox
        return ""
    return ""


def sent_date(root: Part, msg: StoredMessage) -> datetime:
    """The Date header as an instant, else the INTERNALDATE (RFC 5256 §3 DATE)."""
    raw = root.header("date")
    if raw is not None:
        try:
            parsed = email.utils.parsedate_to_datetime(raw.decode("ascii", "replace"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
        except (TypeError, ValueError, IndexError):
            pass
    return msg.internal_date.astimezone(UTC)  # RFC 5256 §3 DATE: else the INTERNALDATE


def _key(name: str, msg: StoredMessage, root: Part | None) -> Any:
    if name == "ARRIVAL":
        return msg.internal_date.astimezone(UTC)
    if name == "SIZE":
        return msg.size
    if root is None:  # header keys always get the parsed message
        return ""
    if name == "DATE":
        return sent_date(root, msg)
    if name == "SUBJECT":
        raw = root.header("subject")
        return base_subject(decode_header_value(raw) if raw is not None else "").upper()
    if name in ("FROM", "TO", "CC"):
        return _first_address(root, name.lower(), False).upper()
    return _first_address(root, name[len("DISPLAY") :].lower(), True).upper()


def _ordered_set(nums: list[int]) -> str:
    """A sequence set that keeps the sort order: only ascending runs are compressed."""
    out: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}:{nums[j]}")
        i = j + 1
    return ",".join(out)


async def sort(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, SortArgs):
        raise _reply("BAD", "", "invalid arguments")
    view = selected(s)
    found = await matching(s, view, args.search.key)
    rows: list[tuple[int, int, list[Any]]] = []
    for seq, uid, msg in found:
        root = None
        if any(k in _NEEDS_HEADERS for k, _ in args.criteria):
            root = (await load_message(s, msg))[1]
        rows.append((seq, uid, [_key(k, msg, root) for k, _ in args.criteria]))

    def compare(a: tuple[int, int, list[Any]], b: tuple[int, int, list[Any]]) -> int:
        for (_, reverse), x, y in zip(args.criteria, a[2], b[2], strict=True):
            if x != y:
                less = x < y
                return (1 if less else -1) if reverse else (-1 if less else 1)
        return a[0] - b[0]

    rows.sort(key=functools.cmp_to_key(compare))
    nums = [uid if cmd.uid else seq for seq, uid, _ in rows]
    opts = args.search.return_opts
    if opts is None:
        s.untagged(b"SORT" + b"".join(b" %d" % n for n in nums))
        return b"OK " + (b"UID SORT" if cmd.uid else b"SORT") + b" completed"
    wanted = opts or ("ALL",)
    line = b'ESEARCH (TAG "' + cmd.tag.encode() + b'")' + (b" UID" if cmd.uid else b"")
    if nums:
        if "MIN" in wanted:
            line += b" MIN %d" % nums[0]
        if "MAX" in wanted:
            line += b" MAX %d" % nums[-1]
        if "ALL" in wanted:
            line += b" ALL " + _ordered_set(nums).encode()
    if "COUNT" in wanted:
        line += b" COUNT %d" % len(nums)
    s.untagged(line)
    return b"OK " + (b"UID SORT" if cmd.uid else b"SORT") + b" completed"
