"""Runs SQL operations on PostgreSQL through a psycopg 3 async pool, one transaction each.

Statements use the ``?`` placeholders of the shared operations, translated to ``%s``.
Deadlocks and serialisation failures (possible between nodes) are retried a few times: the
operations are re-run from scratch, so a retry is always whole.
"""

from __future__ import annotations

import asyncio
import random
from functools import lru_cache
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerr
from psycopg_pool import AsyncConnectionPool

from caducee.core.errors import CaduceeError, Conflict, NotFound, StorageError
from caducee.storage.sql.base import Dialect, Op, OpFactory, Q

__all__ = ["PgRunner", "migrate", "to_pg"]

T = TypeVar("T")
_RETRIES = 8
_MIGRATION_LOCK = 0x43414455  # advisory lock id: one node migrates at a time


@lru_cache(maxsize=4096)
def to_pg(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (our SQL has no other ``?`` or ``%``)."""
    return sql.replace("%", "%%").replace("?", "%s")


@lru_cache(maxsize=4096)
def _returns_rows(sql: str) -> bool:
    """Our convention: a statement yields rows iff it is a SELECT or has a RETURNING clause."""
    return sql.lstrip()[:6].upper() == "SELECT" or " RETURNING " in sql


async def _execute(conn: psycopg.AsyncConnection[Any], stmt: Q) -> list[Any]:
    async with conn.cursor() as cur:
        if stmt.many:
            if stmt.params:
                await cur.executemany(to_pg(stmt.sql), stmt.params)
            return []
        await cur.execute(to_pg(stmt.sql), stmt.params)
        # In pipeline mode a statement without result is not waited for: errors surface at
        # the next sync, still inside the transaction, which they abort.
        return await cur.fetchall() if _returns_rows(stmt.sql) else []


async def run_op(conn: psycopg.AsyncConnection[Any], op: Op[T], first: Q) -> T:
    stmt = first
    try:
        while True:
            stmt = op.send(await _execute(conn, stmt))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]  # generator return value is T


async def run_factory(conn: psycopg.AsyncConnection[Any], factory: OpFactory[T]) -> T:
    """One transaction, or none for an operation made of one ``only`` statement."""
    op = factory()
    try:
        first = next(op)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]  # generator return value is T
    if first.only:
        rows = await _execute(conn, first)
        try:
            op.send(rows)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # generator return value is T
        raise StorageError("an 'only' statement was followed by another")
    # Pipeline mode: BEGIN travels with the first statement (one round trip fewer).
    async with conn.pipeline(), conn.transaction():
        return await run_op(conn, op, first)


def _map(exc: psycopg.Error) -> CaduceeError:
    if isinstance(exc, pgerr.ForeignKeyViolation):
        return NotFound("a referenced object (blob, mailbox, folder) does not exist")
    if isinstance(exc, pgerr.UniqueViolation):
        return Conflict("the object already exists")
    if isinstance(exc, pgerr.IntegrityError):
        return Conflict(f"integrity constraint failed ({type(exc).__name__})")
    return StorageError(f"PostgreSQL error: {type(exc).__name__}: {exc}".splitlines()[0])


class PgRunner:
    dialect: Dialect = "postgres"

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def _run(self, factory: OpFactory[T]) -> T:
        for attempt in range(_RETRIES):
            try:
                async with self.pool.connection() as conn:
                    return await run_factory(conn, factory)
            except (pgerr.DeadlockDetected, pgerr.SerializationFailure) as exc:
                if attempt == _RETRIES - 1:
                    raise _map(exc) from exc
                await asyncio.sleep(random.uniform(0, 0.005 * (2**attempt)))  # noqa: S311
            except psycopg.Error as exc:
                raise _map(exc) from exc
        raise StorageError("unreachable")  # pragma: no cover

    async def write(self, factory: OpFactory[T]) -> T:
        return await self._run(factory)

    async def read(self, factory: OpFactory[T]) -> T:
        return await self._run(factory)


def _migrations() -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for entry in resources.files("caducee.storage.postgres").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            out.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(out)


async def migrate(pool: AsyncConnectionPool[Any]) -> list[int]:
    """Applies pending migrations under an advisory lock (several nodes may start at once)."""
    applied: list[int] = []
    try:
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY,"
                " applied TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_version")
            done = {int(r[0]) for r in await cur.fetchall()}
            for version, sql in _migrations():
                if version in done:
                    continue
                await conn.execute(sql.encode("utf-8"))
                await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                applied.append(version)
    except psycopg.Error as exc:
        raise _map(exc) from exc
    return applied
