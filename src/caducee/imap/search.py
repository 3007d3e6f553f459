"""SEARCH keys: parsing (RFC 9051 §6.4.4, §9 ``search-key``) into a small tree.

Evaluation against a message lives in :mod:`caducee.imap.matcher`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from caducee.imap.lexer import Cursor, ParseError

__all__ = ["SearchKey", "parse_search_program"]

_FLAG_KEYS = frozenset(
    {
        "ALL",
        "ANSWERED",
        "DELETED",
        "DRAFT",
        "FLAGGED",
        "NEW",
        "OLD",
        "RECENT",
        "SEEN",
        "UNANSWERED",
        "UNDELETED",
        "UNDRAFT",
        "UNFLAGGED",
        "UNSEEN",
    }
)
_STRING_KEYS = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
_DATE_KEYS = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})
_MAX_DEPTH = 50
_SUPPORTED_CHARSETS = frozenset({"UTF-8", "US-ASCII", "UTF8"})


@dataclass(frozen=True, slots=True)
class SearchKey:
    """``op`` is a key name (``FROM``, ``UID``...) or ``AND``/``OR``/``NOT``/``SEQ``.

    ``args`` hold: sub-keys (AND/OR/NOT), a str (text keys, already decoded from the charset),
    a datetime (date keys), an int (LARGER/SMALLER/MODSEQ/OLDER/YOUNGER), a ``SeqSet``
    (SEQ/UID), a (field, value) pair (HEADER) or a flag (KEYWORD/UNKEYWORD).
    """

    op: str
    args: tuple[object, ...] = ()


class BadCharset(ParseError):
    """An unsupported CHARSET (reply ``NO [BADCHARSET]``)."""


def parse_search_program(cur: Cursor, charset: str | None) -> SearchKey:
    """``1*search-key`` separated by spaces, as an implicit AND."""
    if charset is not None and charset not in _SUPPORTED_CHARSETS:
        raise BadCharset(f"unsupported charset {charset}")
    keys = [_key(cur, charset, 0)]
    while cur.maybe_sp():
        keys.append(_key(cur, charset, 0))
    return keys[0] if len(keys) == 1 else SearchKey("AND", tuple(keys))


def _text(cur: Cursor, charset: str | None) -> str:
    raw = cur.astring()
    try:
        return raw.decode("ascii" if charset == "US-ASCII" else "utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError("search string is not valid in the charset") from exc


def _key(cur: Cursor, charset: str | None, depth: int) -> SearchKey:
    from caducee.imap.parser import parse_date, parse_seqset

    if depth > _MAX_DEPTH:
        raise ParseError("search program nested too deeply")
    c = cur.peek()
    if c == 0x28:
        cur.pos += 1
        keys = [_key(cur, charset, depth + 1)]
        while not cur.take(b")"):
            cur.sp()
            keys.append(_key(cur, charset, depth + 1))
        return keys[0] if len(keys) == 1 else SearchKey("AND", tuple(keys))
    if c is not None and (0x30 <= c <= 0x39 or c in (0x2A, 0x24)):
        return SearchKey("SEQ", (parse_seqset(cur),))
    name = cur.atom().upper()
    if name in _FLAG_KEYS:
        return SearchKey(name)
    if name in _STRING_KEYS:
        cur.sp()
        return SearchKey(name, (_text(cur, charset),))
    if name in _DATE_KEYS:
        cur.sp()
        date: datetime = parse_date(cur)
        return SearchKey(name, (date,))
    if name in ("LARGER", "SMALLER", "OLDER", "YOUNGER"):
        cur.sp()
        return SearchKey(name, (cur.number(),))
    if name in ("KEYWORD", "UNKEYWORD"):
        cur.sp()
        return SearchKey(name, (cur.flag(),))
    if name == "HEADER":
        cur.sp()
        field = cur.astring().decode("ascii", "replace")
        cur.sp()
        return SearchKey(name, (field, _text(cur, charset)))
    if name == "UID":
        cur.sp()
        return SearchKey(name, (parse_seqset(cur),))
    if name == "NOT":
        cur.sp()
        return SearchKey(name, (_key(cur, charset, depth + 1),))
    if name == "OR":
        cur.sp()
        a = _key(cur, charset, depth + 1)
        cur.sp()
        return SearchKey(name, (a, _key(cur, charset, depth + 1)))
    if name == "MODSEQ":
        cur.sp()
        if cur.peek() == 0x22:  # entry-name entry-type-req (RFC 7162 §3.1.5): ignored
            cur.quoted()
            cur.sp()
            cur.atom()
            cur.sp()
        return SearchKey(name, (cur.number(),))
    raise ParseError(f"unknown search key {name!r}")
