"""Sans-IO IMAP command parser (RFC 9051 §6 and §9; RFC 3501; extensions as cited).

``parse_command(texts, literals)`` turns one complete command -- its line texts without CRLF
and the literals between them -- into a :class:`Command`. Pure, no I/O; every syntax error
raises :class:`ParseError` with the reason that goes with ``BAD``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from caducee.imap.commands import (
    MONTHS,
    AclArgs,
    AppendArgs,
    AppendMessage,
    AuthArgs,
    Command,
    CopyArgs,
    FetchArgs,
    FetchAtt,
    ListArgs,
    LoginArgs,
    MailboxArgs,
    RenameArgs,
    SearchArgs,
    SelectArgs,
    SeqSet,
    SortArgs,
    StatusArgs,
    StoreArgs,
    ThreadArgs,
)
from caducee.imap.lexer import Cursor, Literal, ParseError
from caducee.imap.search import parse_search_program

__all__ = [
    "AclArgs",
    "AppendArgs",
    "AppendMessage",
    "AuthArgs",
    "Command",
    "CopyArgs",
    "FetchArgs",
    "FetchAtt",
    "ListArgs",
    "LoginArgs",
    "MailboxArgs",
    "ParseError",
    "RenameArgs",
    "SearchArgs",
    "SelectArgs",
    "SeqSet",
    "StatusArgs",
    "StoreArgs",
    "parse_command",
    "parse_date",
    "parse_seqset",
]


# -------------------------------------------------------------------------------------
def parse_seqset(cur: Cursor, *, allow_saved: bool = True) -> SeqSet:
    """``sequence-set`` incl. ``*`` and ``$`` (RFC 5182)."""
    if cur.peek() == 0x24:  # "$"
        if not allow_saved:
            raise ParseError("$ not allowed here")
        cur.pos += 1
        return SeqSet(saved=True)
    ranges: list[tuple[int, int]] = []
    while True:
        lo = _seq_number(cur)
        hi = lo
        if cur.take(b":"):
            hi = _seq_number(cur)
        ranges.append((lo, hi))
        if len(ranges) > 100_000:
            raise ParseError("sequence set too long")
        if not cur.take(b","):
            break
    return SeqSet(tuple(ranges))


def _seq_number(cur: Cursor) -> int:
    if cur.take(b"*"):
        return 0
    return cur.nz_number()


def parse_date(cur: Cursor) -> datetime:
    """``date`` (RFC 9051 §9): ``d-Mon-yyyy``, optionally quoted; a UTC midnight."""
    quoted = cur.take(b'"')
    raw = bytearray()
    while (c := cur.peek()) is not None and c not in (0x20, 0x22, 0x29):
        raw.append(c)
        cur.pos += 1
    if quoted:
        cur.expect(b'"')
    parts = raw.decode("ascii", "replace").split("-")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
        raise ParseError("invalid date, expected d-Mon-yyyy")
    try:
        month = MONTHS.index(parts[1].upper()) + 1
        return datetime(int(parts[2]), month, int(parts[0]), tzinfo=UTC)
    except ValueError as exc:
        raise ParseError("invalid date, expected d-Mon-yyyy") from exc


def parse_date_time(cur: Cursor) -> datetime:
    """``date-time`` (RFC 9051 §9): ``"dd-Mon-yyyy hh:mm:ss +zzzz"``."""
    raw = cur.quoted().decode("ascii", "replace")
    try:
        day, month, year = raw[:11].strip().split("-")
        hh, mm, ss = raw[12:20].split(":")
        zone = raw[21:26]
        if len(raw) != 26 or zone[0] not in "+-" or not zone[1:].isdigit():
            raise ValueError(raw)
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        tz = timezone(-offset if zone[0] == "-" else offset)
        month_n = MONTHS.index(month.upper()) + 1
        return datetime(int(year), month_n, int(day), int(hh), int(mm), int(ss), tzinfo=tz)
    except (ValueError, IndexError) as exc:
        raise ParseError('invalid date-time, expected "dd-Mon-yyyy hh:mm:ss +zzzz"') from exc


_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SIMPLE_ATTS = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
    }
)


def _section(cur: Cursor, binary: bool) -> tuple[str, tuple[str, ...]]:
    cur.expect(b"[")
    parts: list[str] = []
    fields: tuple[str, ...] = ()
    while (c := cur.peek()) is not None and 0x30 <= c <= 0x39:
        parts.append(str(cur.nz_number()))
        if not cur.take(b"."):
            break
    text = ""
    if not binary and cur.peek() not in (0x5D, None):
        if parts and cur.text[cur.pos - 1 : cur.pos] != b".":
            raise ParseError("invalid section")
        word = bytearray()
        while (c := cur.peek()) is not None and (c in b".-" or chr(c).isalnum()):
            word.append(c)
            cur.pos += 1
        text = word.decode().upper()
        allowed = {"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"}
        if parts:
            allowed.add("MIME")
        if text not in allowed:
            raise ParseError(f"invalid section text {text!r}")
        if text.startswith("HEADER.FIELDS"):
            cur.sp()
            cur.expect(b"(")
            names: list[str] = []
            while True:
                names.append(cur.astring().decode("utf-8", "replace"))
                if cur.take(b")"):
                    break
                cur.sp()
            fields = tuple(names)
    cur.expect(b"]")
    spec = ".".join(parts)
    if text:
        spec = f"{spec}.{text}" if spec else text
    return spec, fields


def _fetch_att(cur: Cursor) -> list[FetchAtt]:
    word = bytearray()
    while (c := cur.peek()) is not None and (c in b".-" or chr(c).isalnum()):
        word.append(c)
        cur.pos += 1
    name = word.decode().upper()
    if not name:
        raise ParseError(f"expected a fetch attribute before {cur._context()}")
    if name in _MACROS:
        return [FetchAtt(n, label=n) for n in _MACROS[name]]
    if name in ("BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"):
        if cur.peek() != 0x5B:
            if name == "BODY":
                return [FetchAtt("BODY", label="BODY")]
            raise ParseError(f"{name} needs a section")
        # RFC 3516 allows only part numbers after BINARY; a section text (HEADER, TEXT,
        # MIME, HEADER.FIELDS) is accepted too, as mature servers do, and served undecoded
        spec, fields = _section(cur, False)
        partial: tuple[int, int] | None = None
        if cur.take(b"<"):
            if name == "BINARY.SIZE":
                raise ParseError("no partial with BINARY.SIZE")
            start = cur.number()
            cur.expect(b".")
            length = cur.nz_number()
            cur.expect(b">")
            partial = (start, length)
        base = name.replace(".PEEK", "")
        label_sec = spec
        if fields:
            label_sec += " (" + " ".join(fields) + ")"
        return [FetchAtt(name, spec, fields, partial, f"{base}[{label_sec}]")]
    if name in _SIMPLE_ATTS:
        return [FetchAtt(name, label=name)]
    raise ParseError(f"unknown fetch attribute {name!r}")


def _fetch(cur: Cursor, uid: bool) -> FetchArgs:
    cur.sp()
    seqset = parse_seqset(cur)
    cur.sp()
    atts: list[FetchAtt] = []
    if cur.take(b"("):
        while True:
            atts.extend(_fetch_att(cur))
            if cur.take(b")"):
                break
            cur.sp()
    else:
        atts.extend(_fetch_att(cur))
    changedsince: int | None = None
    vanished = False
    if cur.maybe_sp():
        cur.expect(b"(")
        while True:
            mod = cur.atom().upper()
            if mod == "CHANGEDSINCE":
                cur.sp()
                changedsince = cur.number()
            elif mod == "VANISHED" and uid:
                vanished = True
            else:
                raise ParseError(f"unknown fetch modifier {mod!r}")
            if cur.take(b")"):
                break
            cur.sp()
        if vanished and changedsince is None:
            raise ParseError("VANISHED needs CHANGEDSINCE")
    if uid and not any(a.name == "UID" for a in atts):
        atts.insert(0, FetchAtt("UID", label="UID"))
    return FetchArgs(seqset, tuple(atts), changedsince, vanished)


def _store(cur: Cursor) -> StoreArgs:
    cur.sp()
    seqset = parse_seqset(cur)
    cur.sp()
    unchangedsince: int | None = None
    if cur.take(b"("):
        cur.expect(b"UNCHANGEDSINCE")
        cur.sp()
        unchangedsince = cur.number()
        cur.expect(b")")
        cur.sp()
    mode = ""
    if cur.peek() in (0x2B, 0x2D):
        mode = chr(cur.text[cur.pos])
        cur.pos += 1
    item = cur.atom().upper()
    if item not in ("FLAGS", "FLAGS.SILENT"):
        raise ParseError("expected FLAGS, +FLAGS or -FLAGS")
    cur.sp()
    if cur.peek() == 0x28:
        flags = cur.flag_list()
    else:
        flags = [cur.flag()]
        while cur.maybe_sp():
            flags.append(cur.flag())
    return StoreArgs(seqset, mode, item.endswith(".SILENT"), tuple(flags), unchangedsince)


def _list(cur: Cursor) -> ListArgs:
    cur.sp()
    select: set[str] = set()
    extended = False
    if cur.take(b"("):
        extended = True
        if not cur.take(b")"):
            while True:
                select.add(cur.atom().upper())
                if cur.take(b")"):
                    break
                cur.sp()
        cur.sp()
    ref = cur.astring() if cur.peek() != 0x22 else cur.quoted()
    cur.sp()
    patterns: list[bytes] = []
    if cur.take(b"("):
        extended = True
        while True:
            patterns.append(cur.list_mailbox())
            if cur.take(b")"):
                break
            cur.sp()
    else:
        patterns.append(cur.list_mailbox())
    ret: set[str] = set()
    status: tuple[str, ...] = ()
    if cur.maybe_sp():
        cur.expect(b"RETURN")
        extended = True
        cur.sp()
        cur.expect(b"(")
        if not cur.take(b")"):
            while True:
                opt = cur.atom().upper()
                ret.add(opt)
                if opt == "STATUS":
                    cur.sp()
                    status = _status_items(cur)
                if cur.take(b")"):
                    break
                cur.sp()
    # RFC 5258 §3: an unknown option is BAD, and RECURSIVEMATCH needs a base option
    unknown = (select - _LIST_SELECT) | (ret - _LIST_RETURN)
    if unknown:
        raise ParseError(f"unknown LIST option {sorted(unknown)[0]}")
    if "RECURSIVEMATCH" in select and not select - {"RECURSIVEMATCH", "REMOTE"}:
        raise ParseError("RECURSIVEMATCH needs another selection option")
    return ListArgs(
        ref, tuple(patterns), frozenset(select), frozenset(ret), status, False, extended
    )


_LIST_SELECT = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_LIST_RETURN = frozenset({"SUBSCRIBED", "CHILDREN", "STATUS", "SPECIAL-USE"})


_STATUS_ITEMS = frozenset(
    {
        "MESSAGES",
        "RECENT",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",
        "SIZE",
        "HIGHESTMODSEQ",
        "APPENDLIMIT",
    }
)


def _status_items(cur: Cursor) -> tuple[str, ...]:
    cur.expect(b"(")
    items: list[str] = []
    while True:
        item = cur.atom().upper()
        if item not in _STATUS_ITEMS:
            raise ParseError(f"unknown status item {item!r}")
        items.append(item)
        if cur.take(b")"):
            break
        cur.sp()
    return tuple(items)


def _append(cur: Cursor) -> AppendArgs:
    cur.sp()
    mailbox = cur.astring()
    messages: list[AppendMessage] = []
    while cur.maybe_sp():
        flags: list[str] = []
        date: datetime | None = None
        if cur.peek() == 0x28:
            flags = cur.flag_list()
            cur.sp()
        if cur.peek() == 0x22:
            date = parse_date_time(cur)
            cur.sp()
        if not cur.is_literal_next():
            raise ParseError("expected a message literal")
        lit = cur.literal(allow_binary=True)
        messages.append(AppendMessage(tuple(flags), date, lit))
    if not messages:
        raise ParseError("APPEND needs a message literal")
    return AppendArgs(mailbox, tuple(messages))


def _select(cur: Cursor) -> SelectArgs:
    cur.sp()
    mailbox = cur.astring()
    condstore = False
    qresync: tuple[int, int, SeqSet | None] | None = None
    if cur.maybe_sp():
        cur.expect(b"(")
        while True:
            opt = cur.atom().upper()
            if opt == "CONDSTORE":
                condstore = True
            elif opt == "QRESYNC":
                cur.sp()
                cur.expect(b"(")
                uidvalidity = cur.nz_number()
                cur.sp()
                modseq = cur.number()
                known: SeqSet | None = None
                if cur.maybe_sp():
                    if cur.peek() != 0x28:
                        known = parse_seqset(cur, allow_saved=False)
                        cur.maybe_sp()
                    if cur.take(b"("):  # seq-match-data: ignored (we send all VANISHED)
                        parse_seqset(cur, allow_saved=False)
                        cur.sp()
                        parse_seqset(cur, allow_saved=False)
                        cur.expect(b")")
                cur.expect(b")")
                qresync = (uidvalidity, modseq, known)
            else:
                raise ParseError(f"unknown select parameter {opt!r}")
            if cur.take(b")"):
                break
            cur.sp()
    return SelectArgs(mailbox, condstore, qresync)


SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)


def _sort(cur: Cursor) -> SortArgs:
    """``SORT [RETURN (...)] (criteria) charset search-key...`` (RFC 5256 §3, RFC 5267 §3.2)."""
    cur.sp()
    return_opts = _return_opts(cur, ("MIN", "MAX", "ALL", "COUNT"))
    cur.expect(b"(")
    criteria: list[tuple[str, bool]] = []
    reverse = False
    while True:
        word = cur.atom().upper()
        if word == "REVERSE":
            reverse = True
        elif word in SORT_KEYS:
            criteria.append((word, reverse))
            reverse = False
        else:
            raise ParseError(f"unknown sort key {word!r}")
        if cur.take(b")"):
            break
        cur.sp()
    if reverse:
        raise ParseError("REVERSE needs a sort key after it")
    cur.sp()
    charset = cur.astring().decode("ascii", "replace").upper()
    cur.sp()
    key = parse_search_program(cur, charset)
    return SortArgs(tuple(criteria), SearchArgs(key, charset, return_opts))


def _thread(cur: Cursor) -> ThreadArgs:
    """``THREAD algorithm charset search-key...`` (RFC 5256 §3)."""
    cur.sp()
    algorithm = cur.atom().upper()
    if algorithm not in ("ORDEREDSUBJECT", "REFERENCES"):
        raise ParseError(f"unknown threading algorithm {algorithm!r}")
    cur.sp()
    charset = cur.astring().decode("ascii", "replace").upper()
    cur.sp()
    key = parse_search_program(cur, charset)
    return ThreadArgs(algorithm, SearchArgs(key, charset))


def _return_opts(cur: Cursor, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    if not cur.take(b"RETURN "):
        return None
    cur.expect(b"(")
    opts: list[str] = []
    if not cur.take(b")"):
        while True:
            opts.append(cur.atom().upper())
            if cur.take(b")"):
                break
            cur.sp()
    bad = [o for o in opts if o not in allowed]
    if bad:
        raise ParseError(f"unknown search return option {bad[0]!r}")
    cur.sp()
    return tuple(opts)


def _search(cur: Cursor) -> SearchArgs:
    cur.sp()
    return_opts = _return_opts(cur, ("MIN", "MAX", "ALL", "COUNT", "SAVE"))
    charset: str | None = None
    if cur.take(b"CHARSET "):
        charset = cur.astring().decode("ascii", "replace").upper()
        cur.sp()
    key = parse_search_program(cur, charset)
    return SearchArgs(key, charset, return_opts)


def _copy(cur: Cursor) -> CopyArgs:
    cur.sp()
    seqset = parse_seqset(cur)
    cur.sp()
    return CopyArgs(seqset, cur.astring())


def _id(cur: Cursor) -> dict[str, str | None]:
    cur.sp()
    if cur.take(b"NIL"):
        return {}
    cur.expect(b"(")
    out: dict[str, str | None] = {}
    if cur.take(b")"):
        return out
    while True:
        key = cur.string().decode("utf-8", "replace")
        cur.sp()
        value = cur.nstring()
        if len(out) < 30:
            out[key[:30]] = None if value is None else value.decode("utf-8", "replace")[:1024]
        if cur.take(b")"):
            return out
        cur.sp()


_NO_ARGS = frozenset(
    {
        "CAPABILITY",
        "NOOP",
        "LOGOUT",
        "STARTTLS",
        "CHECK",
        "CLOSE",
        "UNSELECT",
        "IDLE",
        "NAMESPACE",
    }
)
_ONE_MAILBOX = frozenset(
    {
        "DELETE",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "GETQUOTAROOT",
        "GETACL",
        "MYRIGHTS",
    }
)


def parse_command(texts: list[bytes], literals: list[Literal] | None = None) -> Command:
    """Parses one command (RFC 9051 §9 ``command``). Raises ParseError (with ``tag`` set
    when it could be read)."""
    cur = Cursor(texts, literals or [])
    try:
        tag = cur.tag()
    except ParseError:
        raise ParseError("missing or invalid tag") from None
    try:
        cur.sp()
        cmd = _parse_body(cur, tag)
        cur.expect_end()
        return cmd
    except ParseError as exc:
        raise type(exc)(exc.reason, tag) from None


def _parse_body(cur: Cursor, tag: str) -> Command:
    name = cur.atom().upper()
    if name in _NO_ARGS:
        return Command(tag, name)
    if name == "UID":
        cur.sp()
        sub = cur.atom().upper()
        if sub == "FETCH":
            return Command(tag, sub, True, _fetch(cur, True))
        if sub == "STORE":
            return Command(tag, sub, True, _store(cur))
        if sub in ("COPY", "MOVE"):
            return Command(tag, sub, True, _copy(cur))
        if sub == "SEARCH":
            return Command(tag, sub, True, _search(cur))
        if sub == "SORT":
            return Command(tag, sub, True, _sort(cur))
        if sub == "THREAD":
            return Command(tag, sub, True, _thread(cur))
        if sub == "EXPUNGE":
            cur.sp()
            return Command(tag, sub, True, parse_seqset(cur))
        raise ParseError(f"unknown UID command {sub!r}")
    if name == "LOGIN":
        cur.sp()
        user = cur.astring()
        cur.sp()
        return Command(tag, name, args=LoginArgs(user, cur.astring()))
    if name == "AUTHENTICATE":
        cur.sp()
        mech = cur.atom().upper()
        initial: bytes | None = None
        if cur.maybe_sp():
            initial = b"=" if cur.take(b"=") else _base64_token(cur)
        return Command(tag, name, args=AuthArgs(mech, initial))
    if name == "ENABLE":
        caps: list[str] = []
        while cur.maybe_sp():
            caps.append(cur.atom().upper())
        if not caps:
            raise ParseError("ENABLE needs at least one capability")
        return Command(tag, name, atoms=tuple(caps))
    if name in ("SELECT", "EXAMINE"):
        return Command(tag, name, args=_select(cur))
    if name == "CREATE":
        cur.sp()
        mailbox = cur.astring()
        uses: list[str] = []
        if cur.maybe_sp():
            cur.expect(b"(")
            cur.expect(b"USE")
            cur.sp()
            uses = cur.flag_list()
            cur.expect(b")")
        return Command(tag, name, args=MailboxArgs(mailbox, tuple(uses)))
    if name in _ONE_MAILBOX:
        cur.sp()
        return Command(tag, name, args=MailboxArgs(cur.astring()))
    if name == "GETQUOTA":
        cur.sp()
        return Command(tag, name, args=MailboxArgs(cur.astring()))
    if name == "RENAME":
        cur.sp()
        old = cur.astring()
        cur.sp()
        return Command(tag, name, args=RenameArgs(old, cur.astring()))
    if name == "LIST":
        return Command(tag, name, args=_list(cur))
    if name == "LSUB":
        cur.sp()
        ref = cur.astring()
        cur.sp()
        return Command(tag, name, args=ListArgs(ref, (cur.list_mailbox(),), lsub=True))
    if name == "STATUS":
        cur.sp()
        mailbox = cur.astring()
        cur.sp()
        return Command(tag, name, args=StatusArgs(mailbox, _status_items(cur)))
    if name == "APPEND":
        return Command(tag, name, args=_append(cur))
    if name == "SEARCH":
        return Command(tag, name, args=_search(cur))
    if name == "SORT":
        return Command(tag, name, args=_sort(cur))
    if name == "THREAD":
        return Command(tag, name, args=_thread(cur))
    if name == "FETCH":
        return Command(tag, name, args=_fetch(cur, False))
    if name == "STORE":
        return Command(tag, name, args=_store(cur))
    if name in ("COPY", "MOVE"):
        return Command(tag, name, args=_copy(cur))
    if name == "EXPUNGE":
        return Command(tag, name)
    if name == "ID":
        return Command(tag, name, args=_id(cur))
    if name in ("SETACL", "DELETEACL", "LISTRIGHTS"):
        cur.sp()
        mailbox = cur.astring()
        cur.sp()
        ident = cur.astring()
        rights = b""
        if name == "SETACL":
            cur.sp()
            rights = cur.astring()
        return Command(tag, name, args=AclArgs(mailbox, ident, rights))
    if name == "SETQUOTA":
        cur.sp()
        root = cur.astring()
        cur.sp()
        cur.expect(b"(")
        while not cur.take(b")"):
            cur.pos += 1
            if cur.peek() is None:
                raise ParseError("unterminated quota list")
        return Command(tag, name, args=MailboxArgs(root))
    raise ParseError(f"unknown command {name!r}")


def _base64_token(cur: Cursor) -> bytes:
    start = cur.pos
    text = cur.text
    while cur.pos < len(text) and (chr(text[cur.pos]).isalnum() or text[cur.pos] in b"+/="):
        cur.pos += 1
    if start == cur.pos:
        raise ParseError("invalid SASL initial response")
    return text[start : cur.pos]
