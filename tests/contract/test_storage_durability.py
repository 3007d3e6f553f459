"""Concurrency and crash safety: group commit under load, claims never shared, a SIGKILLed
writer loses nothing it acknowledged."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from caducee.core.model import Mailbox, QueueRecipient
from caducee.storage.interfaces import Storage

Opener = Callable[[], Awaitable[Storage]]
ROOT = Path(__file__).resolve().parents[2]


async def test_concurrent_delivers_get_distinct_contiguous_uids(
    storage: Storage, mailbox: Mailbox, engine: str
) -> None:
    async def one(i: int) -> int:
        ref = await storage.blobs.put(b"m" * (100 + i))
        (msg,) = await storage.messages.deliver(ref, [mailbox.mailbox_id])
        return msg.uid

    uids = await asyncio.gather(*(one(i) for i in range(200)))
    assert sorted(uids) == list(range(1, 201))
    inbox = await storage.messages.get_folder(mailbox.mailbox_id, "INBOX")
    assert inbox is not None and inbox.message_count == 200 and inbox.uidnext == 201
    mb = await storage.accounts.get_mailbox_by_id(mailbox.mailbox_id)
    assert mb is not None and mb.used_bytes == sum(100 + i for i in range(200))
    if engine == "sqlite":
        runner = storage.runner  # type: ignore[attr-defined]
        # Group commit: far fewer commits than writes.
        assert runner.batches < runner.batched_jobs / 2


async def test_concurrent_dedup_stores_once(storage: Storage, mailbox: Mailbox) -> None:
    ref = await storage.blobs.put(b"same message")
    got = await asyncio.gather(
        *(storage.messages.deliver(ref, [mailbox.mailbox_id], dedup_key="once") for _ in range(20))
    )
    assert sum(len(g) for g in got) == 1


async def test_two_claimers_never_share_an_item(opener: Opener) -> None:
    a, b = await opener(), await opener()  # two nodes on the same store
    try:
        ref = await a.blobs.put(b"q")
        exp = datetime.now(UTC) + timedelta(days=1)
        ids = await asyncio.gather(
            *(a.queue.enqueue("s@x.test", [QueueRecipient(f"r{i}@y.test")], ref, "y.test",
                              expires=exp) for i in range(120))
        )  # fmt: skip
        got: dict[str, list[int]] = {"a": [], "b": []}

        async def claimer(name: str, st: Storage) -> None:
            while True:
                items = await st.queue.claim(name, limit=7, lease_seconds=300)
                if not items:
                    return
                got[name] += [i.item_id for i in items]

        await asyncio.gather(*(claimer(n, s) for n, s in (("a", a), ("b", b)) for _ in range(3)))
        assert not set(got["a"]) & set(got["b"])
        assert len(got["a"]) + len(got["b"]) == len(set(got["a"] + got["b"]))
        assert sorted(got["a"] + got["b"]) == sorted(ids)
    finally:
        await a.close()
        await b.close()


async def test_change_reaches_another_node(opener: Opener, mailbox: Mailbox) -> None:
    other = await opener()
    try:
        sub = other.notifier.subscribe(mailbox.mailbox_id)
        first = await opener()
        try:
            ref = await first.blobs.put(b"x")
            (msg,) = await first.messages.deliver(ref, [mailbox.mailbox_id])
        finally:
            await first.close()
        # On SQLite the fan-out is in-process only: nodes sharing a file are not supported.
        if type(other).__name__ == "PostgresStorage":
            assert await asyncio.wait_for(anext(sub), 5) == msg.folder_id
        await sub.aclose()
    finally:
        await other.close()


@pytest.mark.slow
async def test_sigkilled_writer_loses_nothing_acknowledged(
    opener: Opener, mailbox: Mailbox, engine: str, request: pytest.FixtureRequest,
    tmp_path: Path, keyring: Path,
) -> None:  # fmt: skip
    target = str(tmp_path / "data") if engine == "sqlite" else request.getfixturevalue("pg_dsn")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("crash_writer.py")), engine, target,
         str(keyring), str(mailbox.mailbox_id)],
        stdout=subprocess.PIPE, env=env,
    )  # fmt: skip
    acked: dict[int, int] = {}
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while len(acked) < 150 and time.monotonic() < deadline:
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line:
            break
        uid, size = map(int, line.split())
        acked[uid] = size
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert len(acked) >= 150, "the writer did not get going"
    st = await opener()
    try:
        inbox = await st.messages.get_folder(mailbox.mailbox_id, "INBOX")
        assert inbox is not None
        stored = {m.uid: m for m in await st.messages.list_messages(inbox.folder_id)}
        for uid, size in acked.items():
            assert uid in stored and stored[uid].size == size
            body = await st.blobs.get(stored[uid].blob)
            assert body.startswith(b"Subject: crash ") and len(body) == size
    finally:
        await st.close()


async def test_listener_reconnects_and_asks_for_resync(
    storage: Storage, mailbox: Mailbox, engine: str, request: pytest.FixtureRequest
) -> None:
    if engine != "postgres":
        pytest.skip("LISTEN/NOTIFY is the PostgreSQL engine's cross-node fan-out")
    import psycopg

    sub = storage.notifier.subscribe(mailbox.mailbox_id)
    with psycopg.connect(request.getfixturevalue("pg_dsn"), autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    assert await asyncio.wait_for(anext(sub), 10) == 0
    await sub.aclose()
