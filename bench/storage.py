"""Storage micro-benchmark: deliveries of 10 KB messages per second with N concurrent callers.

Each delivery is what the SMTP relay does for one accepted message: ``blobs.put`` (encrypt;
made durable with the delivery, or on its own with ``--durable-blob``), then
``messages.deliver`` (UID/MODSEQ, quota, dedup key; durable), then ``audit.record``. Runs on
SQLite (temporary directory) and PostgreSQL (a temporary database on the server of ``--pg``),
prints figures and the exact command. Not a test.

    python bench/storage.py --messages 3000 --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from caducee.core.model import AuditEvent, MailboxType, QueueRecipient
from caducee.storage import open_postgres, open_sqlite
from caducee.storage.interfaces import Storage
from caducee.storage.keyring import create_keyring


async def _run(st: Storage, n: int, conc: int, size: int, blob_durable: bool) -> dict[str, float]:
    boxes = [
        await st.accounts.create_mailbox(f"user{i}@bench.test", MailboxType.PER, f"81{i:08d}")
        for i in range(conc)
    ]
    body = b"Subject: bench\r\n\r\n" + os.urandom(size // 2).hex().encode()[: size - 18]
    latencies: list[float] = []
    next_i = 0

    async def worker(w: int) -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            t0 = time.perf_counter()
            ref = await st.blobs.put(body, durable=blob_durable)
            await st.messages.deliver(ref, [boxes[i % len(boxes)].mailbox_id], dedup_key=f"m{i}")
            await st.audit.record(AuditEvent("smtp.relay.accepted", "ok", "bench", f"m{i}"))
            latencies.append(time.perf_counter() - t0)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(conc)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    latencies.sort()
    # Queue: enqueue with the same concurrency (what submission does for remote recipients).
    ref = await st.blobs.put(body)
    exp_n = n // 2
    done = 0

    async def enq() -> None:
        nonlocal done
        from datetime import UTC, datetime, timedelta

        exp = datetime.now(UTC) + timedelta(days=1)
        while done < exp_n:
            done += 1
            await st.queue.enqueue("a@bench.test", [QueueRecipient("b@x.test")], ref, "x.test",
                                   expires=exp)  # fmt: skip

    q0 = time.perf_counter()
    await asyncio.gather(*(enq() for _ in range(conc)))
    qwall = time.perf_counter() - q0
    return {
        "deliveries_per_s": n / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "cpu_ms_per_delivery": cpu * 1000 / n,
        "enqueues_per_s": exp_n / qwall,
    }


async def bench_sqlite(n: int, conc: int, size: int, durable: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        create_keyring(Path(d) / "keys")
        st = await open_sqlite(Path(d) / "data", Path(d) / "keys")
        try:
            res = await _run(st, n, conc, size, durable)
            runner = st.runner  # type: ignore[attr-defined]
            res["writes_per_commit"] = runner.batched_jobs / max(1, runner.batches)
            return res
        finally:
            await st.close()


async def bench_postgres(
    n: int, conc: int, size: int, admin: str, durable: bool
) -> dict[str, float]:
    name = f"caducee_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory() as d:
            create_keyring(Path(d) / "keys")
            dsn = admin.rsplit("/", 1)[0] + "/" + name
            st = await open_postgres(dsn, Path(d) / "keys", pool_size=min(conc, 20))
            try:
                return await _run(st, n, conc, size, durable)
            finally:
                await st.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--size", type=int, default=10_240)
    ap.add_argument(
        "--durable-blob",
        action="store_true",
        help="commit each blob durably on its own (default: durable with its delivery)",
    )
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    print("command: python", shlex.join(sys.argv))
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
          f"Python {platform.python_version()}")  # fmt: skip
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    for engine in engines:
        if engine == "sqlite":
            res = asyncio.run(
                bench_sqlite(args.messages, args.concurrency, args.size, args.durable_blob)
            )
        else:
            res = asyncio.run(
                bench_postgres(
                    args.messages, args.concurrency, args.size, args.pg, args.durable_blob
                )
            )
        figures = ", ".join(f"{k}={v:.1f}" for k, v in res.items())
        print(f"{engine}: {args.messages} x {args.size} B, {args.concurrency} callers: {figures}")


if __name__ == "__main__":
    main()
