"""Sans-IO SMTP protocol core: pure functions and small state machines over bytes.

Nothing here touches a socket, so every rule is testable byte for byte:

- command lines (RFC 5321 §4.1, §4.5.3.1 line limits), paths (§4.1.2), ESMTP parameters:
  SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), RET/ENVID/NOTIFY/ORCPT (RFC 3461,
  xtext §4), AUTH (RFC 4954 §5);
- replies with enhanced status codes (RFC 2034, RFC 3463);
- the DATA decoder (RFC 5321 §4.1.1.4, §4.5.2): only ``CRLF . CRLF`` ends a message; bare LF
  and bare CR never end or split one (SMTP smuggling) and make the message refused;
- a streaming header-block collector (RFC 5322 §2.2) and the ``Received:`` trace (§4.4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, getaddresses

from caducee.core.errors import InvalidInput

__all__ = [
    "MAX_AUTH_LINE",
    "MAX_COMMAND_LINE",
    "MAX_DATA_LINE",
    "DataDecoder",
    "DataOutcome",
    "HeaderCollector",
    "MailFrom",
    "RcptTo",
    "Reply",
    "SmtpSyntaxError",
    "format_received",
    "header_addresses",
    "parse_command",
    "parse_mail",
    "parse_rcpt",
    "xtext_decode",
    "xtext_encode",
]

# RFC 5321 §4.5.3.1.4: 512 octets, raised by extensions: SIZE (RFC 1870 §3: +26), DSN
# (RFC 3461 §5: MAIL +100, RCPT +500), AUTH= (RFC 4954 §5: +500). 1536 covers them all.
MAX_COMMAND_LINE = 1536
# RFC 4954 §4: a SASL response line may be 12288 octets long.
MAX_AUTH_LINE = 12288
# RFC 5321 §4.5.3.1.6 says 1000 octets per text line (SHOULD); real mail has longer lines.
# We accept up to this bound and refuse messages with longer lines (5.6.0).
MAX_DATA_LINE = 64 * 1024


class SmtpSyntaxError(InvalidInput):
    """A command or parameter is malformed; carries the reply to send (RFC 5321 §4.2)."""

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        self.code = code
        self.enhanced = enhanced
        self.text = text
        super().__init__(f"{code} {enhanced} {text}")

    @property
    def reply(self) -> Reply:
        return Reply(self.code, self.enhanced, self.text)


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply (RFC 5321 §4.2); ``enhanced`` is the RFC 3463 status or ""."""

    code: int
    enhanced: str
    text: str | tuple[str, ...]

    def to_bytes(self) -> bytes:
        lines = (self.text,) if isinstance(self.text, str) else self.text
        out = []
        prefix = f"{self.enhanced} " if self.enhanced else ""
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            # Replies are ours: never echo CR/LF from peer input into them.
            clean = line.replace("\r", " ").replace("\n", " ")
            out.append(f"{self.code}{sep}{prefix}{clean}\r\n")
        return "".join(out).encode("utf-8")


def parse_command(line: bytes) -> tuple[str, str]:
    """Splits a command line (without its CRLF) into (VERB, argument text).

    The verb is upper-cased ASCII; the argument is decoded as UTF-8 (RFC 6531 allows UTF-8 in
    paths). NUL or CR in a command line, or invalid UTF-8, is a syntax error.
    """
    if b"\x00" in line or b"\r" in line or b"\n" in line:
        raise SmtpSyntaxError(500, "5.5.2", "Syntax error: control character in command line")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SmtpSyntaxError(500, "5.5.2", "Syntax error: command line is not UTF-8") from exc
    verb, _, arg = text.partition(" ")
    if not verb.isascii() or not verb.isalpha():
        raise SmtpSyntaxError(500, "5.5.2", "Syntax error: command unrecognized")
    return verb.upper(), arg.strip(" ")


# --- paths (RFC 5321 §4.1.2, RFC 6531 §3.3) -----------------------------------------------

_ATOM_ASCII = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ATOM_UTF8 = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"'
_LABEL_ASCII = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_U = r"A-Za-z0-9\u0080-\U0010ffff"
_LABEL_UTF8 = rf"[{_U}](?:[{_U}-]*[{_U}])?"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"


