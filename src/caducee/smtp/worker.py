"""The outbound delivery worker: from the durable queue to the peer operators' relays.

For each claimed queue item (one per message and destination domain): the domain must be in
the liste blanche (mssante-notes §1.3), the route comes from the sandbox table or MX, the
session is TLS with our client certificate and the peer's certificate DN must be listed for the
domain (``TrustPolicy.check_outbound``). Sessions are reused per destination (several messages
per session). 4xx replies and connection failures are retried with exponential backoff until
the item's lifetime ends; permanent failures and expiry produce a DSN (RFC 3464) to the sender,
as do successes when NOTIFY=SUCCESS asked for one and the peer does not do DSN itself.

Crash safety: an item is finished only after the peer's 250 (and after its DSNs are stored);
a crash before that re-sends it after the lease, and the receiving side deduplicates; DSNs to
local senders are delivered with dedup keys, so a retry never stores one twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from caducee.config.model import NodeConfig
from caducee.core.errors import CaduceeError
from caducee.core.model import AuditEvent, QueueItem, QueueRecipient, RecipientState
from caducee.smtp.dsn import RecipientStatus, build_dsn, should_notify
from caducee.smtp.outbound import OutboundSession, PeerError, Reply
from caducee.smtp.receipts import deliver_notification, read_headers
from caducee.smtp.routing import RouteError, Router
from caducee.storage.interfaces import Storage

__all__ = [
    "OutboundPolicy",
    "OutboundWorker",
    "PeerVerdictLike",
    "WorkerSettings",
]

log = logging.getLogger(__name__)

_DELAY_MARK = "[delay-dsn-sent] "
_FULL_RETURN_LIMIT = 10 * 1024 * 1024


class PeerVerdictLike(Protocol):
    @property
    def accepted(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def subject_dn(self) -> str | None: ...


class OutboundPolicy(Protocol):
    """What the worker needs of ``caducee.trust.policy.TrustPolicy``."""

    def is_listed(self, domain: str) -> bool: ...

    def client_context(self) -> ssl.SSLContext: ...

    def check_outbound(self, peer_cert_der: bytes, rcpt_domain: str) -> PeerVerdictLike: ...


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    batch: int = 100  # items claimed at once
    max_inflight: int = 400  # items held in memory (claimed, not finished)
    lease_seconds: float = 300.0
    connections_per_domain: int = 20  # as Postfix default_destination_concurrency_limit
    coalesce_seconds: float = 0.002  # after a wake, before claiming
    idle_seconds: float = 5.0  # an idle session is kept this long for the next message
    timeout: float = 60.0  # connect, TLS handshake, each reply
    poll_seconds: float = 10.0  # re-scan: items queued by other nodes or the CLI, lost wakes
    delay_notice_seconds: float = 4 * 3600.0  # NOTIFY=DELAY notice after this long


class _DestinationDown(Exception):
    """The destination cannot be reached at all (route, connection, TLS, certificate)."""

    def __init__(self, reason: str, *, permanent: bool = False, status: str = "4.4.1") -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.status = status


@dataclass
class _Destination:
    domain: str
    items: deque[QueueItem] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    workers: int = 0
    down_until: float = 0.0
    down_reason: str = ""


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class OutboundWorker:
    """Delivers the queue. ``wake()`` is the ``on_queued`` hook of the SMTP servers."""

    def __init__(
        self,
        cfg: NodeConfig,
        storage: Storage,
        policy: OutboundPolicy,
        *,
        settings: WorkerSettings | None = None,
        router: Router | None = None,
        node: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._cfg = cfg
        self._storage = storage
        self._policy = policy
        self._settings = settings or WorkerSettings()
        self._router = router or Router(cfg.trust.routes)
        self._node = node or cfg.name
        self._now = clock or (lambda: datetime.now(UTC))
        self._wake = asyncio.Event()
        self._dests: dict[str, _Destination] = {}
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_due: float | None = None
        self.delivered = 0  # counters, for tests and the benchmark
        self.attempts = 0

    # -- life cycle -------------------------------------------------------------------------

    @property
    def router(self) -> Router:
        return self._router

    def wake(self) -> None:
        """Something was queued: look at the queue now."""
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._main = asyncio.create_task(self._run(), name=f"outbound-{self._node}")

    async def stop(self) -> None:
        """Stops claiming, lets in-flight transactions end briefly, closes sessions.

        Items not finished stay in the queue (their lease expires; another run takes them)."""
        self._stopping = True
        self._wake.set()
        for dest in self._dests.values():
            dest.arrived.set()
        if self._main is not None:
            # Not cancelled mid-claim: the loop sees ``_stopping`` and ends by itself.
            done, _ = await asyncio.wait([self._main], timeout=10.0)
            if not done:
                self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=5.0)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
        # Items claimed but not started: due again at once for the next run.
        for dest in self._dests.values():
            while dest.items:
                item = dest.items.popleft()
                with contextlib.suppress(CaduceeError):
                    await self._storage.queue.release(item.item_id)

    async def _run(self) -> None:
        try:
            released = await self._storage.queue.release_node(self._node)
            if released:
                log.info("outbound: %d item(s) leased before a restart are due again", released)
        except CaduceeError as exc:
            log.warning("outbound: releasing old leases failed: %s", exc)
        await self._scan_next_due()
        while not self._stopping:
            self._wake.clear()
            # Let the enqueues of concurrent submissions land, so one claim takes them all.
            await asyncio.sleep(self._settings.coalesce_seconds)
            claimed = 0
            try:
                claimed = await self._claim_and_dispatch()
            except CaduceeError as exc:
                log.warning("outbound: claiming the queue failed: %s", exc)
            if claimed >= self._settings.batch and self._inflight < self._settings.max_inflight:
                continue
            delay = self._settings.poll_seconds
            if self._next_due is not None:
                delay = min(delay, max(0.0, self._next_due - time.monotonic()))
                if delay <= 0.0:
                    self._next_due = None
                    delay = 0.01
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _scan_next_due(self) -> None:
        try:
            items = await self._storage.queue.list()
        except CaduceeError as exc:
            log.warning("outbound: listing the queue failed: %s", exc)
            return
        now = self._now()
        for item in items:
            self._note_due(_aware(item.next_attempt), now)

    def _note_due(self, when: datetime, now: datetime) -> None:
        due = time.monotonic() + max(0.0, (when - now).total_seconds())
        if self._next_due is None or due < self._next_due:
            self._next_due = due
            self._wake.set()  # the main loop may be waiting longer: let it recompute

    async def _claim_and_dispatch(self) -> int:
        room = self._settings.max_inflight - self._inflight
        if room <= 0:
            return 0
        items = await self._storage.queue.claim(
            self._node,
            limit=min(room, self._settings.batch),
            lease_seconds=self._settings.lease_seconds,
        )
        for item in items:
            self._inflight += 1
            dest = self._dests.get(item.domain)
            if dest is None:
                dest = self._dests[item.domain] = _Destination(item.domain)
            dest.items.append(item)
            dest.arrived.set()
            wanted = min(self._settings.connections_per_domain, len(dest.items))
            if dest.workers < wanted:
                dest.workers += 1
                task = asyncio.create_task(self._destination_worker(dest))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return len(items)

    def _done(self) -> None:
        self._inflight -= 1
        self._wake.set()

    # -- per destination --------------------------------------------------------------------

    async def _destination_worker(self, dest: _Destination) -> None:
        session: OutboundSession | None = None
        try:
            while not self._stopping:
                if not dest.items:
                    dest.arrived.clear()
                    try:
                        await asyncio.wait_for(dest.arrived.wait(), self._settings.idle_seconds)
                    except TimeoutError:
                        if dest.items:
                            continue
                        break
                    continue
                item = dest.items.popleft()
                try:
                    if time.monotonic() < dest.down_until:
                        raise _DestinationDown(dest.down_reason)
                    if session is None or session.broken:
                        if session is not None:
                            session.abort()
                        session = None
                        session = await self._open(dest.domain)
                    await self._deliver(session, item)
                except _DestinationDown as down:
                    if not down.permanent:
                        dest.down_until = time.monotonic() + min(
                            self._settings.timeout, self._cfg.smtp.retry_base_seconds
                        )
                        dest.down_reason = str(down)
                    await self._destination_failed(item, down)
                except PeerError as exc:
                    # The session broke mid-transaction: outcome unknown, retry later (the
                    # receiving operator deduplicates a message it did store).
                    await self._temporary(item, list(_pending(item)), f"{exc}", "4.4.2")
                except CaduceeError as exc:
                    log.warning("outbound: item %s: %s", item.item_id, exc)
                except Exception:
                    # A bug must not stop the destination: the item stays leased and is
                    # retried after its lease; the next items go on.
                    log.exception("outbound: item %s failed unexpectedly", item.item_id)
                    if session is not None:
                        session.abort()
                        session = None
                finally:
                    self._done()
        except Exception:
            log.exception("outbound: destination worker for %s crashed", dest.domain)
        finally:
            dest.workers -= 1
            if session is not None:
                await session.quit()

    async def _open(self, domain: str) -> OutboundSession:
        if not self._policy.is_listed(domain):
            raise _DestinationDown(
                f"domain {domain} is not in the liste blanche", permanent=True, status="5.7.1"
            )
        try:
            hosts = await self._router.destinations(domain)
        except RouteError as exc:
            raise _DestinationDown(str(exc), permanent=exc.permanent, status=exc.status) from exc
        last = f"no route to {domain}"
        for host, port in hosts:
            try:
                session = await OutboundSession.connect(
                    host,
                    port,
                    ssl_context=self._policy.client_context(),
                    helo_name=self._cfg.smtp.hostname,
                    timeout=self._settings.timeout,
                )
            except ssl.SSLError as exc:
                last = f"TLS with {host}:{port} failed: {_describe_tls(self._policy, exc)}"
                await self._audit("smtp.outbound.refused", "refused", domain, {"reason": last})
                continue
            except PeerError as exc:
                last = str(exc)
                continue
            verdict = self._policy.check_outbound(session.peer_cert_der or b"", domain)
            if not verdict.accepted:
                session.abort()
                last = f"peer {host}:{port} refused: {verdict.reason}"
                await self._audit(
                    "smtp.outbound.refused",
                    "refused",
                    domain,
                    {"reason": verdict.reason, "peer_dn": verdict.subject_dn or ""},
                )
                continue
            return session
        raise _DestinationDown(last)

    # -- one item ---------------------------------------------------------------------------

    async def _deliver(self, session: OutboundSession, item: QueueItem) -> None:
        pending = list(_pending(item))
        if not pending:
            await self._complete(item, [], session)
            return
        self.attempts += 1
        result = await session.send(
            item.sender,
            [(r.address, r.notify, r.orcpt) for r in pending],
            self._storage.blobs.stream(item.blob),
            size=item.blob.size,
            envid=item.envid,
            ret=item.ret,
        )
        delivered: list[tuple[QueueRecipient, Reply]] = []
        failed: list[tuple[QueueRecipient, Reply]] = []
        temporary: list[tuple[QueueRecipient, Reply]] = []

        def classify(r: QueueRecipient, reply: Reply) -> None:
            (temporary if reply.temporary else failed).append((r, reply))

        if not result.mail.ok:
            for r in pending:
                classify(r, result.mail)
        else:
            accepted: list[QueueRecipient] = []
            for r, reply in zip(pending, result.rcpts, strict=False):
                if reply.ok:
                    accepted.append(r)
                else:
                    classify(r, reply)
            data = result.data
            for r in accepted:
                if data is not None and data.ok:
                    delivered.append((r, data))
                elif data is not None:
                    classify(r, data)
        now = self._now()
        if temporary or failed:
            # Only a partial outcome needs per-recipient state: the retry must skip those done.
            # When everything was accepted the item is finished below; a crash before that
            # re-sends it, and the receiver's dedup key stores it once.
            for r, reply in delivered:
                await self._storage.queue.set_recipient_state(
                    item.item_id, r.address, RecipientState.DELIVERED, str(reply)[:500]
                )
        for r, reply in failed:
            await self._storage.queue.set_recipient_state(
                item.item_id, r.address, RecipientState.FAILED, str(reply)[:500]
            )
        events: list[AuditEvent] = []
        if delivered:
            self.delivered += 1
            events.append(
                AuditEvent(
                    "smtp.outbound.delivered",
                    "ok",
                    "system",
                    item.domain,
                    {
                        "item": str(item.item_id),
                        "peer": session.host,
                        "recipients": str(len(delivered)),
                    },
                    node=self._node,
                )
            )
        statuses: list[RecipientStatus] = []
        peer_does_dsn = "DSN" in session.extensions
        for r, reply in delivered:
            if not peer_does_dsn and should_notify(r.notify, "relayed"):
                statuses.append(
                    RecipientStatus(
                        r.address, "relayed", "2.0.0", r.orcpt, str(reply), session.host, now
                    )
                )
        for r, reply in failed:
            statuses.append(
                RecipientStatus(
                    r.address, "failed", _status_of(reply), r.orcpt, str(reply), session.host, now
                )
            )
        if temporary:
            for event in events:
                await self._record(event)
            if statuses:
                await self._notify(item, statuses, "partial")
            diag = "; ".join(f"{r.address}: {reply}" for r, reply in temporary)[:500]
            await self._temporary(
                item, [r for r, _ in temporary], diag, _status_of(temporary[0][1]), session.host
            )
            return
        await self._complete(item, statuses, session, events)

    async def _complete(
        self,
        item: QueueItem,
        statuses: list[RecipientStatus],
        session: OutboundSession | None,
        events: list[AuditEvent] | None = None,
    ) -> None:
        if statuses:
            await self._notify(item, statuses, "final")
        # The item goes with its audit event (one transaction) and its blob when unshared.
        await self._storage.queue.finish(item.item_id, audit=events or ())

    async def _destination_failed(self, item: QueueItem, down: _DestinationDown) -> None:
        pending = list(_pending(item))
        if down.permanent:
            now = self._now()
            for r in pending:
                await self._storage.queue.set_recipient_state(
                    item.item_id, r.address, RecipientState.FAILED, str(down)[:500]
                )
            statuses = [
                RecipientStatus(r.address, "failed", down.status, r.orcpt, None, None, now)
                for r in pending
            ]
            await self._audit(
                "smtp.outbound.failed", "error", item.domain, {"reason": str(down)[:300]}
            )
            await self._complete(item, statuses, None)
            return
        await self._temporary(item, pending, str(down), down.status)

    async def _temporary(
        self,
        item: QueueItem,
        recipients: list[QueueRecipient],
        diagnostic: str,
        status: str,
        remote: str | None = None,
    ) -> None:
        now = self._now()
        if now >= _aware(item.expires):
            statuses = []
            for r in recipients:
                await self._storage.queue.set_recipient_state(
                    item.item_id, r.address, RecipientState.FAILED, diagnostic[:500]
                )
                statuses.append(
                    RecipientStatus(
                        r.address,
                        "failed",
                        "4.4.7",
                        r.orcpt,
                        f"delivery time expired; last error: {diagnostic}",
                        remote,
                        now,
                    )
                )
            await self._audit(
                "smtp.outbound.expired", "error", item.domain, {"item": str(item.item_id)}
            )
            await self._complete(item, statuses, None)
            return
        base = self._cfg.smtp.retry_base_seconds
        delay = min(base * (2 ** min(item.attempts, 30)), self._cfg.smtp.retry_max_seconds)
        delay *= 1.0 + random.uniform(-0.1, 0.1)  # noqa: S311 - jitter, not security
        next_attempt = min(now + timedelta(seconds=delay), _aware(item.expires))
        error = diagnostic[:480]
        delayed_marked = item.last_error.startswith(_DELAY_MARK)
        age = (now - _aware(item.created)).total_seconds()
        if age >= self._settings.delay_notice_seconds and not delayed_marked:
            statuses = [
                RecipientStatus(
                    r.address,
                    "delayed",
                    status if status.startswith("4.") else "4.0.0",
                    r.orcpt,
                    diagnostic,
                    remote,
                    now,
                    _aware(item.expires),
                )
                for r in recipients
            ]
            await self._notify(item, statuses, "delayed")
            delayed_marked = True
        if delayed_marked:
            error = _DELAY_MARK + error
        await self._storage.queue.reschedule(item.item_id, next_attempt, error)
        self._note_due(next_attempt, now)
        await self._audit(
            "smtp.outbound.deferred",
            "error",
            item.domain,
            {"item": str(item.item_id), "reason": diagnostic[:300]},
        )

    # -- notifications ----------------------------------------------------------------------

    async def _notify(self, item: QueueItem, statuses: list[RecipientStatus], kind: str) -> None:
        """Sends the DSN the recipients' NOTIFY asks for (never for a null sender)."""
        if not item.sender:
            return
        by_addr = {r.address: r for r in item.recipients}
        wanted = [
            s
            for s in statuses
            if should_notify(
                by_addr[s.final_recipient].notify if s.final_recipient in by_addr else frozenset(),
                s.action,
            )
        ]
        if not wanted:
            return
        full = (item.ret or "").upper() == "FULL" and item.blob.size <= _FULL_RETURN_LIMIT
        original = await self._original(item, full)
        raw = build_dsn(
            reporting_mta=self._cfg.smtp.hostname,
            to=item.sender,
            recipients=wanted,
            original=original,
            ret="FULL" if full else "HDRS",
            envid=item.envid,
            arrival_date=_aware(item.created),
            now=self._now(),
        )
        key = f"dsn:{kind}:{item.blob.blob_id}:{item.domain}:{item.item_id}:" + ",".join(
            sorted(s.final_recipient.lower() for s in wanted)
        )
        if await deliver_notification(self._cfg, self._storage, item.sender, raw, key):
            self.wake()

    async def _original(self, item: QueueItem, full: bool) -> bytes:
        if full:
            return await self._storage.blobs.get(item.blob)
        return await read_headers(self._storage, item.blob)

    async def _audit(self, kind: str, outcome: str, target: str, details: dict[str, str]) -> None:
        await self._record(AuditEvent(kind, outcome, "system", target, details, node=self._node))

    async def _record(self, event: AuditEvent) -> None:
        try:
            await self._storage.audit.record(event)
        except CaduceeError as exc:
            log.warning("outbound: audit failed: %s", exc)


def _pending(item: QueueItem) -> list[QueueRecipient]:
    return [r for r in item.recipients if r.state is RecipientState.PENDING]


def _status_of(reply: Reply) -> str:
    first = reply.lines[0] if reply.lines else ""
    word = first.split(" ", 1)[0]
    parts = word.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and word[0] in "245":
        return word
    return f"{reply.code // 100}.0.0" if reply.code // 100 in (2, 4, 5) else "4.0.0"


def _describe_tls(policy: OutboundPolicy, exc: ssl.SSLError) -> str:
    describe = getattr(policy, "describe_handshake_error", None)
    if callable(describe):
        return str(describe(exc))
    return exc.reason or str(exc)
