"""SEARCH evaluation (RFC 9051 §6.4.4) over one message.

Text keys are case-insensitive substring matches on Unicode text: header values are RFC 2047
decoded, bodies are transfer-decoded and charset-decoded (unknown charsets fall back to UTF-8
with replacement, then Latin-1).
"""

from __future__ import annotations

import email.header
import email.utils
from dataclasses import dataclass, field
from datetime import UTC, datetime

from caducee.imap.mime import Part, parse_message
from caducee.imap.parser import SeqSet
from caducee.imap.render import UnknownCte, decode_transfer, parse_addresses
from caducee.imap.search import SearchKey

__all__ = ["MessageFacts", "decode_header_value", "matches", "needs_content"]

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_CONTENT_KEYS = frozenset(
    {
        "BCC",
        "BODY",
        "CC",
        "FROM",
        "SUBJECT",
        "TEXT",
        "TO",
        "HEADER",
        "SENTBEFORE",
        "SENTON",
        "SENTSINCE",
    }
)


@dataclass(slots=True)
class MessageFacts:
    """What a search needs about one message; ``data`` is loaded only when needed."""

    seq: int
    uid: int
    flags: frozenset[str]
    internal_date: datetime
    size: int
    modseq: int
    recent: bool = False
    max_seq: int = 0
    max_uid: int = 0
    data: bytes | None = None
    saved: frozenset[int] = frozenset()  # UIDs of the saved result ($)
    _root: Part | None = field(default=None, repr=False)
    _text: str | None = field(default=None, repr=False)

    @property
    def root(self) -> Part:
        if self._root is None:
            self._root = parse_message(self.data or b"")
        return self._root


def needs_content(key: SearchKey) -> bool:
    if key.op in _CONTENT_KEYS:
        return True
    return any(isinstance(a, SearchKey) and needs_content(a) for a in key.args)


def decode_header_value(raw: bytes) -> str:
    """RFC 2047 encoded-words decoded; raw 8-bit taken as UTF-8 (RFC 6532)."""
    text = raw.decode("utf-8", "replace")
    if "=?" not in text:
        return text
    try:
        chunks = email.header.decode_header(text)
    except (ValueError, LookupError, AssertionError):
        return text
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(_decode(chunk, charset))
    return "".join(out)


def _decode(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8")
    except (LookupError, UnicodeDecodeError):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")


def _header_text(facts: MessageFacts, name: str) -> str:
    values = [v for k, v in facts.root.headers if k == name.lower()]
    return "\n".join(decode_header_value(v) for v in values)


def _address_text(facts: MessageFacts, name: str) -> str:
    out: list[str] = []
    for k, v in facts.root.headers:
        if k != name.lower():
            continue
        for disp, _route, local, host in parse_addresses(v):
            if disp:
                out.append(decode_header_value(disp))
            if local and host:
                out.append((local + b"@" + host).decode("utf-8", "replace"))
    return "\n".join(out)


def _body_text(facts: MessageFacts, part: Part, out: list[str], depth: int = 0) -> None:
    data = facts.data or b""
    if part.is_multipart:
        for child in part.children:
            _body_text(facts, child, out, depth + 1)
        return
    if part.message is not None:
        m = part.message
        out.append("\n".join(decode_header_value(v) for _, v in m.headers))
        _body_text(facts, m, out, depth + 1)
        return
    if part.maintype not in ("text", "message") and depth > 0:
        return
    try:
        raw = decode_transfer(data[part.body_start : part.end], part.encoding)
    except UnknownCte:
        raw = data[part.body_start : part.end]
    out.append(_decode(raw, part.param("charset")))


def _contains(haystack: str, needle: str) -> bool:
    return needle.casefold() in haystack.casefold()


def _sent_date(facts: MessageFacts) -> datetime | None:
    raw = facts.root.header("date")
    if raw is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(raw.decode("ascii", "replace"))
    except (TypeError, ValueError, IndexError):
        return None
    return parsed


def _day(d: datetime) -> datetime:
    """The date part (RFC 9051: disregarding time and timezone)."""
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def matches(key: SearchKey, f: MessageFacts) -> bool:
    op = key.op
    if op == "AND":
        return all(matches(k, f) for k in key.args if isinstance(k, SearchKey))
    if op == "OR":
        a, b = key.args
        return (isinstance(a, SearchKey) and matches(a, f)) or (
            isinstance(b, SearchKey) and matches(b, f)
        )
    if op == "NOT":
        sub = key.args[0]
        return isinstance(sub, SearchKey) and not matches(sub, f)
    if op == "ALL":
        return True
    if op in _FLAG_KEYS:
        flag, present = _FLAG_KEYS[op]
        return (flag in f.flags) == present
    if op == "RECENT":
        return f.recent
    if op == "NEW":
        return f.recent and "\\Seen" not in f.flags
    if op == "OLD":
        return not f.recent
    if op == "KEYWORD":
        return _has_flag(f, str(key.args[0]))
    if op == "UNKEYWORD":
        return not _has_flag(f, str(key.args[0]))
    if op in ("SEQ", "UID"):
        seqset = key.args[0]
        if not isinstance(seqset, SeqSet):
            return False
        if seqset.saved:
            return f.uid in f.saved
        if op == "SEQ":
            return seqset.contains(f.seq, f.max_seq)
        return seqset.contains(f.uid, f.max_uid)
    if op == "LARGER":
        return f.size > _int(key.args[0])
    if op == "SMALLER":
        return f.size < _int(key.args[0])
    if op == "MODSEQ":
        return f.modseq >= _int(key.args[0])
    if op in ("OLDER", "YOUNGER"):
        age = (datetime.now(UTC) - f.internal_date).total_seconds()
        limit = _int(key.args[0])
        return age >= limit if op == "OLDER" else age <= limit
    if op in ("BEFORE", "ON", "SINCE"):
        return _compare(op, _day(f.internal_date), key.args[0])
    if op in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        sent = _sent_date(f)
        if sent is None:
            return False
        return _compare(op[4:], _day(sent), key.args[0])
    if op == "SUBJECT":
        return _contains(_header_text(f, op), str(key.args[0]))
    if op in ("FROM", "TO", "CC", "BCC"):
        # the header as written, and its addresses without comments or folding
        # ("<user (c)@ (c) host>" is user@host)
        return _contains(_header_text(f, op), str(key.args[0])) or _contains(
            _address_text(f, op), str(key.args[0])
        )
    if op == "HEADER":
        name, value = key.args
        if not any(k == str(name).lower() for k, _ in f.root.headers):
            return False
        return _contains(_header_text(f, str(name)), str(value))
    if op in ("BODY", "TEXT"):
        if f._text is None:
            chunks: list[str] = []
            _body_text(f, f.root, chunks)
            f._text = "\n".join(chunks)
        if op == "TEXT":
            headers = "\n".join(k + ": " + decode_header_value(v) for k, v in f.root.headers)
            if _contains(headers, str(key.args[0])):
                return True
        return _contains(f._text, str(key.args[0]))
    return False


def _has_flag(f: MessageFacts, flag: str) -> bool:
    low = flag.lower()
    return any(x.lower() == low for x in f.flags)


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _compare(op: str, day: datetime, ref: object) -> bool:
    if not isinstance(ref, datetime):
        return False
    if op == "BEFORE":
        return day < ref
    if op == "ON":
        return day == ref
    return day >= ref
