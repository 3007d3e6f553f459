"""Runs SQL operations on SQLite: one writer thread with group commit, pooled readers.

Durability: WAL with ``synchronous=FULL``, so every COMMIT fsyncs the WAL and a transaction
acknowledged to a caller survives a process crash and a power loss. To keep that affordable,
all writes go through one thread that takes every request waiting in its queue, runs each in
its own SAVEPOINT (a failing request rolls back alone), and COMMITs them together: concurrent
``deliver``/``enqueue``/``record`` calls share one fsync (group commit). Readers use their own
connections (WAL readers never block the writer) in a small thread pool.

Small reads skip the thread hop: a read first runs on a connection of the calling thread (the
event loop's), under a budget of SQLite virtual-machine steps (a progress handler). Almost all
IMAP reads (a folder's counters, a BAL list, one blob's row, the few messages changed since a
MODSEQ) finish well within it, and a thread hop costs more than the query: a future, a wake-up
of the loop through its self-pipe, and GIL hand-overs between the loop and the reader thread.
A read that exceeds the budget is interrupted (nothing was changed: it is a read) and run
again on a reader thread, so a big folder never stalls the loop for more than the budget.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from caducee.core.errors import CaduceeError, Conflict, NotFound, StorageError
from caducee.storage.sql.base import Dialect, Op, OpFactory, Q

__all__ = ["SqliteRunner", "run_op"]

T = TypeVar("T")
log = logging.getLogger(__name__)
MAX_BATCH = 512
INLINE_STEPS = 50_000  # SQLite VM steps an inline read may take (a few hundred microseconds)
_TICK = 1_000  # progress handler period, in VM steps


def run_op(conn: sqlite3.Connection, op: Op[T], first: Q | None = None) -> T:
    """Drives one operation's statements on ``conn`` (``first``: already taken from ``op``)."""
    try:
        stmt = next(op) if first is None else first
        while True:
            if stmt.many:
                conn.executemany(stmt.sql, stmt.params)
                rows: list[Any] = []
            else:
                rows = conn.execute(stmt.sql, stmt.params).fetchall()
            stmt = op.send(rows)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]  # generator return value is T


def _map(exc: BaseException) -> BaseException:
    if isinstance(exc, CaduceeError):
        return exc
    if isinstance(exc, sqlite3.IntegrityError) and "FOREIGN KEY" in str(exc):
        return NotFound("a referenced object (blob, mailbox, folder) does not exist")
    if isinstance(exc, sqlite3.IntegrityError):
        return Conflict(f"integrity constraint failed: {exc}")
    if isinstance(exc, sqlite3.Error):
        return StorageError(f"SQLite error: {exc}")
    return exc


def _connect(path: Path, *, readonly: bool, busy_ms: int = 30000) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        timeout=busy_ms / 1000,
        cached_statements=256,
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        conn.execute("PRAGMA query_only = 1")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
    return conn


# (work, thread-side future, exclusive, caller's loop and future; None for write_nowait)
_Job = tuple[
    Callable[[sqlite3.Connection], Any],
    concurrent.futures.Future[Any],
    bool,
    asyncio.AbstractEventLoop | None,
    asyncio.Future[Any] | None,
]


def _settle(pairs: list[tuple[asyncio.Future[Any], concurrent.futures.Future[Any]]]) -> None:
    """On the caller's loop: copies the outcome of finished jobs to their asyncio futures."""
    for afut, cfut in pairs:
        if afut.done():
            continue
        if cfut.cancelled():
            afut.cancel()
            continue
        exc = cfut.exception()
        if exc is not None:
            afut.set_exception(exc)
        else:
            afut.set_result(cfut.result())


def _wake_callers(jobs: list[_Job]) -> None:
    """One ``call_soon_threadsafe`` per event loop for a whole batch (not one per job): each
    wakes the loop through its self-pipe, a system call and a loop iteration."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
    for _, cfut, _, loop, afut in jobs:
        if loop is None or afut is None:
            exc = cfut.exception() if not cfut.cancelled() else None
            if exc is not None:
                log.warning("a queued write failed: %s", exc)
            continue
        by_loop.setdefault(loop, []).append((afut, cfut))
    for loop, pairs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop was closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, pairs)


class _Inline:
    """The calling thread's read connection for inline reads, with its step budget."""

    __slots__ = ("conn", "left")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.left = 0
        conn.set_progress_handler(self._tick, _TICK)

    def _tick(self) -> int:
        self.left -= 1
        return 1 if self.left < 0 else 0  # non-zero interrupts the statement


class _OverBudget(Exception):
    """An inline read ran out of steps; it is run again on a reader thread."""


