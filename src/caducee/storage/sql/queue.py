"""The durable outbound queue (``QueueStore``): one item per (message, destination domain).

Claims take a lease (``lease_node``, ``lease_until``): an item leased by a crashed node becomes
due again when its lease ends, so nothing queued is ever lost. On PostgreSQL the claim uses
``FOR UPDATE SKIP LOCKED``, so several nodes claim concurrently without ever getting the same
item; on SQLite the single writer serialises claims.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from caducee.core.errors import NotFound
from caducee.core.model import AuditEvent, BlobRef, QueueItem, QueueRecipient, RecipientState
from caducee.storage.sql.audit import record_op
from caducee.storage.sql.base import Op, Q, Row, Runner, from_us, now_us, placeholders, to_us
from caducee.storage.sql.messages import gc_blobs

__all__ = ["SqlQueueStore", "enqueue_op"]

_ITEM_COLS = (
    "item_id, sender, blob_id, key_id, size, domain, created, next_attempt, expires,"
    " attempts, envid, ret, last_error"
)


def enqueue_op(
    sender: str,
    recipients: Sequence[QueueRecipient],
    blob: BlobRef,
    domain: str,
    expires: int,
    envid: str | None,
    ret: str | None,
) -> Op[int]:
    now = now_us()
    rows = yield Q(
        "INSERT INTO queue_items (sender, blob_id, key_id, size, domain, created, next_attempt,"
        " expires, envid, ret) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING item_id",
        (sender, blob.blob_id, blob.key_id, blob.size, domain.lower(), now, now, expires,
         envid, ret),
    )  # fmt: skip
    item_id = int(rows[0][0])
    yield Q(
        "INSERT INTO queue_recipients (item_id, idx, address, notify, orcpt, state, diagnostic)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                item_id,
                i,
                r.address,
                ",".join(sorted(r.notify)),
                r.orcpt,
                r.state.value,
                r.diagnostic,
            )
            for i, r in enumerate(recipients)
        ],
        many=True,
    )
    return item_id


def _items(rows: list[Row]) -> Op[list[QueueItem]]:
    if not rows:
        return []
    ids = [int(r[0]) for r in rows]
    rcpts: dict[int, list[QueueRecipient]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        got = yield Q(
            "SELECT item_id, address, notify, orcpt, state, diagnostic FROM queue_recipients"
            f" WHERE item_id IN ({placeholders(len(part))}) ORDER BY item_id, idx",
            part,
        )
        for g in got:
            notify = frozenset(g[2].split(",")) if g[2] else frozenset()
            rcpts[int(g[0])].append(QueueRecipient(g[1], notify, g[3], RecipientState(g[4]), g[5]))
    return [
        QueueItem(
            item_id=int(r[0]),
            sender=r[1],
            recipients=tuple(rcpts[int(r[0])]),
            blob=BlobRef(r[2], r[3], int(r[4])),
            domain=r[5],
            created=from_us(int(r[6])),
            next_attempt=from_us(int(r[7])),
            expires=from_us(int(r[8])),
            attempts=int(r[9]),
            envid=r[10],
            ret=r[11],
            last_error=r[12],
        )
        for r in rows
    ]


def _claim(node: str, limit: int, lease_us: int, skip_locked: bool) -> Op[list[QueueItem]]:
    now = now_us()
    lock = " FOR UPDATE SKIP LOCKED" if skip_locked else ""
    rows = yield Q(
        "UPDATE queue_items SET lease_node = ?, lease_until = ? WHERE item_id IN"
        " (SELECT item_id FROM queue_items WHERE next_attempt <= ? AND lease_until <= ?"
        f" ORDER BY next_attempt, item_id LIMIT ?{lock}) RETURNING {_ITEM_COLS}",
        (node, now + lease_us, now, now, limit),
    )
    rows.sort(key=lambda r: (int(r[7]), int(r[0])))
    return (yield from _items(rows))


def _get(item_id: int) -> Op[QueueItem | None]:
    rows = yield Q(f"SELECT {_ITEM_COLS} FROM queue_items WHERE item_id = ?", (item_id,))
    items = yield from _items(rows)
    return items[0] if items else None


def _list() -> Op[list[QueueItem]]:
    rows = yield Q(f"SELECT {_ITEM_COLS} FROM queue_items ORDER BY next_attempt, item_id")
    return (yield from _items(rows))


def _update(sql: str, params: tuple[object, ...], item_id: int) -> Op[None]:
    rows = yield Q(sql + " RETURNING item_id", params, only=True)
    if not rows:
        raise NotFound(f"no queue item {item_id}")


def _set_state(item_id: int, address: str, state: RecipientState, diagnostic: str) -> Op[None]:
    rows = yield Q(
        "UPDATE queue_recipients SET state = ?, diagnostic = ? WHERE item_id = ? AND address = ?"
        " RETURNING idx",
        (state.value, diagnostic, item_id, address),
        only=True,
    )
    if not rows:
        raise NotFound(f"no recipient {address!r} in queue item {item_id}")


def _finish(item_id: int, audit: list[tuple[AuditEvent, int]], node: str) -> Op[list[str]]:
    rows = yield Q("DELETE FROM queue_items WHERE item_id = ? RETURNING blob_id", (item_id,))
    if not rows:
        raise NotFound(f"no queue item {item_id}")
    yield Q("DELETE FROM queue_recipients WHERE item_id = ?", (item_id,))
    for event, when in audit:
        yield from record_op(event, when, event.node or node, only=False)
    # The blob goes when nothing references it any more (it may be shared with the Sent copy,
    # local deliveries or the items of other domains).
    return (yield from gc_blobs([rows[0][0]]))


class SqlQueueStore:
    def __init__(
        self,
        runner: Runner,
        on_blobs_freed: Callable[[list[str]], Awaitable[None]],
        node: str = "",
    ) -> None:
        self._run = runner
        self._freed = on_blobs_freed
        self._node = node

    async def enqueue(
        self,
        sender: str,
        recipients: Sequence[QueueRecipient],
        blob: BlobRef,
        domain: str,
        *,
        expires: datetime,
        envid: str | None = None,
        ret: str | None = None,
    ) -> int:
        rc = list(recipients)
        exp = to_us(expires)
        return await self._run.write(lambda: enqueue_op(sender, rc, blob, domain, exp, envid, ret))

    async def claim(self, node: str, *, limit: int, lease_seconds: float) -> list[QueueItem]:
        skip = self._run.dialect == "postgres"
        lease = int(lease_seconds * 1_000_000)
        return await self._run.write(lambda: _claim(node, limit, lease, skip))

    async def set_recipient_state(
        self, item_id: int, address: str, state: RecipientState, diagnostic: str = ""
    ) -> None:
        await self._run.write(lambda: _set_state(item_id, address, state, diagnostic))

    async def reschedule(self, item_id: int, next_attempt: datetime, error: str) -> None:
        """Counts an attempt, records ``error`` and releases the lease until ``next_attempt``."""
        sql = (
            "UPDATE queue_items SET next_attempt = ?, last_error = ?, attempts = attempts + 1,"
            " lease_node = NULL, lease_until = 0 WHERE item_id = ?"
        )
        args = (to_us(next_attempt), error[:1000], item_id)
        await self._run.write(lambda: _update(sql, args, item_id))

    async def release(self, item_id: int) -> None:
        """Gives the lease back without counting an attempt (e.g. on shutdown)."""
        sql = "UPDATE queue_items SET lease_node = NULL, lease_until = 0 WHERE item_id = ?"
        await self._run.write(lambda: _update(sql, (item_id,), item_id))

    async def release_node(self, node: str) -> int:
        """Gives back every lease held by ``node``: at start-up, its items from a previous
        life (crash) are due again at once. Node names are unique among nodes sharing a DB."""
        sql = (
            "UPDATE queue_items SET lease_node = NULL, lease_until = 0 WHERE lease_node = ?"
            " RETURNING item_id"
        )

        def op() -> Op[int]:
            rows = yield Q(sql, (node,))
            return len(rows)

        return await self._run.write(op)

    async def finish(self, item_id: int, *, audit: Sequence[AuditEvent] = ()) -> None:
        events = [(e, to_us(e.time or datetime.now(UTC))) for e in audit]
        freed = await self._run.write(lambda: _finish(item_id, events, self._node))
        await self._freed(freed)

    async def get(self, item_id: int) -> QueueItem | None:
        return await self._run.read(lambda: _get(item_id))

    async def retry_now(self, item_id: int) -> None:
        sql = (
            "UPDATE queue_items SET next_attempt = ?, lease_node = NULL, lease_until = 0"
            " WHERE item_id = ?"
        )
        args = (now_us(), item_id)
        await self._run.write(lambda: _update(sql, args, item_id))

    async def list(self) -> builtins.list[QueueItem]:
        return await self._run.read(_list)
