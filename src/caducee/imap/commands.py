"""Parsed IMAP commands: plain data produced by :mod:`caducee.imap.parser` (RFC 9051 §6, §9)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from caducee.imap.lexer import Literal
from caducee.imap.search import SearchKey

__all__ = [
    "MONTHS",
    "AclArgs",
    "AppendArgs",
    "AppendMessage",
    "Args",
    "AuthArgs",
    "Command",
    "CopyArgs",
    "FetchArgs",
    "FetchAtt",
    "ListArgs",
    "LoginArgs",
    "MailboxArgs",
    "RenameArgs",
    "SearchArgs",
    "SelectArgs",
    "SeqSet",
    "StatusArgs",
    "StoreArgs",
]

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True, slots=True)
class SeqSet:
    """A sequence set (RFC 9051 §9 ``sequence-set``). ``0`` in a range stands for ``*``;
    ``saved`` is ``$``, the saved search result (RFC 5182)."""

    ranges: tuple[tuple[int, int], ...] = ()
    saved: bool = False

    def resolve(self, largest: int) -> set[int]:
        """The numbers of this set that exist among 1..largest (``*`` = largest)."""
        out: set[int] = set()
        for lo, hi in self.ranges:
            a = largest if lo == 0 else lo
            b = largest if hi == 0 else hi
            if a > b:
                a, b = b, a
            out.update(range(max(a, 1), min(b, largest) + 1))
        return out

    def contains(self, n: int, largest: int) -> bool:
        for lo, hi in self.ranges:
            a = largest if lo == 0 else lo
            b = largest if hi == 0 else hi
            if min(a, b) <= n <= max(a, b):
                return True
        return False


@dataclass(frozen=True, slots=True)
class LoginArgs:
    user: bytes
    password: bytes


@dataclass(frozen=True, slots=True)
class AuthArgs:
    mechanism: str
    initial: bytes | None  # SASL-IR initial response (base64 text, "=" for empty)


@dataclass(frozen=True, slots=True)
class MailboxArgs:
    mailbox: bytes
    extra: tuple[str, ...] = ()  # CREATE (USE (...)) special-use, GETACL etc.


@dataclass(frozen=True, slots=True)
class SelectArgs:
    mailbox: bytes
    condstore: bool = False
    qresync: tuple[int, int, SeqSet | None] | None = None  # (uidvalidity, modseq, known uids)


@dataclass(frozen=True, slots=True)
class RenameArgs:
    old: bytes
    new: bytes


@dataclass(frozen=True, slots=True)
class ListArgs:
    reference: bytes
    patterns: tuple[bytes, ...]
    select_opts: frozenset[str] = frozenset()
    return_opts: frozenset[str] = frozenset()
    status_atts: tuple[str, ...] = ()
    lsub: bool = False
    extended: bool = False


@dataclass(frozen=True, slots=True)
class StatusArgs:
    mailbox: bytes
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppendMessage:
    flags: tuple[str, ...]
    date: datetime | None
    literal: Literal


@dataclass(frozen=True, slots=True)
class AppendArgs:
    mailbox: bytes
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class SearchArgs:
    key: SearchKey
    charset: str | None = None
    return_opts: tuple[str, ...] | None = None  # ESEARCH RETURN (...) (RFC 4731)


@dataclass(frozen=True, slots=True)
class SortArgs:
    """SORT (RFC 5256) / ESORT (RFC 5267): ``criteria`` as (key, reverse) pairs."""

    criteria: tuple[tuple[str, bool], ...]
    search: SearchArgs


@dataclass(frozen=True, slots=True)
class ThreadArgs:
    """THREAD (RFC 5256): ``algorithm`` is ORDEREDSUBJECT or REFERENCES."""

    algorithm: str
    search: SearchArgs


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """One fetch attribute. ``section`` is e.g. ``"1.2.HEADER.FIELDS"``; ``partial`` (start,
    length); ``fields`` for HEADER.FIELDS(.NOT)."""

    name: str  # ENVELOPE, FLAGS, BODY, BODY.PEEK, BINARY, BINARY.PEEK, BINARY.SIZE, ...
    section: str | None = None
    fields: tuple[str, ...] = ()
    partial: tuple[int, int] | None = None
    label: str = ""  # how the response names it (without <partial origin> details)


@dataclass(frozen=True, slots=True)
class FetchArgs:
    seqset: SeqSet
    atts: tuple[FetchAtt, ...]
    changedsince: int | None = None
    vanished: bool = False


@dataclass(frozen=True, slots=True)
class StoreArgs:
    seqset: SeqSet
    mode: str  # "+", "-", ""
    silent: bool
    flags: tuple[str, ...]
    unchangedsince: int | None = None


@dataclass(frozen=True, slots=True)
class CopyArgs:
    seqset: SeqSet
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class AclArgs:
    mailbox: bytes
    identifier: bytes = b""
    rights: bytes = b""


Args = (
    LoginArgs
    | AuthArgs
    | MailboxArgs
    | SelectArgs
    | RenameArgs
    | ListArgs
    | StatusArgs
    | AppendArgs
    | SearchArgs
    | SortArgs
    | ThreadArgs
    | FetchArgs
    | StoreArgs
    | CopyArgs
    | AclArgs
    | SeqSet
    | tuple[str, ...]
    | dict[str, str | None]
    | None
)


@dataclass(frozen=True, slots=True)
class Command:
    tag: str
    name: str
    uid: bool = False
    args: Args = None
    atoms: tuple[str, ...] = field(default=())
