"""Single-flight folder reads shared by sessions (``SharedReads``): a session joins a read in
flight only when that read started after the change it was told about."""

from __future__ import annotations

import asyncio

from caducee.imap.cache import SharedReads


async def test_joins_only_reads_started_after_its_notification() -> None:
    shared = SharedReads()
    calls = 0
    gate = asyncio.Event()

    async def read() -> int:
        nonlocal calls
        calls += 1
        value = calls
        await gate.wait()
        return value

    seen = shared.mark()  # a session told of a change before any read started
    first = asyncio.ensure_future(shared.read("k", 0, read))
    await asyncio.sleep(0)
    joined = asyncio.ensure_future(shared.read("k", seen, read))  # read started after: shares
    await asyncio.sleep(0)
    late = shared.mark()  # told of a newer change while the first read is in flight
    own = asyncio.ensure_future(shared.read("k", late, read))  # must not share an older read
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(first, joined, own) == [1, 1, 2]
    assert calls == 2
    assert await shared.read("k", late, read) == 3  # nothing in flight any more


async def test_failure_reaches_every_reader() -> None:
    shared = SharedReads()

    async def boom() -> int:
        await asyncio.sleep(0)
        raise RuntimeError("storage down")

    results = await asyncio.gather(
        shared.read("k", 0, boom), shared.read("k", 0, boom), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
