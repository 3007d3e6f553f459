"""Submission (port 587, RFC 6409): professionals' mail clients and software.

STARTTLS, then AUTH (PLAIN for now; SASL is pluggable, ``caducee.smtp.sasl``). The envelope
sender and every ``From:`` address must be a BAL the account holds or is delegated on
(``AccountStore.mailboxes_of``): ``550 5.7.1`` otherwise; ``From:`` is read from the header
block only, collected while streaming, and checked at the end of DATA (the blob is aborted on
refusal). Recipients must be local mailboxes or in a liste blanche domain (``550 5.7.1`` with an
explanation). Local recipients get the message directly, remote ones are queued per destination
domain with their DSN parameters (RFC 3461), a copy goes to the sender BAL's ``Sent`` (\\Seen);
all durable before the ``250``; then ``on_queued`` wakes the delivery worker.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from caducee.config.model import NodeConfig
from caducee.core.errors import ConfigError, QuotaExceeded, StorageError
from caducee.core.model import Account, Mailbox, QueueRecipient
from caducee.smtp.protocol import HeaderCollector, MailFrom, RcptTo, Reply, header_addresses
from caducee.smtp.relay import (
    OnDelivered,
    OperatorHandler,
    SmtpFrontEnd,
    TrustView,
    limits_from_config,
)
from caducee.smtp.sasl import PlainMechanism, SaslMechanism, mechanisms_by_name
from caducee.smtp.session import Limits, Session, Transaction
from caducee.storage.interfaces import BlobWriter, Delivery, Enqueue, Storage

__all__ = ["SubmissionServer"]

log = logging.getLogger("caducee.smtp.submission")

_SEEN_FLAGS = frozenset({"\\Seen"})


class SubmissionHandler(OperatorHandler):
    kind = "submission"

    def __init__(
        self,
        cfg: NodeConfig,
        storage: Storage,
        policy: TrustView,
        mechanisms: Sequence[SaslMechanism],
        on_queued: Callable[[], None] | None,
        on_delivered: OnDelivered | None,
    ) -> None:
        super().__init__(cfg, storage, policy)
        self.mechanisms = mechanisms_by_name(list(mechanisms))
        self.on_queued = on_queued
        self.on_delivered = on_delivered
        self._background: set[asyncio.Future[None]] = set()

    def tls_context(self) -> ssl.SSLContext:
        return self.policy.submission_server_context()

    def wants_headers(self) -> bool:
        return True

    async def on_auth(self, s: Session, account: Account | None, mechanism: str) -> None:
        # The login attempted is not logged: it may be a password typed in the wrong field.
        if account is None:
            await self.audit(s, "auth", "refused", mechanism=mechanism)
            return
        s.state["actor"] = account.login
        # Not awaited: the 235 need not wait for a commit (the event is queued now and
        # committed with the next group commit; the acceptance event of any message of
        # this session is in that message's own transaction). Refusals stay awaited.
        task = asyncio.ensure_future(
            self.audit(s, "auth", "ok", account.login, mechanism=mechanism)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _mailboxes(self, s: Session) -> dict[str, Mailbox]:
        cached = s.state.get("mailboxes")
        if isinstance(cached, dict):
            return cached
        if s.account is None:
            return {}
        boxes = {
            m.address.lower(): m
            for m, _ in await self.storage.accounts.mailboxes_of(s.account.login)
        }
        s.state["mailboxes"] = boxes
        return boxes

    async def on_mail(self, s: Session, mail: MailFrom) -> Reply | None:
        if s.account is None:
            return Reply(530, "5.7.0", "Authentication required")
        mbox = (await self._mailboxes(s)).get(mail.address.lower()) if mail.address else None
        if mbox is None:
            await self.audit(
                s, "refused", "refused", mail.address, reason="sender not held by account"
            )
            return Reply(
                550,
                "5.7.1",
                f"Sender <{mail.address}> is not a mailbox of account {s.account.login}",
            )
        s.state["sender_mailbox_id"] = mbox.mailbox_id
        return None

    async def on_rcpt(self, s: Session, tx: Transaction, rcpt: RcptTo) -> Reply:
        domain = rcpt.address.rpartition("@")[2]
        if domain in self.local_domains:
            return await self.local_rcpt(s, tx, rcpt)
        if self.policy.is_listed(domain):
            tx.remote.append(rcpt)
            return Reply(250, "2.1.5", "Recipient ok")
        await self.audit(s, "refused", "refused", rcpt.address, reason="domain not listed")
        return Reply(
            550,
            "5.7.1",
            f"<{rcpt.address}>: domain {domain} is not in the liste blanche of the trust "
            "space; mail may only go to listed MSSanté domains",
        )

    async def _check_from(self, s: Session, headers: HeaderCollector | None) -> Reply | None:
        if headers is None or headers.overflow:
            return Reply(552, "5.3.4", "Header block too large")
        fields = header_addresses(headers.block, "From")
        if len(fields) != 1 or not fields[0]:
            return Reply(550, "5.6.0", "Need exactly one From: header with an address")
        boxes = await self._mailboxes(s)
        for addr in fields[0]:
            if addr.lower() not in boxes:
                login = s.account.login if s.account else "?"
                return Reply(550, "5.7.1", f"From: <{addr}> is not a mailbox of account {login}")
        return None

    async def on_message(
        self, s: Session, tx: Transaction, blob: BlobWriter, headers: HeaderCollector | None
    ) -> Reply:
        refusal = await self._check_from(s, headers)
        if refusal is not None:
            await blob.abort()
            await self.on_data_refused(s, tx, refusal)
            return refusal
        try:
            # Durable with the deliver/enqueue below, before the 250 (one commit, not two).
            ref = await blob.commit(durable=False)
        except StorageError:
            await blob.abort()
            log.exception("blob commit failed")
            return Reply(451, "4.3.0", "Local storage error, try again later")
        deliveries = self.local_delivery(tx)
        sender_id = s.state.get("sender_mailbox_id")
        if isinstance(sender_id, int):
            # The sender's own BAL full: the message still goes, without its copy.
            deliveries.append(
                Delivery(
                    (sender_id,),
                    "Sent",
                    _SEEN_FLAGS,
                    f"smtp-sent:{self.cfg.name}:{tx.queue_id}",
                    skip_over_quota=True,
                )
            )
        try:
            # Local deliveries, Sent copy, queue items and the audit event: one transaction
            # (all or nothing, so a client's retry never duplicates), one group commit.
            done = await self.storage.messages.accept(
                ref, deliveries, self._enqueues(tx), [self.accepted_event(s, tx, ref)]
            )
        except QuotaExceeded:
            refusal = Reply(452, "4.2.2", "Mailbox full, try again later")
        except StorageError:
            log.exception("submission storage failed for %s", tx.queue_id)
            refusal = Reply(451, "4.3.0", "Local storage error, try again later")
        if refusal is not None:
            await self.on_data_refused(s, tx, refusal)
            return refusal
        if tx.remote and self.on_queued is not None:
            self.on_queued()
        if done.over_quota:
            log.warning("no Sent copy for %s: sender mailbox over quota", tx.queue_id)
            await self.audit(s, "sent_copy", "error", tx.queue_id, reason="quota exceeded")
        local = [r for r in tx.rcpts if r.address.lower() in tx.local]
        await self.notify_delivered(self.on_delivered, tx, ref, local)
        return Reply(250, "2.0.0", f"Ok: queued as {tx.queue_id}")

    def _enqueues(self, tx: Transaction) -> list[Enqueue]:
        by_domain: dict[str, list[QueueRecipient]] = {}
        for r in tx.remote:
            by_domain.setdefault(r.address.rpartition("@")[2], []).append(
                QueueRecipient(r.address, notify=r.notify, orcpt=r.orcpt)
            )
        expires = datetime.now(UTC) + timedelta(seconds=self.cfg.smtp.queue_lifetime_seconds)
        return [
            Enqueue(tx.mail.address, tuple(rcpts), domain, expires, tx.mail.envid, tx.mail.ret)
            for domain, rcpts in by_domain.items()
        ]


class SubmissionServer(SmtpFrontEnd):
    """The submission SMTP server of one operator node (``cfg.smtp.submission_listen``).

    ``mechanisms`` defaults to PLAIN checked by ``storage.accounts`` (passwords verified off
    the event loop by the store). ``on_queued`` is called (synchronously, it must not block)
    after remote recipients were queued durably; ``on_delivered`` as for the relay.
    """

    def __init__(
        self,
        cfg: NodeConfig,
        storage: Storage,
        policy: TrustView,
        *,
        listen: str | None = None,
        limits: Limits | None = None,
        mechanisms: Sequence[SaslMechanism] | None = None,
        on_queued: Callable[[], None] | None = None,
        on_delivered: OnDelivered | None = None,
    ) -> None:
        addr = listen or cfg.smtp.submission_listen
        if addr is None:
            raise ConfigError(
                ["smtp.submission_listen: the submission server needs a listen address"]
            )
        mechs = list(mechanisms) if mechanisms is not None else [PlainMechanism(storage.accounts)]
        self.handler: SubmissionHandler = SubmissionHandler(
            cfg, storage, policy, mechs, on_queued, on_delivered
        )
        super().__init__(addr, self.handler, cfg.smtp.hostname, limits or limits_from_config(cfg))