def _mailbox_re(atom: str, label: str) -> re.Pattern[str]:
    local = rf"(?:{atom}(?:\.{atom})*|{_QUOTED})"
    domain = rf"(?:{label}(?:\.{label})*\.?|{_LITERAL})"
    return re.compile(rf"({local})@({domain})")


_MAILBOX_ASCII = _mailbox_re(_ATOM_ASCII, _LABEL_ASCII)
_MAILBOX_UTF8 = _mailbox_re(_ATOM_UTF8, _LABEL_UTF8)
_ADL = re.compile(r"@[^,:<>]+(?:,@[^,:<>]+)*:")


def _parse_path(arg: str, *, allow_null: bool, smtputf8: bool) -> tuple[str, str]:
    """``<path> params`` -> (mailbox or "" for ``<>``, params text)."""
    if not arg.startswith("<"):
        raise SmtpSyntaxError(501, "5.5.4", "Syntax error: path must be enclosed in <>")
    end = arg.find(">")
    if end < 0:
        raise SmtpSyntaxError(501, "5.5.4", "Syntax error: missing > in path")
    inner, rest = arg[1:end], arg[end + 1 :]
    if rest and not rest.startswith(" "):
        raise SmtpSyntaxError(501, "5.5.4", "Syntax error: garbage after path")
    if inner == "":
        if not allow_null:
            raise SmtpSyntaxError(501, "5.1.3", "Null path not allowed here")
        return "", rest.strip(" ")
    adl = _ADL.match(inner)  # RFC 5321 §4.1.2: source routes MUST be accepted, SHOULD be ignored
    if adl:
        inner = inner[adl.end() :]
    if len(inner.encode("utf-8")) > 254:
        raise SmtpSyntaxError(501, "5.1.3", "Path too long")
    if not inner.isascii() and not smtputf8:
        raise SmtpSyntaxError(553, "5.6.7", "Non-ASCII address needs SMTPUTF8 (RFC 6531 §3.7.4.1)")
    m = (_MAILBOX_UTF8 if smtputf8 else _MAILBOX_ASCII).fullmatch(inner)
    if m is None:
        raise SmtpSyntaxError(501, "5.1.3", "Bad address syntax")
    local, domain = m.group(1), m.group(2).rstrip(".").lower()
    if len(local.encode("utf-8")) > 64:
        raise SmtpSyntaxError(501, "5.1.3", "Local part too long")
    return f"{local}@{domain}", rest.strip(" ")


def _parse_params(text: str) -> dict[str, str | None]:
    """ESMTP ``keyword[=value]`` list (RFC 5321 §4.1.2 esmtp-param); keywords upper-cased."""
    params: dict[str, str | None] = {}
    for item in text.split(" "):
        if not item:
            continue
        key, eq, value = item.partition("=")
        key = key.upper()
        if not re.fullmatch(r"[A-Z0-9][A-Z0-9-]*", key):
            raise SmtpSyntaxError(501, "5.5.4", "Syntax error in parameters")
        if key in params:
            raise SmtpSyntaxError(501, "5.5.4", f"Duplicate parameter {key}")
        if eq and not value:
            raise SmtpSyntaxError(501, "5.5.4", f"Empty value for {key}")
        params[key] = value if eq else None
    return params


