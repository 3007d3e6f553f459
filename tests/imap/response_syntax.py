"""A strict reader of IMAP response data (RFC 9051 §9) used by the tests to prove that what
the server emits is syntactically valid: strings, literals, NIL, numbers, lists."""

from __future__ import annotations

Item = bytes | int | None | str | list["Item"]  # bytes: string; str: atom


class SyntaxFault(ValueError):
    pass


def read(data: bytes, pos: int = 0) -> tuple[Item, int]:
    if pos >= len(data):
        raise SyntaxFault("unexpected end")
    c = data[pos]
    if c == 0x28:
        items: list[Item] = []
        pos += 1
        while True:
            if pos >= len(data):
                raise SyntaxFault("unterminated list")
            if data[pos] == 0x29:
                return items, pos + 1
            if items and data[pos] == 0x20:
                pos += 1
            item, pos = read(data, pos)
            items.append(item)
            if pos < len(data) and data[pos] not in (0x20, 0x29, 0x28):
                raise SyntaxFault(f"garbage after item at {pos}: {data[pos : pos + 20]!r}")
    if c == 0x22:
        out = bytearray()
        pos += 1
        while pos < len(data):
            ch = data[pos]
            if ch == 0x5C:
                if data[pos + 1] not in (0x22, 0x5C):
                    raise SyntaxFault("bad escape")
                out.append(data[pos + 1])
                pos += 2
                continue
            if ch == 0x22:
                return bytes(out), pos + 1
            if ch in (0x0D, 0x0A):
                raise SyntaxFault("CR/LF in quoted string")
            out.append(ch)
            pos += 1
        raise SyntaxFault("unterminated quoted")
    if c in (0x7B, 0x7E):
        start = pos + (1 if c == 0x7E else 0)
        end = data.index(b"}\r\n", start)
        n = int(data[start + 1 : end])
        body = data[end + 3 : end + 3 + n]
        if len(body) != n:
            raise SyntaxFault("short literal")
        return body, end + 3 + n
    end = pos
    while end < len(data) and data[end] not in b" ()\r\n":
        end += 1
    if end == pos:
        raise SyntaxFault(f"empty atom at {pos}")
    word = data[pos:end].decode("ascii")
    if word == "NIL":
        return None, end
    if word.isdigit():
        return int(word), end
    return word, end


def read_all(data: bytes) -> Item:
    item, pos = read(data)
    if pos != len(data):
        raise SyntaxFault(f"trailing data {data[pos : pos + 20]!r}")
    return item


def _nstring(x: Item) -> bool:
    return x is None or isinstance(x, bytes)


def _params(x: Item) -> bool:
    return x is None or (
        isinstance(x, list)
        and len(x) % 2 == 0
        and len(x) > 0
        and all(isinstance(i, bytes) for i in x)
    )


def check_address_list(x: Item) -> None:
    if x is None:
        return
    if not isinstance(x, list) or not x:
        raise SyntaxFault("address list")
    for a in x:
        if not isinstance(a, list) or len(a) != 4 or not all(_nstring(i) for i in a):
            raise SyntaxFault(f"address {a!r}")


def check_envelope(x: Item) -> None:
    if not isinstance(x, list) or len(x) != 10:
        raise SyntaxFault("envelope must have 10 fields")
    for i in (0, 1, 8, 9):
        if not _nstring(x[i]):
            raise SyntaxFault("envelope nstring")
    for i in range(2, 8):
        check_address_list(x[i])


def _ext(items: list[Item], extended: bool, multipart: bool) -> None:
    if not extended:
        if items:
            raise SyntaxFault("extension data in BODY")
        return
    if multipart:
        params, disp, lang, loc = items
        if not _params(params):
            raise SyntaxFault("mpart params")
    else:
        md5, disp, lang, loc = items
        if not _nstring(md5):
            raise SyntaxFault("md5")
    if disp is not None and not (
        isinstance(disp, list)
        and len(disp) == 2
        and isinstance(disp[0], bytes)
        and _params(disp[1])
    ):
        raise SyntaxFault(f"disposition {disp!r}")
    if not (_nstring(lang) or (isinstance(lang, list) and all(isinstance(i, bytes) for i in lang))):
        raise SyntaxFault("language")
    if not _nstring(loc):
        raise SyntaxFault("location")


def check_body(x: Item, *, extended: bool, depth: int = 0) -> int:
    """Validates a ``body``; returns the number of parts seen."""
    if not isinstance(x, list) or not x:
        raise SyntaxFault("body must be a non-empty list")
    if isinstance(x[0], list):
        n = 0
        i = 0
        while i < len(x) and isinstance(x[i], list):
            n += check_body(x[i], extended=extended, depth=depth + 1)
            i += 1
        if i >= len(x) or not isinstance(x[i], bytes):
            raise SyntaxFault("multipart subtype")
        _ext(x[i + 1 :], extended, True)
        return n
    if len(x) < 7:
        raise SyntaxFault("single part too short")
    t, sub, params, cid, desc, enc, size = x[:7]
    if not (isinstance(t, bytes) and isinstance(sub, bytes) and _params(params)):
        raise SyntaxFault(f"type/subtype/params {x[:3]!r}")
    if not (_nstring(cid) and _nstring(desc) and isinstance(enc, bytes) and isinstance(size, int)):
        raise SyntaxFault("fields")
    rest = x[7:]
    n = 1
    if (
        t.upper() == b"MESSAGE"
        and sub.upper() in (b"RFC822", b"GLOBAL")
        and rest
        and isinstance(rest[0], list)
    ):
        check_envelope(rest[0])
        n += check_body(rest[1], extended=extended, depth=depth + 1)
        if not isinstance(rest[2], int):
            raise SyntaxFault("message lines")
        rest = rest[3:]
    elif t.upper() == b"TEXT":
        if not rest or not isinstance(rest[0], int):
            raise SyntaxFault("text lines")
        rest = rest[1:]
    _ext(rest, extended, False)
    return n
