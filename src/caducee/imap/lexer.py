"""Low-level IMAP lexing over bytes (RFC 9051 §4, §9 formal syntax; RFC 3501 §9).

A command arrives as *segments*: the text of each line and, between them, the literals that
the lines announced with ``{n}`` / ``{n+}`` / ``~{n}`` (RFC 7888 LITERAL+/LITERAL-, RFC 3516).
:class:`Cursor` walks the segments; everything here is pure and raises :class:`ParseError`
with a human reason, which the server turns into ``BAD``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Cursor",
    "Literal",
    "ParseError",
    "literal_announce",
]

# RFC 9051 §9: ATOM-CHAR = any CHAR except atom-specials
#   atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x20)) | {0x7F}
# ASTRING-CHAR allows "]" (resp-specials)
_ASTRING_SPECIALS = _ATOM_SPECIALS - {ord("]")}
# list-char allows list-wildcards and resp-specials
_LIST_SPECIALS = _ATOM_SPECIALS - {ord("%"), ord("*"), ord("]")}
_TAG_SPECIALS = _ASTRING_SPECIALS | {ord("+")}

_LITERAL_RE = re.compile(rb"(~?)\{(\d{1,20})(\+|-)?\}\Z")


_SYSTEM_FLAGS = {
    f.lower(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
}


class ParseError(ValueError):
    """Syntax error in a command; ``str()`` is the reason sent with ``BAD``."""

    def __init__(self, reason: str, tag: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tag = tag


@dataclass(slots=True)
class Literal:
    """A literal's payload. ``data`` is the bytes, or None when spooled elsewhere (``spool``)."""

    size: int
    data: bytes | None
    binary: bool = False  # ~{n}: literal8 (RFC 3516)
    spool: object | None = None  # e.g. a committed BlobRef for a large APPEND literal


def literal_announce(line: bytes) -> tuple[int, bool, bool] | None:
    """If ``line`` (without CRLF) ends with a literal announcement, ``(size, non_sync, binary)``.

    ``{n+}`` is a non-synchronising literal (LITERAL+, RFC 7888); ``{n-}`` is LITERAL- (also
    non-synchronising, at most 4096 octets); ``~{n}`` is a literal8 (RFC 3516).
    """
    if not line.endswith(b"}"):
        return None
    match = _LITERAL_RE.search(line[-26:])
    if match is None:
        return None
    return int(match.group(2)), match.group(3) is not None, bool(match.group(1))


