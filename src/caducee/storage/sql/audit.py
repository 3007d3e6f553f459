"""Append-only audit trail (``AuditStore``). Never holds bodies, secrets or full INS."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from caducee.core.model import AuditEvent
from caducee.storage.sql.base import Op, Q, Row, Runner, from_us, to_us

__all__ = ["SqlAuditStore", "record_op"]


def record_op(event: AuditEvent, when: int, node: str, *, only: bool = True) -> Op[None]:
    """Inserts one event; ``only=False`` inside a larger operation (one transaction)."""
    yield Q(
        "INSERT INTO audit (time, kind, outcome, actor, target, details, node)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (when, event.kind, event.outcome, event.actor, event.target,
         json.dumps(dict(event.details), sort_keys=True, ensure_ascii=False), node),
        only=only,
    )  # fmt: skip


def _event(r: Row) -> AuditEvent:
    return AuditEvent(
        kind=r[0],
        outcome=r[1],
        actor=r[2],
        target=r[3],
        details=json.loads(r[4]),
        time=from_us(int(r[5])),
        node=r[6],
    )


def _query(
    kind_prefix: str | None, target: str | None, since: int | None, limit: int
) -> Op[list[AuditEvent]]:
    where: list[str] = []
    args: list[object] = []
    if kind_prefix:
        where.append("substr(kind, 1, ?) = ?")
        args += [len(kind_prefix), kind_prefix]
    if target is not None:
        where.append("target = ?")
        args.append(target)
    if since is not None:
        where.append("time >= ?")
        args.append(since)
    sql = "SELECT kind, outcome, actor, target, details, time, node FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = yield Q(sql + " ORDER BY event_id DESC LIMIT ?", (*args, max(0, limit)), only=True)
    return [_event(r) for r in rows]


class SqlAuditStore:
    def __init__(self, runner: Runner, node: str = "") -> None:
        self._run = runner
        self._node = node

    async def record(self, event: AuditEvent) -> None:
        when = to_us(event.time or datetime.now(UTC))
        node = event.node or self._node
        await self._run.write(lambda: record_op(event, when, node))

    async def query(
        self,
        *,
        kind_prefix: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        s = None if since is None else to_us(since)
        return await self._run.read(lambda: _query(kind_prefix, target, s, limit))
