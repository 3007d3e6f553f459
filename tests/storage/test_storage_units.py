"""Unit tests of the storage building blocks: keyring, blob cipher, passwords, notifier,
``open_storage`` from a node configuration, orphan collection, file modes."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from caducee.config.model import NodeConfig
from caducee.core.errors import ConfigError, StorageError
from caducee.storage import open_postgres, open_sqlite, open_storage
from caducee.storage.blobcrypto import SEGMENT, BlobCipher
from caducee.storage.keyring import add_key, create_keyring, load_keyring
from caducee.storage.notify import LocalNotifier
from caducee.storage.passwords import PasswordHasher, hash_password, verify_password_hash


def test_keyring_create_rotate_load(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    create_keyring(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = load_keyring(path)
    assert len(first.keys) == 1 and len(first.active_key) == 32
    new_id = add_key(path)
    ring = load_keyring(path)
    assert ring.active == new_id and first.active in ring.keys
    assert ring.keys[first.active] == first.active_key
    assert base64.b64encode(ring.active_key).decode() not in repr(ring)  # no key material
    with pytest.raises(ConfigError):
        create_keyring(path)  # never overwrites


def test_keyring_reports_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# comment\nnocolon\nk1:notbase64!\nk2:AAAA\n")
    with pytest.raises(ConfigError) as err:
        load_keyring(path)
    assert len(err.value.problems) == 3
    assert ":2:" in err.value.problems[0] and ":4:" in err.value.problems[2]
    with pytest.raises(ConfigError):
        load_keyring(tmp_path / "missing")


def test_cipher_binds_index_last_flag_and_blob() -> None:
    key, salt = os.urandom(32), BlobCipher.new_salt()
    c = BlobCipher(key, "a" * 32, salt)
    full = c.seal(0, b"x" * SEGMENT, last=False)
    tail = c.seal(1, b"tail", last=True)
    assert c.open(0, full, last=False) == b"x" * SEGMENT
    with pytest.raises(StorageError):
        c.open(1, full, last=False)  # reordered
    with pytest.raises(StorageError):
        c.open(0, full, last=True)  # truncated after segment 0
    with pytest.raises(StorageError):
        BlobCipher(key, "b" * 32, salt).open(1, tail, last=True)  # another blob's segment
    with pytest.raises(ValueError):
        c.seal(0, b"short", last=False)


def test_password_hash_and_cache() -> None:
    stored = hash_password("pässword", log2_n=10)
    assert stored.startswith("scrypt$10$") and "pässword" not in stored
    assert verify_password_hash("pässword", stored)
    assert not verify_password_hash("password", stored)
    assert not verify_password_hash("x", "garbage")
    h = PasswordHasher(cache_size=2, log2_n=10)
    assert not h.cached("a", stored, "pässword")
    assert h.verify("a", stored, "pässword")
    assert h.cached("a", stored, "pässword")
    assert not h.cached("a", hash_password("pässword", log2_n=10), "pässword")  # new hash
    assert not h.verify("a", stored, "wrong") and not h.cached("a", stored, "wrong")
    h.verify("b", stored, "pässword")
    h.verify("c", stored, "pässword")
    assert not h.cached("a", stored, "pässword")  # bounded: evicted


async def test_notifier_coalesces_and_closes() -> None:
    hub = LocalNotifier()
    sub = hub.subscribe(7)
    other = hub.subscribe(8)
    for folder in (1, 2, 1, 1):
        await hub.publish(7, folder)
    assert [await anext(sub), await anext(sub)] == [1, 2]
    waiter = asyncio.create_task(anext(sub))
    await hub.publish(7, 3)
    assert await asyncio.wait_for(waiter, 5) == 3
    await sub.aclose()
    with pytest.raises(StopAsyncIteration):
        await anext(sub)
    assert hub.subscriber_count() == 1
    other.close()
    assert hub.subscriber_count() == 0


async def test_open_storage_from_config(tmp_path: Path) -> None:
    create_keyring(tmp_path / "keys")
    cfg = NodeConfig.model_validate(
        {
            "name": "op1",
            "data_dir": str(tmp_path / "data"),
            "domains": ["x.test"],
            "crypto": {"keyring_file": str(tmp_path / "keys")},
            "tls": {"cert_file": "c", "key_file": "k", "ca_bundle": "b"},
            "trust": {"liste_blanche": "lb.xml"},
            "smtp": {"hostname": "mx.x.test"},
        }
    )
    st = await open_storage(cfg)
    try:
        await st.accounts.create_account("a", None)
        assert [a.login for a in await st.accounts.list_accounts()] == ["a"]
    finally:
        await st.close()
    db = tmp_path / "data" / "caducee.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


async def test_sqlite_orphan_files_are_collected(tmp_path: Path) -> None:
    create_keyring(tmp_path / "keys")
    st = await open_sqlite(tmp_path / "data", tmp_path / "keys")
    try:
        kept = await st.blobs.put(b"k" * (3 * SEGMENT))
        w = st.blobs.writer()
        await w.write(b"a" * (20 * SEGMENT))  # spills to a temporary file, never committed
        stray = tmp_path / "data" / "blobs" / "ab" / ("ab" + "0" * 30)
        stray.parent.mkdir(exist_ok=True)
        stray.write_bytes(b"left by a crash between rename and commit")
        assert await st.blobs.gc_orphans(datetime.now(UTC) - timedelta(hours=1)) == 0
        assert await st.blobs.gc_orphans(datetime.now(UTC) + timedelta(seconds=5)) == 2
        assert not stray.exists()
        assert await st.blobs.get(kept) == b"k" * (3 * SEGMENT)
        await w.abort()
    finally:
        await st.close()


async def test_closed_storage_refuses_work(tmp_path: Path) -> None:
    create_keyring(tmp_path / "keys")
    st = await open_sqlite(tmp_path / "data", tmp_path / "keys")
    await st.close()
    await st.close()  # idempotent
    with pytest.raises(StorageError):
        await st.accounts.list_accounts()


async def test_unreachable_postgres_is_one_clear_error(tmp_path: Path) -> None:
    create_keyring(tmp_path / "keys")
    with pytest.raises(StorageError, match="cannot connect to PostgreSQL"):
        await open_postgres(
            "postgresql://nobody@127.0.0.1:1/none", tmp_path / "keys", connect_timeout=1.0
        )


async def test_sqlite_writer_survives_cancelled_callers(tmp_path: Path) -> None:
    """A caller cancelled while its write waits in the queue (a client that hung up before the
    reply) must not kill the single writer thread: its job is skipped, later writes commit."""
    import threading

    from caducee.storage.sqlite.runner import SqliteRunner

    runner = SqliteRunner(tmp_path / "db.sqlite")
    release = threading.Event()
    try:
        await runner.exclusive(lambda c: c.execute("CREATE TABLE t (v INTEGER)"))
        blocker = asyncio.ensure_future(runner.exclusive(lambda c: release.wait(10)))
        await asyncio.sleep(0.05)  # the writer is now blocked inside the exclusive job

        def insert(v: int) -> object:
            return runner.exclusive(lambda c: c.execute("INSERT INTO t VALUES (?)", (v,)))

        waiting = [asyncio.ensure_future(insert(i)) for i in range(10)]
        await asyncio.sleep(0.05)
        for task in waiting[::2]:
            task.cancel()
        await asyncio.gather(*waiting[::2], return_exceptions=True)
        for _ in range(5):  # the cancellation reaches the thread-side futures via call_soon
            await asyncio.sleep(0)
        release.set()
        await blocker
        await asyncio.gather(*waiting, return_exceptions=True)
        async with asyncio.timeout(10):
            await runner.exclusive(lambda c: c.execute("INSERT INTO t VALUES (100)"))
        rows = await runner.exclusive(lambda c: c.execute("SELECT v FROM t").fetchall())
        assert sorted(v for (v,) in rows) == [1, 3, 5, 7, 9, 100]
    finally:
        release.set()
        await runner.close()


async def test_sqlite_small_reads_run_inline_big_ones_on_a_reader(tmp_path: Path) -> None:
    """A small read runs on the caller's thread; one over the step budget is interrupted and
    run again, to the same result, on a reader thread (the event loop is never held long)."""
    import threading

    from caducee.storage.sql.base import Op, Q
    from caducee.storage.sqlite.runner import SqliteRunner

    runner = SqliteRunner(tmp_path / "db.sqlite", inline_steps=20_000)
    threads: list[str] = []

    def count(limit: int) -> Op[int]:
        threads.append(threading.current_thread().name)
        rows = yield Q(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " SELECT COUNT(*) FROM n",
            (limit,),
        )
        return int(rows[0][0])

    try:
        assert await runner.read(lambda: count(10)) == 10
        assert threads == [threading.current_thread().name]
        assert (runner.inline_reads, runner.hopped_reads) == (1, 0)
        assert await runner.read(lambda: count(200_000)) == 200_000
        assert threads[1] == threading.current_thread().name  # tried here, interrupted
        assert threads[2].startswith("sqlite-reader")  # and done again on a reader
        assert (runner.inline_reads, runner.hopped_reads) == (1, 1)
        assert await runner.read(lambda: count(5)) == 5  # the connection is usable again
        assert runner.inline_reads == 2
    finally:
        await runner.close()


async def test_sqlite_inline_reads_off(tmp_path: Path) -> None:
    from caducee.storage.sql.base import Op, Q
    from caducee.storage.sqlite.runner import SqliteRunner

    def one() -> Op[int]:
        rows = yield Q("SELECT 1")
        return int(rows[0][0])

    runner = SqliteRunner(tmp_path / "db.sqlite", inline_steps=0)
    try:
        assert await runner.read(one) == 1
        assert (runner.inline_reads, runner.hopped_reads) == (0, 1)
    finally:
        await runner.close()


async def test_notifier_watch_calls_back_until_closed() -> None:
    """A watch (an IMAP session's) is called within the publisher's fan-out, for its BAL only,
    and not after close(); subscriptions of the same BAL still get the change."""
    hub = LocalNotifier()
    seen: list[int] = []
    w = hub.watch(7, seen.append)
    sub = hub.subscribe(7)
    await hub.publish(7, 3)
    await hub.publish(8, 4)
    assert seen == [3]  # at once: no task in between
    assert await asyncio.wait_for(sub.__anext__(), 1) == 3
    w.close()
    await hub.publish(7, 5)
    assert seen == [3]
    assert hub.subscriber_count() == 1
    await sub.aclose()
    assert hub.subscriber_count() == 0