def xtext_decode(text: str) -> str:
    """RFC 3461 §4: ``+XX`` hex escapes; other characters are printable ASCII but + and =."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "+":
            hexpart = text[i + 1 : i + 3]
            if len(hexpart) != 2 or not re.fullmatch(r"[0-9A-F]{2}", hexpart):
                raise SmtpSyntaxError(501, "5.5.4", "Bad xtext encoding")
            out.append(int(hexpart, 16))
            i += 3
            continue
        if not ("!" <= c <= "~") or c == "=":
            raise SmtpSyntaxError(501, "5.5.4", "Bad xtext character")
        out.append(ord(c))
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SmtpSyntaxError(501, "5.5.4", "Bad xtext: not UTF-8") from exc


def xtext_encode(text: str) -> str:
    """Inverse of :func:`xtext_decode` (RFC 3461 §4)."""
    out = []
    for b in text.encode("utf-8"):
        if 0x21 <= b <= 0x7E and b not in (0x2B, 0x3D):
            out.append(chr(b))
        else:
            out.append(f"+{b:02X}")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class MailFrom:
    """A parsed ``MAIL FROM`` (RFC 5321 §4.1.1.2 with ESMTP parameters)."""

    address: str  # "" for the null reverse-path
    size: int | None = None
    body: str = "7BIT"  # "7BIT" | "8BITMIME"
    smtputf8: bool = False
    ret: str | None = None  # RFC 3461 §4.3
    envid: str | None = None  # decoded xtext, RFC 3461 §4.4


@dataclass(frozen=True, slots=True)
class RcptTo:
    """A parsed ``RCPT TO`` (RFC 5321 §4.1.1.3 with RFC 3461 §4.1-4.2 parameters)."""

    address: str
    notify: frozenset[str] = frozenset()
    orcpt: str | None = None  # "addr-type;decoded address", e.g. "rfc822;a@b"


def parse_mail(arg: str, *, max_size: int, smtputf8_offered: bool = True) -> MailFrom:
    """Parses the argument of MAIL (``FROM:<path> params``)."""
    if arg[:5].upper() != "FROM:":
        raise SmtpSyntaxError(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]")
    rest = arg[5:].lstrip(" ")
    # The path decides the charset: peek at the params for SMTPUTF8 first (RFC 6531 §3.4).
    wants_utf8 = smtputf8_offered and " SMTPUTF8" in rest.upper()
    address, ptext = _parse_path(rest, allow_null=True, smtputf8=wants_utf8)
    params = _parse_params(ptext)
    size: int | None = None
    body = "7BIT"
    smtputf8 = False
    ret: str | None = None
    envid: str | None = None
    for key, value in params.items():
        if key == "SIZE":
            if value is None or not value.isdigit() or len(value) > 20:
                raise SmtpSyntaxError(501, "5.5.4", "Bad SIZE value")
            size = int(value)
            if size > max_size:
                raise SmtpSyntaxError(
                    552, "5.3.4", f"Message size exceeds fixed limit of {max_size} bytes"
                )
        elif key == "BODY":
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                raise SmtpSyntaxError(555, "5.5.4", "BODY must be 7BIT or 8BITMIME")
            body = value.upper()
        elif key == "SMTPUTF8" and smtputf8_offered:
            if value is not None:
                raise SmtpSyntaxError(555, "5.5.4", "SMTPUTF8 takes no value")
            smtputf8 = True
        elif key == "RET":
            if value is None or value.upper() not in ("FULL", "HDRS"):
                raise SmtpSyntaxError(501, "5.5.4", "RET must be FULL or HDRS")
            ret = value.upper()
        elif key == "ENVID":
            if value is None:
                raise SmtpSyntaxError(501, "5.5.4", "ENVID needs a value")
            envid = xtext_decode(value)
            if len(envid) > 100:
                raise SmtpSyntaxError(501, "5.5.4", "ENVID too long (RFC 3461 §4.4)")
        elif key == "AUTH":
            pass  # RFC 4954 §5: accepted; we trust only our own authentication.
        else:
            raise SmtpSyntaxError(555, "5.5.4", f"Unsupported parameter {key}")
    return MailFrom(address, size, body, smtputf8, ret, envid)


_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})


def parse_rcpt(arg: str, *, smtputf8: bool = False) -> RcptTo:
    """Parses the argument of RCPT (``TO:<path> params``)."""
    if arg[:3].upper() != "TO:":
        raise SmtpSyntaxError(501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]")
    rest = arg[3:].lstrip(" ")
    if rest[:12].lower() == "<postmaster>":
        raise SmtpSyntaxError(550, "5.1.1", "Postmaster without domain is not a mailbox here")
    address, ptext = _parse_path(rest, allow_null=False, smtputf8=smtputf8)
    notify: frozenset[str] = frozenset()
    orcpt: str | None = None
    for key, value in _parse_params(ptext).items():
        if key == "NOTIFY":
            if value is None:
                raise SmtpSyntaxError(501, "5.5.4", "NOTIFY needs a value")
            items = frozenset(v.upper() for v in value.split(","))
            if items != {"NEVER"} and not items <= _NOTIFY:
                raise SmtpSyntaxError(501, "5.5.4", "NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY")
            notify = items
        elif key == "ORCPT":
            if value is None or ";" not in value:
                raise SmtpSyntaxError(501, "5.5.4", "ORCPT must be addr-type;xtext")
            atype, _, xtext = value.partition(";")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", atype):
                raise SmtpSyntaxError(501, "5.5.4", "Bad ORCPT address type")
            orcpt = f"{atype.lower()};{xtext_decode(xtext)}"
        else:
            raise SmtpSyntaxError(555, "5.5.4", f"Unsupported parameter {key}")
    return RcptTo(address, notify, orcpt)


# --- DATA (RFC 5321 §4.1.1.4, §4.5.2) ----------------------------------------------------

_END = b"\r\n.\r\n"


@dataclass(slots=True)
class DataOutcome:
    """What a finished DATA phase found (all refusal reasons are final, not per chunk)."""

    size: int = 0  # un-stuffed bytes seen (counted even past the limit)
    too_big: bool = False
    bare_newline: bool = False  # a bare LF or bare CR was seen
    line_too_long: bool = False
    nul: bool = False

    @property
    def refusal(self) -> Reply | None:
        """The reply refusing the message, or None when it may be stored."""
        if self.bare_newline:
            return Reply(
                550,
                "5.6.0",
                "Message refused: bare LF or bare CR; lines must end with CRLF (RFC 5321 §2.3.8)",
            )
        if self.too_big:
            return Reply(552, "5.3.4", "Message size exceeds fixed limit")
        if self.line_too_long:
            return Reply(550, "5.6.0", f"Message refused: a line exceeds {MAX_DATA_LINE} octets")
        return None


class DataDecoder:
    """Streams the DATA phase: removes dot-stuffing and finds the end, and nothing else.

    ``feed(chunk)`` returns ``(content, rest)``: ``content`` the un-stuffed message bytes of
    this chunk, ``rest`` None while the message goes on, or the bytes after ``CRLF.CRLF`` (the
    next pipelined commands) once it ended. Only ``CRLF . CRLF`` ends the message (a message
    may also be empty: ``. CRLF`` right after the 354). A bare LF or bare CR (as in ``LF.LF``,
    ``CRLF.LF``, ``LF.CRLF``, ``CR.CR``) neither ends nor splits it: it is recorded in
    :attr:`outcome` and the message refused at the end. Work per chunk is a few C-level scans.
    """

    def __init__(self, *, max_size: int, max_line: int = MAX_DATA_LINE) -> None:
        self.max_size = max_size
        self.max_line = max_line
        self.outcome = DataOutcome()
        # A virtual CRLF before the first line, so that "." CRLF at the start ends the data
        # and a leading "." is un-stuffed; it is never emitted.
        self._pending = b"\r\n"
        self._skip = 2
        self._line_len = 0
        self.done = False

    def feed(self, chunk: bytes) -> tuple[bytes, bytes | None]:
        if self.done:
            raise RuntimeError("DataDecoder fed after the end of data")
        data = self._pending + chunk if self._pending else chunk
        rest: bytes | None = None
        end = data.find(_END)
        if end >= 0:
            body, rest = data[: end + 2], data[end + 5 :]
            self._pending = b""
            self.done = True
        else:
            # Hold back any tail that may be the start of CRLF.CRLF.
            keep = 0
            for k in (4, 3, 2, 1):
                if data.endswith(_END[:k]):
                    keep = k
                    break
            body = data[: len(data) - keep] if keep else data
            self._pending = data[len(data) - keep :] if keep else b""
        self._check(body)
        content = body.replace(b"\r\n.", b"\r\n")
        if self._skip:
            cut = min(self._skip, len(content))
            content = content[cut:]
            self._skip -= cut
        self.outcome.size += len(content)
        if self.outcome.size > self.max_size:
            self.outcome.too_big = True
        return content, rest

    def _check(self, body: bytes) -> None:
        o = self.outcome
        crlf = body.count(b"\r\n")
        if body.count(b"\n") != crlf or body.count(b"\r") != crlf:
            o.bare_newline = True
        if b"\x00" in body:
            o.nul = True
        self._check_lines(body)

    def _check_lines(self, body: bytes) -> None:
        """Line length (bytes between LFs, CR included) without a per-line Python loop: each
        ``rfind`` over a window of ``limit`` bytes jumps to that window's last LF."""
        limit = self.max_line + 1
        first = body.find(b"\n")
        if first < 0:
            self._line_len += len(body)
        else:
            if self._line_len + first > limit:
                self.outcome.line_too_long = True
            pos, n = first + 1, len(body)
            while n - pos > limit and not self.outcome.line_too_long:
                nl = body.rfind(b"\n", pos, pos + limit + 1)
                if nl < 0:
                    self.outcome.line_too_long = True
                pos = nl + 1
            self._line_len = n - body.rfind(b"\n") - 1
        if self._line_len > limit:
            self.outcome.line_too_long = True


