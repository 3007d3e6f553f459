"""A MIME structure walker over raw bytes (RFC 2045/2046, RFC 5322 §2.2).

Records byte offsets, so IMAP sections (RFC 9051 §6.4.5) are served byte-exact from the
stored message, never re-serialised. Tolerant by design: any input gives a structure (a
multipart without boundary is treated as text/plain, missing closing delimiters end at the
end of the body, nesting is capped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["MAX_DEPTH", "Part", "header_fields", "parse_message", "parse_params"]

MAX_DEPTH = 40
MAX_PARTS = 5000
_LINE_END = re.compile(rb"\r?\n")


@dataclass(slots=True)
class Part:
    """A MIME entity: ``[start, body_start)`` is its header block (incl. the blank line),
    ``[body_start, end)`` its body."""

    start: int
    body_start: int
    end: int
    headers: list[tuple[str, bytes]]  # (lower-case name, unfolded raw value)
    maintype: str = "text"
    subtype: str = "plain"
    params: list[tuple[str, str]] = field(default_factory=list)
    children: list[Part] = field(default_factory=list)  # multipart parts
    message: Part | None = None  # message/rfc822: the encapsulated message

    @property
    def is_multipart(self) -> bool:
        return self.maintype == "multipart"

    @property
    def is_message(self) -> bool:
        return self.message is not None

    def header(self, name: str) -> bytes | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def param(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.params:
            if key.lower() == name:
                return value
        return None

    @property
    def encoding(self) -> str:
        raw = self.header("content-transfer-encoding")
        if raw is None:
            return "7BIT"
        return raw.decode("ascii", "replace").strip().upper() or "7BIT"


def header_fields(data: bytes, start: int, end: int) -> list[tuple[str, bytes, int, int]]:
    """Header fields in ``data[start:end]``: (lower name, unfolded value, field start, field
    end incl. its line break). Lines that are not fields are skipped."""
    out: list[tuple[str, bytes, int, int]] = []
    pos = start
    cur_name: str | None = None
    cur_start = 0
    cur_val: list[bytes] = []
    while pos < end:
        nl = data.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        line = data[pos:line_end].rstrip(b"\r\n")
        if line[:1] in (b" ", b"\t") and cur_name is not None:
            cur_val.append(line)
        else:
            if cur_name is not None:
                out.append((cur_name, b"".join(cur_val).strip(), cur_start, pos))
                cur_name = None
            colon = line.find(b":")
            name = line[:colon].rstrip() if colon > 0 else b""
            if name and all(33 <= c <= 126 for c in name):
                cur_name = name.decode("ascii").lower()
                cur_start = pos
                cur_val = [line[colon + 1 :]]
        pos = line_end
    if cur_name is not None:
        out.append((cur_name, b"".join(cur_val).strip(), cur_start, end))
    return out


def _header_end(data: bytes, start: int, end: int) -> int:
    """Offset of the body: after the first empty line, or ``end`` when there is none."""
    if data.startswith(b"\r\n", start) and start + 2 <= end:
        return start + 2
    if data.startswith(b"\n", start) and start + 1 <= end:
        return start + 1
    best = -1
    for sep in (b"\r\n\r\n", b"\n\n", b"\n\r\n"):
        idx = data.find(sep, start, end)
        if idx >= 0 and (best < 0 or idx + len(sep) < best):
            best = idx + len(sep)
    return end if best < 0 else best


_TOKEN = re.compile(rb'\s*([^\s;=()<>@,:\\"/\[\]?]+)')


def _skip_comments(raw: bytes) -> bytes:
    if b"(" not in raw:
        return raw
    out = bytearray()
    depth = 0
    in_quote = False
    i = 0
    while i < len(raw):
        c = raw[i]
        if in_quote:
            out.append(c)
            if c == 0x5C and i + 1 < len(raw):
                out.append(raw[i + 1])
                i += 1
            elif c == 0x22:
                in_quote = False
        elif c == 0x22 and depth == 0:
            in_quote = True
            out.append(c)
        elif c == 0x28:
            depth += 1
        elif c == 0x29 and depth:
            depth -= 1
        elif depth == 0:
            out.append(c)
        i += 1
    return bytes(out)


def parse_params(raw: bytes) -> tuple[str, list[tuple[str, str]]]:
    """``value; name=value; name="quoted"`` -> (value, params). Raw RFC 2231 names kept."""
    raw = _skip_comments(raw)
    head, _, rest = raw.partition(b";")
    value = head.strip().decode("utf-8", "replace")
    params: list[tuple[str, str]] = []
    i = 0
    while i < len(rest) and len(params) < 100:
        m = _TOKEN.match(rest, i)
        if m is None:
            nxt = rest.find(b";", i + 1)
            if nxt < 0:
                break
            i = nxt + 1
            continue
        name = m.group(1).decode("utf-8", "replace")
        i = m.end()
        while i < len(rest) and rest[i] in b" \t":
            i += 1
        if i >= len(rest) or rest[i] != 0x3D:
            nxt = rest.find(b";", i)
            if nxt < 0:
                break
            i = nxt + 1
            continue
        i += 1
        while i < len(rest) and rest[i] in b" \t":
            i += 1
        if i < len(rest) and rest[i] == 0x22:
            val = bytearray()
            i += 1
            while i < len(rest) and rest[i] != 0x22:
                if rest[i] == 0x5C and i + 1 < len(rest):
                    i += 1
                val.append(rest[i])
                i += 1
            i += 1
            params.append((name, val.decode("utf-8", "replace")))
        else:
            j = i
            while j < len(rest) and rest[j] not in b"; \t":
                j += 1
            params.append((name, rest[i:j].decode("utf-8", "replace")))
            i = j
        nxt = rest.find(b";", i)
        if nxt < 0:
            break
        i = nxt + 1
    return value, params


def parse_message(data: bytes) -> Part:
    """The structure of a whole message."""
    counter = [0]
    return _entity(data, 0, len(data), "text/plain", 0, counter)


def _entity(
    data: bytes, start: int, end: int, default: str, depth: int, counter: list[int]
) -> Part:
    counter[0] += 1
    body_start = _header_end(data, start, end)
    fields = header_fields(data, start, body_start)
    part = Part(start, body_start, end, [(n, v) for n, v, _, _ in fields])
    ctype_raw = part.header("content-type")
    ctype = default
    if ctype_raw is not None:
        value, part.params = parse_params(ctype_raw)
        if "/" in value and all(value.partition("/")[::2]):
            ctype = value.lower()
        else:
            part.params = []
            ctype = "text/plain" if default == "text/plain" else default
    maintype, _, subtype = ctype.partition("/")
    part.maintype, part.subtype = maintype, subtype
    too_deep = depth >= MAX_DEPTH or counter[0] >= MAX_PARTS
    if maintype == "multipart":
        boundary = part.param("boundary")
        if not boundary or too_deep:
            part.maintype, part.subtype = "text", "plain"
            part.params = [("charset", "us-ascii")] if not boundary else []
            return part
        child_default = "message/rfc822" if subtype == "digest" else "text/plain"
        for cstart, cend in _split_multipart(data, body_start, end, boundary.encode("utf-8")):
            part.children.append(_entity(data, cstart, cend, child_default, depth + 1, counter))
            if counter[0] >= MAX_PARTS:
                break
        if not part.children:
            # RFC 9051 body-type-mpart needs one part: an empty text/plain stands in
            part.children.append(Part(end, end, end, []))
    elif (
        ctype in ("message/rfc822", "message/global")
        and not too_deep
        and part.encoding in ("7BIT", "8BIT", "BINARY")
    ):
        part.message = _entity(data, body_start, end, "text/plain", depth + 1, counter)
    return part


def _split_multipart(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """Body part spans between ``--boundary`` delimiter lines (RFC 2046 §5.1.1)."""
    delim = b"--" + boundary
    spans: list[tuple[int, int]] = []
    pos = start
    part_start = -1
    while pos <= end:
        idx = data.find(delim, pos, end)
        if idx < 0:
            break
        at_line_start = idx == start or data[idx - 1 : idx] == b"\n"
        if not at_line_start:
            pos = idx + 1
            continue
        after = idx + len(delim)
        closing = data.startswith(b"--", after)
        nl = data.find(b"\n", after, end)
        tail = data[after + (2 if closing else 0) : end if nl < 0 else nl].rstrip(b"\r")
        if tail.strip(b" \t"):
            pos = idx + 1  # a longer boundary sharing our prefix
            continue
        if part_start >= 0:
            # the line break before the delimiter belongs to the delimiter
            pend = idx
            if pend > part_start and data[pend - 1 : pend] == b"\n":
                pend -= 1
                if pend > part_start and data[pend - 1 : pend] == b"\r":
                    pend -= 1
            spans.append((part_start, max(pend, part_start)))
        if closing:
            return spans
        part_start = end if nl < 0 else nl + 1
        pos = part_start
    if part_start >= 0:
        spans.append((part_start, end))
    return spans
