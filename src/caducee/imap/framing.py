"""Sans-IO command framing: bytes in, complete commands (lines + literals) out.

RFC 9051 §2.2 / §4.3: a command is a line; a line ending in ``{n}`` is followed, after the
server's ``+`` continuation, by n octets and the rest of the command. ``{n+}`` (LITERAL+, RFC
7888) needs no continuation; ``{n-}`` (LITERAL-) likewise but at most 4096 octets.

Limits: a text line over ``max_line`` octets, or a literal over ``max_literal`` octets, is
refused with an event instead of being held; a literal over ``inline_literal`` octets (but
within ``max_literal``) is handed out in chunks (``BigLiteral*`` events) so that the server can
stream it to blob storage.
"""

from __future__ import annotations

from dataclasses import dataclass

from caducee.imap.lexer import Literal, literal_announce

__all__ = [
    "BigLiteralChunk",
    "BigLiteralEnd",
    "BigLiteralStart",
    "CommandReady",
    "Event",
    "Framer",
    "NeedContinuation",
    "Rejected",
]


@dataclass(frozen=True, slots=True)
class CommandReady:
    texts: list[bytes]
    literals: list[Literal]


@dataclass(frozen=True, slots=True)
class NeedContinuation:
    """Send ``+ ...`` so the client sends a synchronising literal."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """The command was refused while being read (too long, literal too big). ``texts`` is
    what was read of it, for the tag; the rest of the command is discarded."""

    reason: str
    texts: list[bytes]


@dataclass(frozen=True, slots=True)
class BigLiteralStart:
    size: int
    binary: bool
    texts: list[bytes]
    sync: bool  # the server must send a continuation, or Rejected via ``refuse_big``


@dataclass(frozen=True, slots=True)
class BigLiteralChunk:
    data: bytes


@dataclass(frozen=True, slots=True)
class BigLiteralEnd:
    pass


Event = (
    CommandReady | NeedContinuation | Rejected | BigLiteralStart | BigLiteralChunk | BigLiteralEnd
)

LITERAL_MINUS_MAX = 4096


class Framer:
    """Splits a byte stream into IMAP commands. Feed bytes, then drain ``next_event()``."""

    __slots__ = (
        "_big_left",
        "_big_sync",
        "_buf",
        "_discard_left",
        "_discarding",
        "_lit_left",
        "_lit_meta",
        "_lits",
        "_texts",
        "inline_literal",
        "max_line",
        "max_literal",
    )

    def __init__(
        self,
        *,
        max_line: int = 65536,
        max_literal: int = 64 * 1024 * 1024,
        inline_literal: int = 1024 * 1024,
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.inline_literal = inline_literal
        self._buf = bytearray()
        self._texts: list[bytes] = []
        self._lits: list[Literal] = []
        self._lit_left = -1  # >= 0 while collecting an inline literal
        self._lit_meta: tuple[int, bool] = (0, False)
        self._big_left = -1  # >= 0 while streaming a big literal
        self._big_sync = False
        self._discard_left = 0  # literal octets to throw away (refused non-sync literal)
        self._discarding = False  # throwing away the rest of a refused command

    def feed(self, data: bytes) -> None:
        self._buf += data

    def reset(self) -> None:
        """Forget everything buffered (after STARTTLS: no plaintext injection, RFC 9051 §6.2.1)."""
        self._buf.clear()
        self._texts = []
        self._lits = []
        self._lit_left = -1
        self._big_left = -1
        self._discard_left = 0
        self._discarding = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def attach_literal(self, lit: Literal) -> None:
        """After BigLiteralEnd: the literal (spooled) that stands in the command."""
        self._lits.append(lit)

    def refuse_big(self, reason: str) -> Rejected:
        """The server refuses an announced big literal. For a synchronising one nothing was
        sent yet; a non-synchronising one is read and thrown away."""
        texts = self._texts
        if self._big_left > 0 and not self._big_sync:
            self._discard_left = self._big_left
            self._discarding = True
        self._big_left = -1
        self._texts, self._lits = [], []
        return Rejected(reason, texts)

    def next_event(self) -> Event | None:
        while True:
            if self._discard_left:
                n = min(self._discard_left, len(self._buf))
                del self._buf[:n]
                self._discard_left -= n
                if self._discard_left:
                    return None
            if self._big_left >= 0:
                if self._big_left == 0:
                    self._big_left = -1
                    return BigLiteralEnd()
                if not self._buf:
                    return None
                n = min(self._big_left, len(self._buf), 65536)
                chunk = bytes(self._buf[:n])
                del self._buf[:n]
                self._big_left -= n
                return BigLiteralChunk(chunk)
            if self._lit_left >= 0:
                if len(self._buf) < self._lit_left:
                    return None
                data = bytes(self._buf[: self._lit_left])
                del self._buf[: self._lit_left]
                self._lit_left = -1
                size, binary = self._lit_meta
                self._lits.append(Literal(size, data, binary))
                continue
            idx = self._buf.find(b"\r\n")
            if idx < 0:
                if len(self._buf) > self.max_line:
                    # keep discarding until the end of this line
                    self._buf.clear()
                    if not self._discarding:
                        self._discarding = True
                        texts, self._texts, self._lits = [*self._texts, b""], [], []
                        return Rejected("command line too long", texts)
                return None
            line = bytes(self._buf[:idx])
            del self._buf[: idx + 2]
            if self._discarding:
                ann = literal_announce(line)
                if ann is not None and ann[1]:
                    self._discard_left = ann[0]
                    continue
                self._discarding = False
                continue
            if idx > self.max_line:
                texts, self._texts, self._lits = [*self._texts, line[:64]], [], []
                ann = literal_announce(line)
                if ann is not None and ann[1]:
                    self._discard_left = ann[0]
                    self._discarding = True
                return Rejected("command line too long", texts)
            self._texts.append(line)
            ann = literal_announce(line)
            if ann is None:
                texts, lits = self._texts, self._lits
                self._texts, self._lits = [], []
                return CommandReady(texts, lits)
            size, nonsync, binary = ann
            minus = line.endswith(b"-}")
            if size > self.max_literal or (minus and size > LITERAL_MINUS_MAX):
                texts = self._texts
                self._texts, self._lits = [], []
                if nonsync:
                    self._discard_left = size
                    self._discarding = True
                return Rejected(
                    "literal too large" if not minus else "LITERAL- literal over 4096", texts
                )
            if size > self.inline_literal:
                self._big_left = size
                self._big_sync = not nonsync
                return BigLiteralStart(size, binary, list(self._texts), not nonsync)
            self._lit_left = size
            self._lit_meta = (size, binary)
            if not nonsync:
                return NeedContinuation()
