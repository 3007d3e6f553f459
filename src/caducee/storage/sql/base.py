"""Sans-I/O database operations.

An operation is a generator that yields ``Q`` statements (SQL with ``?`` placeholders, in the
common subset of SQLite and PostgreSQL) and receives each statement's rows; its return value
is the operation's result. The SQLite engine runs operations in its writer thread (group
commit) or on reader connections; the PostgreSQL engine runs them on pooled async
connections, in one transaction each. So the logic of every store is written once.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

__all__ = [
    "Dialect",
    "Op",
    "OpFactory",
    "Q",
    "Row",
    "Runner",
    "chunks",
    "from_us",
    "now_us",
    "placeholders",
    "to_us",
]

Row = tuple[Any, ...]
T = TypeVar("T")
Dialect = Literal["sqlite", "postgres"]


@dataclass(frozen=True, slots=True)
class Q:
    """One statement. ``many``: ``params`` is a sequence of parameter tuples (executemany).
    ``only``: the operation's single statement; engines may run it without BEGIN/COMMIT."""

    sql: str
    params: Sequence[Any] = ()
    many: bool = False
    only: bool = False


Op = Generator[Q, list[Row], T]
OpFactory = Callable[[], Op[T]]


class Runner(Protocol):
    """Runs operations; each ``write`` is one transaction, durable when it returns."""

    dialect: Dialect

    async def write(self, factory: OpFactory[T]) -> T: ...

    async def read(self, factory: OpFactory[T]) -> T: ...


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    """Exact (no float rounding) and cheaper than ``fromtimestamp``."""
    return _EPOCH + timedelta(microseconds=us)


def now_us() -> int:
    return to_us(datetime.now(UTC))


def placeholders(n: int) -> str:
    return ",".join("?" * n)


def chunks(items: Iterable[T], size: int = 500) -> list[list[T]]:
    out: list[list[T]] = []
    cur: list[T] = []
    for it in items:
        cur.append(it)
        if len(cur) >= size:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out