class Cursor:
    """A position in a command made of text segments and literals."""

    __slots__ = ("lits", "pos", "seg", "texts")

    def __init__(self, texts: list[bytes], lits: list[Literal]) -> None:
        if len(texts) != len(lits) + 1:
            raise ValueError("segments: one more text than literals")
        self.texts = texts
        self.lits = lits
        self.seg = 0
        self.pos = 0

    # -- basic access -----------------------------------------------------------------
    @property
    def text(self) -> bytes:
        return self.texts[self.seg]

    def peek(self) -> int | None:
        """The next byte of the current text, or None at its end."""
        text = self.texts[self.seg]
        return text[self.pos] if self.pos < len(text) else None

    def at_end(self) -> bool:
        return self.seg == len(self.lits) and self.pos >= len(self.texts[self.seg])

    def expect_end(self) -> None:
        if not self.at_end():
            raise ParseError(f"unexpected data: {self._context()}")

    def _context(self) -> str:
        rest = self.texts[self.seg][self.pos : self.pos + 20]
        return repr(rest.decode("latin-1")) if rest else "end of line"

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise ParseError(f"expected a space before {self._context()}")
        self.pos += 1

    def maybe_sp(self) -> bool:
        if self.peek() == 0x20:
            self.pos += 1
            return True
        return False

    def take(self, lit: bytes) -> bool:
        """Consumes ``lit`` (case-insensitive) if it is next."""
        text = self.texts[self.seg]
        end = self.pos + len(lit)
        if text[self.pos : end].upper() == lit.upper():
            self.pos = end
            return True
        return False

    def expect(self, lit: bytes) -> None:
        if not self.take(lit):
            raise ParseError(f"expected {lit.decode()!r} before {self._context()}")

    # -- tokens ------------------------------------------------------------------------
    def _run(self, specials: frozenset[int] | set[int], *, utf8: bool = False) -> bytes:
        text = self.texts[self.seg]
        start = self.pos
        end = start
        n = len(text)
        while end < n and text[end] not in specials and (utf8 or text[end] < 0x80):
            end += 1
        self.pos = end
        return text[start:end]

    def tag(self) -> str:
        raw = self._run(_TAG_SPECIALS)
        if not raw:
            raise ParseError("missing or invalid tag")
        return raw.decode("ascii")

    def atom(self) -> str:
        raw = self._run(_ATOM_SPECIALS)
        if not raw:
            raise ParseError(f"expected an atom before {self._context()}")
        return raw.decode("ascii")

    def number(self) -> int:
        """``number`` (RFC 9051 §9): unsigned 32-bit; ``number64`` where bigger is allowed."""
        text = self.texts[self.seg]
        start = self.pos
        while self.pos < len(text) and 0x30 <= text[self.pos] <= 0x39:
            self.pos += 1
        if start == self.pos:
            raise ParseError(f"expected a number before {self._context()}")
        if self.pos - start > 19:
            raise ParseError("number too large")
        return int(text[start : self.pos])

    def nz_number(self) -> int:
        value = self.number()
        if value == 0 or value > 0xFFFFFFFF:
            raise ParseError("expected a non-zero 32-bit number")
        return value

    def quoted(self) -> bytes:
        text = self.texts[self.seg]
        if self.peek() != 0x22:
            raise ParseError("expected a quoted string")
        i = self.pos + 1
        out = bytearray()
        while i < len(text):
            c = text[i]
            if c == 0x22:
                self.pos = i + 1
                return bytes(out)
            if c == 0x5C:
                i += 1
                if i >= len(text) or text[i] not in (0x22, 0x5C):
                    raise ParseError("invalid escape in quoted string")
                out.append(text[i])
            elif c in (0x0D, 0x0A, 0x00):
                raise ParseError("invalid character in quoted string")
            else:
                out.append(c)
            i += 1
        raise ParseError("unterminated quoted string")

    def literal(self, *, allow_binary: bool = False) -> Literal:
        """A literal announced at the end of the current text; moves to the next text."""
        rest = self.texts[self.seg][self.pos :]
        ann = literal_announce(rest)
        if ann is None or not _LITERAL_RE.fullmatch(rest):
            raise ParseError(f"expected a literal before {self._context()}")
        if ann[2] and not allow_binary:
            raise ParseError("literal8 not allowed here")
        if self.seg >= len(self.lits):
            raise ParseError("literal data missing")
        lit = self.lits[self.seg]
        self.seg += 1
        self.pos = 0
        return lit

    def is_literal_next(self) -> bool:
        c = self.peek()
        return c in (0x7B, 0x7E)

    def string(self) -> bytes:
        """``string = quoted / literal``."""
        if self.peek() == 0x22:
            return self.quoted()
        if self.peek() == 0x7B:
            lit = self.literal()
            if lit.data is None:
                raise ParseError("literal too large here")
            return lit.data
        raise ParseError(f"expected a string before {self._context()}")

    def astring(self) -> bytes:
        """``astring = 1*ASTRING-CHAR / string``."""
        c = self.peek()
        if c in (0x22, 0x7B):
            return self.string()
        raw = self._run(_ASTRING_SPECIALS, utf8=True)  # lenient: 8-bit atoms as UTF-8
        if not raw:
            # 8-bit atoms are not ATOM-CHARs; report them clearly
            raise ParseError(f"expected an astring before {self._context()}")
        return raw

    def nstring(self) -> bytes | None:
        if self.take(b"NIL"):
            return None
        return self.string()

    def list_mailbox(self) -> bytes:
        """``list-mailbox = 1*list-char / string`` (LIST patterns may hold ``%`` and ``*``)."""
        c = self.peek()
        if c in (0x22, 0x7B):
            return self.string()
        raw = self._run(_LIST_SPECIALS, utf8=True)
        if not raw:
            raise ParseError(f"expected a mailbox pattern before {self._context()}")
        return raw

    def flag(self) -> str:
        r"""``flag = "\" atom / atom`` (also ``\*`` in PERMANENTFLAGS, not accepted here)."""
        if self.peek() == 0x5C:
            self.pos += 1
            name = "\\" + self.atom()
            # RFC 9051 §2.3.2: flag names are case-insensitive; system flags get one spelling
            return _SYSTEM_FLAGS.get(name.lower(), name)
        return self.atom()

    def flag_list(self) -> list[str]:
        self.expect(b"(")
        flags: list[str] = []
        if self.take(b")"):
            return flags
        while True:
            flags.append(self.flag())
            if self.take(b")"):
                return flags
            self.sp()
