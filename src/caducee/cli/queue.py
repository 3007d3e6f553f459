"""``caducee queue``: the outbound delivery queue of a node (list, retry now, drop)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from caducee.cli._node import add_config_arg, node_config, with_storage
from caducee.core.errors import NotFound
from caducee.core.model import AuditEvent, QueueItem, RecipientState
from caducee.storage.interfaces import Storage

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "queue", help="inspect and act on the delivery queue", description=__doc__
    )
    cmds = parser.add_subparsers(dest="queue_command", metavar="COMMAND", required=True)
    lst = cmds.add_parser("list", help="list queued items (one per message and domain)")
    add_config_arg(lst)
    lst.set_defaults(func=cmd_list)
    retry = cmds.add_parser(
        "retry",
        help="retry items now",
        description="Makes items due now; a running node picks them up within 10 s.",
    )
    add_config_arg(retry)
    retry.add_argument("ids", nargs="*", type=int, metavar="ID")
    retry.add_argument("--all", action="store_true", help="every item")
    retry.set_defaults(func=cmd_retry)
    drop = cmds.add_parser("drop", help="remove items without delivering them (no DSN)")
    add_config_arg(drop)
    drop.add_argument("ids", nargs="+", type=int, metavar="ID")
    drop.set_defaults(func=cmd_drop)


def _age(created: datetime) -> str:
    now = datetime.now(UTC)
    seconds = int(
        (now - (created if created.tzinfo else created.replace(tzinfo=UTC))).total_seconds()
    )
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _line(item: QueueItem) -> str:
    pending = sum(1 for r in item.recipients if r.state is RecipientState.PENDING)
    nxt = item.next_attempt.strftime("%Y-%m-%d %H:%M:%S")
    err = f"  {item.last_error[:80]}" if item.last_error else ""
    return (
        f"{item.item_id:>6}  {item.domain:<32}  {pending:>3}/{len(item.recipients):<3}"
        f"  {item.attempts:>3}  {_age(item.created):>5}  {nxt}{err}"
    )


def cmd_list(args: argparse.Namespace) -> int:
    cfg = node_config(args)
    items = with_storage(cfg, lambda s: s.queue.list())
    print(f"{'ID':>6}  {'DOMAIN':<32}  {'RCPT':<7}  {'TRY':>3}  {'AGE':>5}  NEXT ATTEMPT (UTC)")
    for item in items:
        print(_line(item))
    print(f"{len(items)} item(s)")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    cfg = node_config(args)

    async def action(storage: Storage) -> int:
        ids = [i.item_id for i in await storage.queue.list()] if args.all else list(args.ids)
        for item_id in ids:
            if await storage.queue.get(item_id) is None:
                raise NotFound(f"no queue item {item_id}")
            await storage.queue.retry_now(item_id)
        return len(ids)

    n = with_storage(cfg, action)
    print(f"{n} item(s) due now")
    return 0


def cmd_drop(args: argparse.Namespace) -> int:
    cfg = node_config(args)

    async def action(storage: Storage) -> None:
        for item_id in args.ids:
            item = await storage.queue.get(item_id)
            if item is None:
                raise NotFound(f"no queue item {item_id}")
            await storage.queue.finish(item_id)
            await storage.audit.record(
                AuditEvent(
                    "queue.dropped", "ok", "cli", item.domain, {"item": str(item_id)}, node=cfg.name
                )
            )

    with_storage(cfg, action)
    print(f"dropped {len(args.ids)} item(s)")
    return 0
