"""The SMTP servers on PostgreSQL too, and bounded memory while streaming a big message."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import pytest
from smtp_harness import Pki, RawClient, body_of, make_node

MSG = b"From: alice@b.test\r\nTo: bob@b.test\r\nSubject: pg\r\n\r\nbonjour\r\n"


@pytest.mark.postgres
async def test_relay_and_submission_on_postgresql(pki: Pki, tmp_path: Path, pg_dsn: str) -> None:
    node = await make_node(pki, tmp_path, pg_dsn=pg_dsn)
    try:

        def send() -> None:
            with node.relay_client() as c:
                assert c.sendmail("x@a.test", ["bob@b.test"], MSG) == {}
            with node.submission_client() as c:
                assert c.sendmail("alice@b.test", ["bob@b.test", "dr@c.test"], MSG) == {}

        await asyncio.to_thread(send)
        assert [body_of(m) for m in await node.folder_messages("bob@b.test")] == [MSG, MSG]
        assert len(await node.folder_messages("alice@b.test", "Sent")) == 1
        (item,) = await node.storage.queue.list()
        assert item.domain == "c.test"
    finally:
        await node.relay.stop()
        await node.submission.stop()
        await node.storage.close()


@pytest.mark.slow
async def test_streaming_a_big_message_keeps_memory_bounded(pki: Pki, tmp_path: Path) -> None:
    size = 24 * 1024 * 1024
    node = await make_node(pki, tmp_path, max_message_bytes=size + 1024 * 1024)
    line = b"x" * 76 + b"\r\n"
    block = line * (64 * 1024 // len(line))

    def talk() -> list[int]:
        c = RawClient(node.relay_addr)
        c.starttls(node.client_context(node.pki.peer))
        c.send(b"MAIL FROM:<x@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n")
        codes = c.codes(3)
        c.send(b"Subject: big\r\n\r\n")
        sent = 0
        while sent < size:  # generated on the fly: the client holds 64 KiB at a time
            c.send(block)
            sent += len(block)
        c.send(b".\r\n")
        codes += c.codes(1)
        c.close()
        return codes

    try:
        tracemalloc.start()
        tracemalloc.reset_peak()
        codes = await asyncio.to_thread(talk)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert codes == [250, 250, 354, 250]
        # 24 MiB went through; the server (and this client) held a few chunks at a time.
        assert peak < 8 * 1024 * 1024, peak
        (meta,) = [m for m in await node.folder_messages("bob@b.test")]
        assert len(meta) > size
    finally:
        await node.relay.stop()
        await node.submission.stop()
        await node.storage.close()
