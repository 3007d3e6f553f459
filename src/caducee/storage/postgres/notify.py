"""Change fan-out across nodes sharing PostgreSQL (LISTEN/NOTIFY on ``caducee_changes``).

Local subscribers are woken at once by ``publish``; other nodes get the change through NOTIFY
(payload ``<instance>:<mailbox id>:<folder id>``, our own instance's echoes ignored). The
listener holds one dedicated connection and reconnects after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from caducee.storage.notify import LocalNotifier

__all__ = ["CHANNEL", "PgNotifier"]

CHANNEL = "caducee_changes"
log = logging.getLogger(__name__)


class PgNotifier(LocalNotifier):
    def __init__(
        self, pool: AsyncConnectionPool[Any], conninfo: str, conn_kwargs: dict[str, Any]
    ) -> None:
        super().__init__()
        self._pool = pool
        self._conninfo = conninfo
        self._kwargs = conn_kwargs
        self._instance = secrets.token_hex(6)
        self._task: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._outbox: dict[str, None] = {}
        self._ready = asyncio.Event()

    async def publish(self, mailbox_id: int, folder_id: int) -> None:
        """Wakes local subscribers now; other nodes get it from a background sender that
        batches whatever is pending into one statement (the caller never waits for it)."""
        self.fan_out(mailbox_id, folder_id)
        self._outbox[f"{self._instance}:{mailbox_id}:{folder_id}"] = None
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="caducee-pg-notify")

    async def _send(self) -> None:
        while self._outbox:
            payloads = list(self._outbox)[:200]
            for p in payloads:
                del self._outbox[p]
            calls = ", ".join(["pg_notify(%s, %s)"] * len(payloads))
            args = [x for p in payloads for x in (CHANNEL, p)]
            try:
                async with self._pool.connection() as conn:
                    await conn.execute(f"SELECT {calls}".encode(), args)
            except psycopg.Error as exc:  # the change is committed; only a wake-up is lost
                log.warning("NOTIFY failed: %s", type(exc).__name__)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="caducee-pg-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 10)

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, **self._kwargs
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if self._ready.is_set():
                        # Changes may have been missed while disconnected: tell every local
                        # subscriber to resynchronise (folder id 0).
                        for mailbox_id in list(self._subs):
                            self.fan_out(mailbox_id, 0)
                    self._ready.set()
                    delay = 0.1
                    async for note in conn.notifies():
                        self._deliver(note.payload)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                log.warning("LISTEN connection lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _deliver(self, payload: str) -> None:
        try:
            instance, mailbox, folder = payload.split(":")
            if instance != self._instance:
                self.fan_out(int(mailbox), int(folder))
        except ValueError:
            log.warning("ignored malformed change notification")

    async def close(self) -> None:
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._sender), 5)
            self._sender = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