class SqliteRunner:
    """``Runner`` for SQLite. ``write`` returns once the batch holding it is committed.
    ``inline_steps``: the step budget of a read on the caller's thread (0: always hop)."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, *, readers: int = 4, inline_steps: int = INLINE_STEPS) -> None:
        self.path = path
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._readers = concurrent.futures.ThreadPoolExecutor(readers, "sqlite-reader")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self.batches = 0  # number of group commits (for tests and the benchmark)
        self.batched_jobs = 0
        self.inline_steps = inline_steps
        self.inline_reads = 0  # reads done on the caller's thread / sent on to a reader
        self.hopped_reads = 0
        if not path.exists():  # only the operator may read the database (addresses, audit)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = _connect(path, readonly=False)  # create the file and switch to WAL now
        conn.close()
        self._writer.start()

    # -- writer -----------------------------------------------------------------------------
    def _write_loop(self) -> None:
        conn = _connect(self.path, readonly=False)
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                if job[2]:  # exclusive: runs alone, manages its own transaction
                    self._run_exclusive(conn, job)
                    continue
                batch = [job]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    if nxt[2]:
                        self._run_batch(conn, batch)
                        batch = []
                        self._run_exclusive(conn, nxt)
                        continue
                    batch.append(nxt)
                if batch:
                    self._run_batch(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _run_exclusive(self, conn: sqlite3.Connection, job: _Job) -> None:
        fn, fut = job[0], job[1]
        if not fut.set_running_or_notify_cancel():
            _wake_callers([job])
            return  # the caller gave up before the job started: nothing was done
        try:
            fut.set_result(fn(conn))
        except BaseException as exc:
            fut.set_exception(_map(exc))
        _wake_callers([job])

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        # A job whose caller was cancelled before it started is skipped (nothing was done, no
        # reply was given); once running, its future can no longer be cancelled.
        batch = [job for job in batch if job[1].set_running_or_notify_cancel()]
        if not batch:
            return
        results: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, *_ in batch:
                conn.execute("SAVEPOINT job")
                try:
                    results.append((True, fn(conn)))
                    conn.execute("RELEASE job")
                except BaseException as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    results.append((False, _map(exc)))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            err = StorageError(f"SQLite commit failed: {exc}")
            for job in batch:
                job[1].set_exception(err)
            _wake_callers(batch)
            return
        self.batches += 1
        self.batched_jobs += len(batch)
        for (ok, value), job in zip(results, batch, strict=True):
            if ok:
                job[1].set_result(value)
            else:
                job[1].set_exception(value)
        _wake_callers(batch)

    def _submit(self, fn: Callable[[sqlite3.Connection], T], exclusive: bool) -> asyncio.Future[T]:
        if self._closed:
            raise StorageError("storage is closed")
        cfut: concurrent.futures.Future[T] = concurrent.futures.Future()
        loop = asyncio.get_running_loop()
        afut: asyncio.Future[T] = loop.create_future()
        afut.add_done_callback(lambda f: cfut.cancel() if f.cancelled() else None)
        self._jobs.put((fn, cfut, exclusive, loop, afut))
        return afut

    async def write(self, factory: OpFactory[T]) -> T:
        return await self._submit(lambda conn: run_op(conn, factory()), False)

    def write_nowait(self, factory: OpFactory[Any]) -> None:
        """Queues a write without waiting for its commit (see ``BlobWriter.commit``): the
        caller's event loop is not woken when it commits; a failure is logged."""
        if self._closed:
            raise StorageError("storage is closed")
        cfut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((lambda conn: run_op(conn, factory()), cfut, False, None, None))

    async def exclusive(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``fn`` alone on the writer connection (migrations); it manages its transaction."""
        return await self._submit(fn, True)

    # -- readers ----------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    def _inline(self) -> _Inline:
        inline: _Inline | None = getattr(self._local, "inline", None)
        if inline is None:
            # never wait for a lock on the caller's thread: a busy database sends the read on
            conn = _connect(self.path, readonly=True, busy_ms=0)
            inline = self._local.inline = _Inline(conn)
            with self._lock:
                self._reader_conns.append(conn)
        return inline

    def _read_inline(self, factory: OpFactory[T]) -> T:
        inline = self._inline()
        conn = inline.conn
        inline.left = self.inline_steps // _TICK
        op = factory()
        try:
            first = next(op)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # generator return value is T
        try:
            if not first.only:  # one statement is its own snapshot: no BEGIN/COMMIT
                conn.execute("BEGIN")
            return run_op(conn, op, first)
        except sqlite3.OperationalError as exc:
            if inline.left < 0 or exc.sqlite_errorname in ("SQLITE_BUSY", "SQLITE_INTERRUPT"):
                raise _OverBudget from exc
            raise _map(exc) from exc
        except CaduceeError:
            raise
        except sqlite3.Error as exc:
            raise _map(exc) from exc
        finally:
            inline.left = 1 << 30  # COMMIT must not be interrupted
            if conn.in_transaction:
                conn.execute("COMMIT")

    def _read_sync(self, factory: OpFactory[T]) -> T:
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return run_op(conn, factory())
        except BaseException as exc:
            mapped = _map(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        finally:
            conn.execute("COMMIT")

    async def read(self, factory: OpFactory[T]) -> T:
        if self._closed:
            raise StorageError("storage is closed")
        if self.inline_steps > 0:
            try:
                result = self._read_inline(factory)
                self.inline_reads += 1
                return result
            except _OverBudget:
                pass
        self.hopped_reads += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read_sync, factory)

    # -- lifecycle --------------------------------------------------------------------------
    def _close_sync(self) -> None:
        self._jobs.put(None)
        self._writer.join()
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._close_sync)


def _migrations() -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for entry in resources.files("caducee.storage.sqlite").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            out.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(out)


def migrate_sync(conn: sqlite3.Connection) -> list[int]:
    """Applies pending numbered migrations, each in its own transaction; idempotent."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
        " applied INTEGER NOT NULL)"
    )
    applied: list[int] = []
    for version, sql in _migrations():
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = conn.execute(
                "SELECT 1 FROM schema_version WHERE version = ?", (version,)
            ).fetchone()
            if done:
                conn.execute("COMMIT")
                continue
            for statement in _split(sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied) VALUES (?, strftime('%s','now'))",
                (version,),
            )
            conn.execute("COMMIT")
            applied.append(version)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return applied


def _split(sql: str) -> list[str]:
    """Statements of a migration file (no ``;`` inside literals in our migrations)."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
