"""Notifications the operator sends itself: DSN delivery and the MSSanté "accusé de réception".

A DSN (RFC 3464, built by ``smtp.dsn``) for a local sender goes straight into its BAL with a
dedup key (a retry after a crash never stores it twice); for a remote sender it is queued
outbound with the null reverse-path (RFC 3461 §6.2). ``delivery_receipt`` is the relay's and
submission's ``on_delivered`` hook: NOTIFY=SUCCESS on a local delivery (RFC 3461 §5.2.2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from caducee.config.model import NodeConfig
from caducee.core.errors import QuotaExceeded
from caducee.core.model import BlobRef, QueueRecipient
from caducee.smtp.dsn import RecipientStatus, build_dsn, header_block, should_notify
from caducee.storage.interfaces import Storage

__all__ = ["deliver_notification", "delivery_receipt", "read_headers"]

log = logging.getLogger(__name__)


async def read_headers(storage: Storage, blob: BlobRef, limit: int = 256 * 1024) -> bytes:
    """The header section of a stored message, reading no more of it than needed."""
    head = bytearray()
    async for chunk in storage.blobs.stream(blob):
        head += chunk
        if b"\r\n\r\n" in head or b"\n\n" in head or len(head) > limit:
            break
    return header_block(bytes(head))


async def delivery_receipt(
    cfg: NodeConfig,
    storage: Storage,
    *,
    queue_id: str,
    sender: str,
    recipients: list[tuple[str, frozenset[str], str | None]],
    blob: BlobRef,
    envid: str | None,
    on_queued: Callable[[], None] | None = None,
) -> None:
    """The MSSanté "accusé de réception": a success DSN (Action: delivered, RFC 3464) for the
    local recipients that asked NOTIFY=SUCCESS, sent once the message is in their BAL.

    ``recipients``: (address, NOTIFY, ORCPT). Deduplicated by ``queue_id`` for local senders.
    """
    if not sender:
        return
    now = datetime.now(UTC)
    statuses = [
        RecipientStatus(addr, "delivered", "2.0.0", orcpt, None, None, now)
        for addr, notify, orcpt in recipients
        if should_notify(notify, "delivered")
    ]
    if not statuses:
        return
    raw = build_dsn(
        reporting_mta=cfg.smtp.hostname,
        to=sender,
        recipients=statuses,
        original=await read_headers(storage, blob),
        ret="HDRS",
        envid=envid,
        arrival_date=now,
        now=now,
    )
    queued = await deliver_notification(cfg, storage, sender, raw, f"dsn:delivered:{queue_id}")
    if queued and on_queued is not None:
        on_queued()


async def deliver_notification(
    cfg: NodeConfig, storage: Storage, to: str, raw: bytes, dedup_key: str
) -> bool:
    """Delivers a DSN to ``to``: into the local BAL (deduplicated), else queued outbound with
    the null reverse-path (RFC 3461 §6.2). True when it was queued (wake the worker)."""
    domain = to.rpartition("@")[2].lower()
    if domain in {d.lower() for d in cfg.domains}:
        mailbox = await storage.accounts.get_mailbox(to)
        if mailbox is None:
            log.info("outbound: DSN for a mailbox that no longer exists dropped")
            return False
        blob = await storage.blobs.put(raw)
        try:
            await storage.messages.deliver(blob, [mailbox.mailbox_id], dedup_key=dedup_key)
        except QuotaExceeded:
            log.warning("outbound: DSN not delivered, mailbox %s over quota", mailbox.mailbox_id)
            await storage.blobs.delete(blob)
        return False
    blob = await storage.blobs.put(raw)
    await storage.queue.enqueue(
        "",
        [QueueRecipient(to, frozenset({"NEVER"}))],
        blob,
        domain,
        expires=datetime.now(UTC) + timedelta(seconds=cfg.smtp.queue_lifetime_seconds),
    )
    return True
