"""Relay-in (MX, port 25): mail from the other operators of the trust space.

Trust-space rules (mssante-notes §1.3; issue 2 §5): STARTTLS is mandatory (TLS >= 1.2) and so
is a client certificate; the handshake uses ``TrustPolicy.relay_server_context()`` (a presented
but bad certificate fails it: audit event); at MAIL FROM the policy checks the certificate's
full subject DN against the liste blanche entry of the sender's domain
(``check_inbound``), refusing with its precise code and text. RCPT only for local mailboxes
(no relaying). Accepted mail is delivered with ``MessageStore.accept`` (atomic, dedup key,
with its audit event in the same transaction) before the ``250``. Every refusal and
acceptance is an audit event (no bodies, no secrets).
"""

from __future__ import annotations

import hashlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from caducee.config.model import NodeConfig
from caducee.core.errors import ConfigError, QuotaExceeded, StorageError
from caducee.core.model import AuditEvent, BlobRef
from caducee.smtp.protocol import HeaderCollector, MailFrom, RcptTo, Reply
from caducee.smtp.server import Connection, Listener
from caducee.smtp.session import Handler, Limits, Session, Transaction
from caducee.storage.interfaces import BlobWriter, Delivery, Storage

__all__ = [
    "DeliveredMessage",
    "InboundVerdict",
    "RelayServer",
    "TrustView",
    "limits_from_config",
]

log = logging.getLogger("caducee.smtp.relay")