# --- headers (RFC 5322 §2.2, §3.6.2) -----------------------------------------------------


class HeaderCollector:
    """Keeps the header block of a streamed message, up to ``limit`` bytes, and nothing more."""

    def __init__(self, limit: int = 256 * 1024) -> None:
        self.limit = limit
        self._buf = bytearray()
        self.complete = False
        self.overflow = False

    def feed(self, content: bytes) -> None:
        if self.complete or self.overflow:
            return
        start = max(0, len(self._buf) - 3)
        self._buf += content
        if self._buf.startswith(b"\r\n"):  # no header at all
            del self._buf[:]
            self.complete = True
            return
        end = self._buf.find(b"\r\n\r\n", start)
        if end >= 0 and end + 2 <= self.limit:
            del self._buf[end + 2 :]
            self.complete = True
        elif end >= 0 or len(self._buf) > self.limit:
            self.overflow = True
            del self._buf[:]

    def finish(self) -> None:
        """End of message without a blank line: the whole (short) message is headers."""
        if not self.overflow:
            self.complete = True

    @property
    def block(self) -> bytes:
        return bytes(self._buf)


def header_addresses(block: bytes, name: str) -> list[list[str]]:
    """The addresses of every ``name:`` field of a header block, one list per field.

    Unfolds per RFC 5322 §2.2.3, decodes as UTF-8 (RFC 6532) with replacement; a field whose
    value holds no parseable address yields an empty list.
    """
    fields: list[list[str]] = []
    lines = block.split(b"\r\n")
    want = name.lower().encode("ascii") + b":"
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.lower().startswith(want):
            continue
        value = line[len(want) :]
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            value += b" " + lines[i].strip()
            i += 1
        text = value.decode("utf-8", errors="replace")
        addrs = [addr for _, addr in getaddresses([text]) if "@" in addr]
        fields.append(addrs)
    return fields


def format_received(
    *,
    helo: str,
    peer_ip: str,
    hostname: str,
    protocol: str,
    queue_id: str,
    tls: str | None = None,
    recipient: str | None = None,
    when: datetime | None = None,
) -> bytes:
    """A ``Received:`` trace field (RFC 5321 §4.4; ``with`` keywords per RFC 3848/6531)."""
    when = when or datetime.now(UTC)
    helo_clean = re.sub(r"[^\x21-\x7e]", "?", helo)[:255] or "unknown"
    parts = [f"Received: from {helo_clean} ([{peer_ip}])", f"\tby {hostname}"]
    if tls:
        parts[-1] += f" ({tls})"
    with_ = f"\twith {protocol} id {queue_id}"
    if recipient:
        with_ += f"\r\n\tfor <{recipient}>"
    parts.append(with_ + ";")
    parts.append(f"\t{format_datetime(when)}")
    return ("\r\n".join(parts) + "\r\n").encode("utf-8")
