"""Rendering message data for FETCH (RFC 9051 §7.5.2): strings, ENVELOPE, BODY[STRUCTURE],
sections with partial ranges, BINARY. Pure functions over the message bytes and its
:class:`~caducee.imap.mime.Part` tree.
"""

from __future__ import annotations

import base64
import binascii
import quopri

from caducee.imap.mime import Part, header_fields

__all__ = [
    "SectionError",
    "astring",
    "body_structure",
    "decode_transfer",
    "envelope",
    "nstring",
    "parse_addresses",
    "section_bytes",
    "string",
]


class SectionError(ValueError):
    """The section does not exist in this message (empty result) or cannot be decoded."""


def string(value: bytes | str, *, utf8: bool = True) -> bytes:
    """An IMAP ``string``: quoted when safe, else a literal (RFC 9051 §4.3)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if (
        len(data) < 200
        and b"\r" not in data
        and b"\n" not in data
        and b"\x00" not in data
        and (utf8 or max(data, default=0) < 0x80)
    ):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def nstring(value: bytes | str | None, *, utf8: bool = True) -> bytes:
    return b"NIL" if value is None else string(value, utf8=utf8)


def astring(value: str) -> bytes:
    data = value.encode("utf-8")
    if data and all(c > 0x20 and c < 0x7F and c not in b'(){ %*"\\' for c in data):
        return data
    return string(data)


# -- addresses (RFC 5322 §3.4) ---------------------------------------------------------
def _tokens(raw: bytes) -> list[tuple[str, bytes]]:
    """Tokenises an address header: ('q', quoted), ('a', atom run), ('<'|'>'|','|':'|';'|'@')."""
    out: list[tuple[str, bytes]] = []
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c in b" \t\r\n":
            i += 1
        elif c == 0x28:  # comment: kept as ('c', text), a display name when there is none
            depth = 0
            start = i
            while i < n:
                if raw[i] == 0x5C:
                    i += 1
                elif raw[i] == 0x28:
                    depth += 1
                elif raw[i] == 0x29:
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            out.append(("c", raw[start + 1 : i].strip()))
            i += 1
        elif c == 0x22:
            j = i + 1
            buf = bytearray()
            while j < n and raw[j] != 0x22:
                if raw[j] == 0x5C and j + 1 < n:
                    j += 1
                buf.append(raw[j])
                j += 1
            out.append(("q", bytes(buf)))
            i = j + 1
        elif c in b"<>,:;@":
            out.append((chr(c), bytes([c])))
            i += 1
        else:
            j = i
            while j < n and raw[j] not in b' \t\r\n()"<>,:;@':
                j += 1
            out.append(("a", raw[i:j]))
            i = j
    return out


Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]


def _addr_from(all_tokens: list[tuple[str, bytes]]) -> Address | None:
    comments = [v for k, v in all_tokens if k == "c" and v]
    tokens = [t for t in all_tokens if t[0] != "c"]
    if not tokens:
        return None
    route = None
    if any(k == "<" for k, _ in tokens):
        lt = next(i for i, (k, _) in enumerate(tokens) if k == "<")
        name_toks = tokens[:lt]
        inner = [t for t in tokens[lt + 1 :] if t[0] != ">"]
        if inner and inner[0][0] == "@":  # obsolete route (RFC 5322 §4.4): the ENVELOPE adl
            colon = next((i for i, (k, _) in enumerate(inner) if k == ":"), -1)
            route = b"".join(v for _, v in inner[:colon]) if colon > 0 else None
            inner = inner[colon + 1 :]
        name = b" ".join(v for _, v in name_toks) or None
    else:
        # "user@domain (Real Name)": the comment is the only name there is
        name = comments[-1] if comments else None
        inner = tokens
    at = max((i for i, (k, _) in enumerate(inner) if k == "@"), default=-1)
    if at >= 0:
        local = b"".join(v for _, v in inner[:at])
        host = b"".join(v for _, v in inner[at + 1 :])
    else:
        local = b"".join(v for _, v in inner)
        host = b""
    if not local and name is None:
        return None
    return (name, route, local, host or None)


def parse_addresses(raw: bytes) -> list[Address]:
    """An address list with groups (RFC 9051 §7.5.2 group syntax in the ENVELOPE)."""
    tokens = _tokens(raw)
    out: list[Address] = []
    cur: list[tuple[str, bytes]] = []
    in_group = False
    in_angle = False
    for kind, val in tokens:
        if kind == "<":
            in_angle = True
        elif kind == ">":
            in_angle = False
        if kind == ":" and not in_group and not in_angle:
            name = b" ".join(v for k, v in cur if k != "c")
            out.append((None, None, name, None))
            in_group = True
            cur = []
        elif kind == ";" and in_group and not in_angle:
            addr = _addr_from(cur)
            if addr:
                out.append(addr)
            out.append((None, None, None, None))
            in_group = False
            cur = []
        elif kind == "," and not in_angle:
            addr = _addr_from(cur)
            if addr:
                out.append(addr)
            cur = []
        else:
            cur.append((kind, val))
        if len(out) > 1000:
            break
    addr = _addr_from(cur)
    if addr:
        out.append(addr)
    if in_group:
        out.append((None, None, None, None))
    return out


def _addr_list(raw: bytes | None, utf8: bool) -> bytes:
    if raw is None:
        return b"NIL"
    addrs = parse_addresses(raw)
    if not addrs:
        return b"NIL"
    items = [b"(" + b" ".join(nstring(x, utf8=utf8) for x in a) + b")" for a in addrs]
    return b"(" + b"".join(items) + b")"


def envelope(part: Part, *, utf8: bool = True) -> bytes:
    """``ENVELOPE`` (RFC 9051 §7.5.2); Sender and Reply-To default to From."""
    h = part.header
    frm = h("from")
    sender = h("sender") or frm
    reply_to = h("reply-to") or frm
    fields = [
        nstring(h("date"), utf8=utf8),
        nstring(h("subject"), utf8=utf8),
        _addr_list(frm, utf8),
        _addr_list(sender, utf8),
        _addr_list(reply_to, utf8),
        _addr_list(h("to"), utf8),
        _addr_list(h("cc"), utf8),
        _addr_list(h("bcc"), utf8),
        nstring(h("in-reply-to"), utf8=utf8),
        nstring(h("message-id"), utf8=utf8),
    ]
    return b"(" + b" ".join(fields) + b")"


# -- BODY / BODYSTRUCTURE --------------------------------------------------------------
def _params(params: list[tuple[str, str]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(string(k) + b" " + string(v) for k, v in params) + b")"


def _disposition(part: Part) -> bytes:
    raw = part.header("content-disposition")
    if raw is None:
        return b"NIL"
    from caducee.imap.mime import parse_params

    value, params = parse_params(raw)
    if not value:
        return b"NIL"
    return b"(" + string(value) + b" " + _params(params) + b")"


def _lines(data: bytes, start: int, end: int) -> int:
    count = data.count(b"\n", start, end)
    if end > start and data[end - 1 : end] != b"\n":
        count += 1
    return count


def body_structure(data: bytes, part: Part, *, extended: bool, utf8: bool = True) -> bytes:
    """``BODYSTRUCTURE`` (extended) or ``BODY`` (RFC 9051 §7.5.2, §9 ``body``)."""
    if part.is_multipart:
        inner = b"".join(
            body_structure(data, c, extended=extended, utf8=utf8) for c in part.children
        )
        out = inner + b" " + string(part.subtype.upper())
        if extended:
            params = [(k, v) for k, v in part.params]
            out += b" " + _params(params) + b" " + _disposition(part)
            out += b" " + _language(part) + b" " + nstring(_location(part))
        return b"(" + out + b")"
    size = part.end - part.body_start
    fields = [
        string(part.maintype.upper()),
        string(part.subtype.upper()),
        _params(part.params if part.header("content-type") else _default_params(part)),
        nstring(_strip(part.header("content-id")), utf8=utf8),
        nstring(_strip(part.header("content-description")), utf8=utf8),
        string(part.encoding),
        b"%d" % size,
    ]
    if part.message is not None:
        fields.append(envelope(part.message, utf8=utf8))
        fields.append(body_structure(data, part.message, extended=extended, utf8=utf8))
        fields.append(b"%d" % _lines(data, part.body_start, part.end))
    elif part.maintype == "text":
        fields.append(b"%d" % _lines(data, part.body_start, part.end))
    if extended:
        fields.append(nstring(_strip(part.header("content-md5"))))
        fields.append(_disposition(part))
        fields.append(_language(part))
        fields.append(nstring(_location(part)))
    return b"(" + b" ".join(fields) + b")"


def _default_params(part: Part) -> list[tuple[str, str]]:
    if part.maintype == "text":
        return [("CHARSET", "US-ASCII")]
    return part.params


def _strip(raw: bytes | None) -> bytes | None:
    return None if raw is None else raw.strip()


def _language(part: Part) -> bytes:
    raw = part.header("content-language")
    if raw is None:
        return b"NIL"
    langs = [x.strip() for x in raw.replace(b" ", b"").split(b",") if x.strip()]
    if not langs:
        return b"NIL"
    if len(langs) == 1:
        return string(langs[0])
    return b"(" + b" ".join(string(x) for x in langs) + b")"


def _location(part: Part) -> bytes | None:
    raw = part.header("content-location")
    return None if raw is None else raw.strip()


# -- sections (RFC 9051 §6.4.5) ------------------------------------------------------------
def resolve(root: Part, path: list[int]) -> Part:
    """The part a section path names; raises SectionError when there is none."""
    cur = root
    message_level = True  # cur is a message whose body-parts are numbered
    for n in path:
        if not message_level and cur.message is not None:
            cur = cur.message
            message_level = True
        if cur.is_multipart:
            if n > len(cur.children):
                raise SectionError("no such part")
            cur = cur.children[n - 1]
        elif message_level and n == 1:
            pass  # a non-multipart message's body is part 1
        else:
            raise SectionError("no such part")
        message_level = False
    return cur


def _header_subset(data: bytes, part: Part, names: tuple[str, ...], exclude: bool) -> bytes:
    wanted = {n.lower() for n in names}
    out = bytearray()
    for name, _value, start, end in header_fields(data, part.start, part.body_start):
        if (name in wanted) != exclude:
            chunk = data[start:end]
            out += chunk if chunk.endswith(b"\n") else chunk + b"\r\n"
    out += b"\r\n"
    return bytes(out)


def section_bytes(data: bytes, root: Part, section: str, fields: tuple[str, ...] = ()) -> bytes:
    """The octets of ``BODY[section]`` (without partial)."""
    if section == "":
        return data
    nums: list[int] = []
    parts = section.split(".")
    i = 0
    while i < len(parts) and parts[i].isdigit():
        nums.append(int(parts[i]))
        i += 1
    text = ".".join(parts[i:])
    target = resolve(root, nums) if nums else root
    if text == "":
        return data[target.body_start : target.end]
    if text == "MIME":
        if not nums:
            raise SectionError("MIME needs a part number")
        return data[target.start : target.body_start]
    if nums:
        if target.message is None:
            raise SectionError("not a message/rfc822 part")
        target = target.message
    if text == "HEADER":
        return data[target.start : target.body_start]
    if text == "TEXT":
        return data[target.body_start : target.end]
    if text == "HEADER.FIELDS":
        return _header_subset(data, target, fields, False)
    if text == "HEADER.FIELDS.NOT":
        return _header_subset(data, target, fields, True)
    raise SectionError("invalid section")


class UnknownCte(SectionError):
    """BINARY of a part whose Content-Transfer-Encoding we cannot decode (RFC 3516 §4.3)."""


def decode_transfer(body: bytes, encoding: str) -> bytes:
    """Undoes the Content-Transfer-Encoding (RFC 2045 §6); tolerant of bad base64."""
    if encoding in ("7BIT", "8BIT", "BINARY", ""):
        return body
    if encoding == "BASE64":
        cleaned = bytes(c for c in body if chr(c).isalnum() or c in b"+/")
        # the "=" padding was dropped with the rest: restore it, so that the last 1 or 2
        # octets of the content are kept (a lone trailing sextet carries no octet)
        rem = len(cleaned) % 4
        cleaned = cleaned[:-1] if rem == 1 else cleaned + b"=" * ((4 - rem) % 4)
        try:
            return base64.b64decode(cleaned)
        except (binascii.Error, ValueError):
            return b""
    if encoding == "QUOTED-PRINTABLE":
        return quopri.decodestring(body)
    raise UnknownCte(f"unknown transfer encoding {encoding}")


def binary_bytes(data: bytes, root: Part, section: str) -> bytes:
    """``BINARY[section]`` (RFC 3516): the decoded content of a leaf part."""
    if not section:  # BINARY[]: the whole message, as BODY[] (nothing to decode at the top)
        return data[root.start : root.end]
    target = resolve(root, [int(x) for x in section.split(".")])
    if target.is_multipart:
        return data[target.body_start : target.end]
    return decode_transfer(data[target.body_start : target.end], target.encoding)