class InboundVerdict(Protocol):
    """What ``TrustPolicy.check_inbound`` returns (``caducee.trust.policy.PeerVerdict``)."""

    @property
    def accepted(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def code(self) -> int: ...
    @property
    def enhanced(self) -> str: ...
    @property
    def subject_dn(self) -> str | None: ...


class TrustView(Protocol):
    """The part of ``caducee.trust.policy.TrustPolicy`` the SMTP servers use."""

    def relay_server_context(self) -> ssl.SSLContext: ...
    def submission_server_context(self) -> ssl.SSLContext: ...
    def check_inbound(
        self, peer_cert_der: bytes | None, mail_from_domain: str
    ) -> InboundVerdict: ...
    def is_listed(self, domain: str) -> bool: ...
    def describe_handshake_error(self, exc: BaseException) -> str: ...


@dataclass(frozen=True, slots=True)
class DeliveredMessage:
    """A message stored in local mailboxes; given to ``on_delivered`` (success DSNs,
    RFC 3461 §5.2.2: NOTIFY=SUCCESS) after it is durable and before the ``250``."""

    kind: str  # "relay" | "submission"
    queue_id: str
    sender: str
    recipients: tuple[RcptTo, ...]  # the local ones
    blob: BlobRef
    envid: str | None
    ret: str | None


OnDelivered = Callable[[DeliveredMessage], Awaitable[None]]


def limits_from_config(cfg: NodeConfig) -> Limits:
    """Session limits for a node: the configured size limit, defaults for the rest
    (adjust with ``dataclasses.replace``)."""
    return Limits(max_message_bytes=cfg.smtp.max_message_bytes)


class OperatorHandler(Handler):
    """What relay and submission share: storage, audit, local mailbox lookup."""

    kind = "smtp"

    def __init__(self, cfg: NodeConfig, storage: Storage, policy: TrustView) -> None:
        self.cfg = cfg
        self.storage = storage
        self.policy = policy
        self.local_domains = frozenset(d.lower().rstrip(".") for d in cfg.domains)

    def new_writer(self) -> BlobWriter:
        return self.storage.blobs.writer()

    def event(
        self, s: Session, what: str, outcome: str, target: str = "", **details: str
    ) -> AuditEvent:
        actor = s.state.get("actor") or (s.account.login if s.account else f"ip:{s.peer_ip}")
        return AuditEvent(
            kind=f"smtp.{self.kind}.{what}",
            outcome=outcome,
            actor=str(actor),
            target=target,
            details={"peer": s.peer_ip, **details},
            node=self.cfg.name,
        )

    async def audit(
        self, s: Session, what: str, outcome: str, target: str = "", **details: str
    ) -> None:
        try:
            await self.storage.audit.record(self.event(s, what, outcome, target, **details))
        except StorageError:
            log.exception("audit event could not be recorded")

    def accepted_event(self, s: Session, tx: Transaction, ref: BlobRef) -> AuditEvent:
        return self.event(
            s,
            "accepted",
            "ok",
            tx.queue_id,
            sender=tx.mail.address,
            recipients=",".join(r.address for r in tx.rcpts),
            size=str(ref.size),
        )

    async def on_tls_failed(self, s: Session, exc: BaseException) -> None:
        why = self.policy.describe_handshake_error(exc)
        await self.audit(s, "tls_failed", "refused", reason=why)

    async def on_refused_before_tls(self, s: Session, verb: str) -> None:
        if not s.state.get("no_tls_audited"):
            s.state["no_tls_audited"] = True
            await self.audit(s, "refused", "refused", reason=f"{verb} before STARTTLS", code="530")

    async def on_data_refused(self, s: Session, tx: Transaction, reply: Reply) -> None:
        await self.audit(
            s, "refused", "refused", tx.queue_id, reason=str(reply.text), code=str(reply.code)
        )

    async def local_rcpt(self, s: Session, tx: Transaction, rcpt: RcptTo) -> Reply:
        mbox = await self.storage.accounts.get_mailbox(rcpt.address)
        if mbox is None:
            await self.audit(s, "refused", "refused", rcpt.address, reason="no such mailbox")
            return Reply(550, "5.1.1", f"<{rcpt.address}>: no such mailbox here")
        tx.local[rcpt.address.lower()] = mbox.mailbox_id
        return Reply(250, "2.1.5", "Recipient ok")

    def local_delivery(self, tx: Transaction, dedup_key: str | None = None) -> list[Delivery]:
        """The delivery to the local recipients (none when there are none)."""
        ids = tuple(sorted(set(tx.local.values())))
        if not ids:
            return []
        return [Delivery(ids, dedup_key=dedup_key or f"smtp:{self.cfg.name}:{tx.queue_id}")]

    async def notify_delivered(
        self, hook: OnDelivered | None, tx: Transaction, blob: BlobRef, locals_: list[RcptTo]
    ) -> None:
        if hook is None or not any("SUCCESS" in r.notify for r in locals_):
            return
        try:
            await hook(
                DeliveredMessage(
                    self.kind,
                    tx.queue_id,
                    tx.mail.address,
                    tuple(locals_),
                    blob,
                    tx.mail.envid,
                    tx.mail.ret,
                )
            )
        except Exception:
            log.exception("on_delivered hook failed for %s", tx.queue_id)


class RelayHandler(OperatorHandler):
    kind = "relay"
    final_delivery = True  # relay-in delivers only to local mailboxes

    def __init__(
        self,
        cfg: NodeConfig,
        storage: Storage,
        policy: TrustView,
        on_delivered: OnDelivered | None = None,
    ) -> None:
        super().__init__(cfg, storage, policy)
        self.on_delivered = on_delivered

    def tls_context(self) -> ssl.SSLContext:
        return self.policy.relay_server_context()

    def wants_headers(self) -> bool:
        return True  # Message-ID, for the dedup key

    async def on_mail(self, s: Session, mail: MailFrom) -> Reply | None:
        domain = mail.address.rpartition("@")[2]
        # The certificate is fixed for the session: one check per sender domain and session.
        cache = s.state.setdefault("verdicts", {})
        verdict = cache.get(domain)
        if verdict is None:
            verdict = cache[domain] = self.policy.check_inbound(s.peer_cert_der, domain)
        if verdict.subject_dn:
            s.state["actor"] = verdict.subject_dn
        if not verdict.accepted:
            await self.audit(
                s,
                "refused",
                "refused",
                domain,
                reason=verdict.reason,
                code=f"{verdict.code} {verdict.enhanced}",
            )
            return Reply(verdict.code, verdict.enhanced, verdict.reason)
        return None

    async def on_rcpt(self, s: Session, tx: Transaction, rcpt: RcptTo) -> Reply:
        domain = rcpt.address.rpartition("@")[2]
        if domain not in self.local_domains:
            await self.audit(s, "refused", "refused", rcpt.address, reason="relaying denied")
            return Reply(550, "5.1.1", f"<{rcpt.address}>: not a mailbox of this operator")
        return await self.local_rcpt(s, tx, rcpt)

    async def on_message(
        self, s: Session, tx: Transaction, blob: BlobWriter, headers: HeaderCollector | None
    ) -> Reply:
        try:
            # Durable with the deliver/enqueue below, before the 250 (one commit, not two).
            ref = await blob.commit(durable=False)
        except StorageError:
            await blob.abort()
            log.exception("blob commit failed")
            return Reply(451, "4.3.0", "Local storage error, try again later")
        refusal: Reply | None = None
        try:
            # The delivery and its audit event: one transaction, one group commit.
            await self.storage.messages.accept(
                ref,
                self.local_delivery(tx, relay_dedup_key(tx.mail.address, headers, ref.size)),
                audit=[self.accepted_event(s, tx, ref)],
            )
        except QuotaExceeded:
            refusal = Reply(452, "4.2.2", "Mailbox full, try again later")
        except StorageError:
            log.exception("delivery failed for %s", tx.queue_id)
            refusal = Reply(451, "4.3.0", "Local storage error, try again later")
        if refusal is not None:
            await self.storage.blobs.delete(ref)
            await self.on_data_refused(s, tx, refusal)
            return refusal
        await self.notify_delivered(self.on_delivered, tx, ref, tx.rcpts)
        return Reply(250, "2.0.0", f"Ok: delivered as {tx.queue_id}")


_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*(?:\r?\n[ \t]+)?(<[^>\r\n]{1,500}>)")


def relay_dedup_key(sender: str, headers: HeaderCollector | None, size: int) -> str | None:
    """A key that is the same when a peer re-sends a message it could not see acknowledged
    (its crash, ours, a lost ``250``), and differs between distinct messages: the sender, the
    whole header section as received (Message-ID included, RFC 5322 §3.6.4) and the size. A
    BAL that already got the key skips it, so a re-sent message is stored once. Without a
    complete header section or a Message-ID there is no key (each transaction is stored)."""
    if headers is None or not headers.complete:
        return None
    block = headers.block
    if _MESSAGE_ID.search(block) is None:
        return None
    digest = hashlib.sha256(
        sender.lower().encode() + b"\0" + str(size).encode() + b"\0" + block
    ).hexdigest()
    return f"smtp-resend:{digest}"


class SmtpFrontEnd:
    """A listening SMTP server: one :class:`Session` per connection, driven by ``handler``."""

    handler: Handler

    def __init__(self, addr: str, handler: Handler, hostname: str, limits: Limits) -> None:
        self.handler = handler
        self.hostname = hostname
        self.limits = limits
        self._listener = Listener(addr, self._session, max_sessions=limits.max_sessions)

    async def _session(self, conn: Connection) -> None:
        await Session(conn, self.handler, hostname=self.hostname, limits=self.limits).run()

    async def start(self) -> list[tuple[str, int]]:
        """Binds and listens; returns the bound (host, port) pairs (port 0 picks one)."""
        return await self._listener.start()

    async def stop(self) -> None:
        """Stops listening and aborts open sessions (messages in DATA are not stored)."""
        await self._listener.stop()


class RelayServer(SmtpFrontEnd):
    """The relay-in SMTP server of one operator node (``cfg.smtp.relay_listen``).

    ``on_delivered`` is awaited after local delivery when a recipient asked NOTIFY=SUCCESS.
    """

    def __init__(
        self,
        cfg: NodeConfig,
        storage: Storage,
        policy: TrustView,
        *,
        listen: str | None = None,
        limits: Limits | None = None,
        on_delivered: OnDelivered | None = None,
    ) -> None:
        addr = listen or cfg.smtp.relay_listen
        if addr is None:
            raise ConfigError(["smtp.relay_listen: the relay server needs a listen address"])
        self.handler: RelayHandler = RelayHandler(cfg, storage, policy, on_delivered)
        super().__init__(addr, self.handler, cfg.smtp.hostname, limits or limits_from_config(cfg))
