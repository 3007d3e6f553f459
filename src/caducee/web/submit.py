"""Sending from the webmail: build the RFC 5322 message and hand it to the operator directly.

The webmail runs in the operator's process and uses the same storage as SMTP submission
(docs/decisions.md "web: the webmail talks to the storage directly"), with the same rules:
the sender is a BAL the account holds or is delegated on (checked by the caller), recipients
are local mailboxes or in a liste blanche domain, local recipients get the message at once,
remote ones are queued per destination domain with their DSN parameters (RFC 3461
NOTIFY=SUCCESS,FAILURE when an accusé de réception is asked), a copy goes to the sender's
``Sent``; all durable before the page says "envoyé". A read receipt is asked with
``Disposition-Notification-To`` (RFC 8098 §2.1).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from caducee.config.model import NodeConfig
from caducee.core.errors import InvalidInput
from caducee.core.model import AuditEvent, Mailbox, QueueRecipient
from caducee.smtp.receipts import delivery_receipt
from caducee.storage.interfaces import Storage

__all__ = ["Draft", "OutAttachment", "SendResult", "TrustLookup", "build_message", "send"]

_SEEN = "\\Seen"


class TrustLookup:
    """What sending needs of the trust policy: is a domain in the liste blanche."""

    def __init__(self, is_listed: Callable[[str], bool]) -> None:
        self.is_listed = is_listed


@dataclass(frozen=True)
class OutAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Draft:
    sender: Mailbox
    sender_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    body: str
    attachments: tuple[OutAttachment, ...] = ()
    delivery_receipt: bool = True
    read_receipt: bool = False
    patient_ins: str = ""
    in_reply_to: str = ""
    references: str = ""


@dataclass(frozen=True)
class SendResult:
    message_id: str
    local: tuple[str, ...]
    remote: tuple[str, ...]


def _addr(text: str) -> HeaderAddress:
    local, _, domain = text.rpartition("@")
    return HeaderAddress(addr_spec=f"{local}@{domain}")


def build_message(d: Draft, domain: str) -> tuple[str, bytes]:
    msg = EmailMessage()
    msg["From"] = HeaderAddress(display_name=d.sender_name, addr_spec=d.sender.address)
    msg["To"] = [_addr(a) for a in d.to]
    if d.cc:
        msg["Cc"] = [_addr(a) for a in d.cc]
    msg["Subject"] = d.subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    mid = make_msgid(idstring=secrets.token_hex(6), domain=domain)
    msg["Message-ID"] = mid
    if d.in_reply_to:
        msg["In-Reply-To"] = d.in_reply_to
        msg["References"] = f"{d.references} {d.in_reply_to}".strip()
    if d.read_receipt:
        msg["Disposition-Notification-To"] = d.sender.address
    if d.patient_ins:
        msg["X-Caducee-INS"] = d.patient_ins
    msg["User-Agent"] = "Caducee-Webmail"
    msg.set_content(d.body or "")
    for a in d.attachments:
        maintype, _, subtype = a.content_type.partition("/")
        if not subtype:
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(a.data, maintype=maintype, subtype=subtype, filename=a.filename)
    return mid, msg.as_bytes(policy=SMTP)


async def send(
    cfg: NodeConfig,
    storage: Storage,
    trust: TrustLookup,
    actor: str,
    draft: Draft,
    *,
    wake: Callable[[], None] | None = None,
) -> SendResult:
    """Validates the recipients, stores and queues the message; raises ``InvalidInput`` with a
    French message for the user when a recipient cannot be reached."""
    rcpts = list(dict.fromkeys(a.strip() for a in (*draft.to, *draft.cc) if a.strip()))
    if not rcpts:
        raise InvalidInput("Indiquez au moins un destinataire.")
    local_domains = {d.lower() for d in cfg.domains}
    local: dict[str, int] = {}
    remote: list[str] = []
    for r in rcpts:
        if "@" not in r or any(c in r for c in " <>,;\r\n"):
            raise InvalidInput(f"Adresse invalide : {r}")
        domain = r.rpartition("@")[2].lower()
        if domain in local_domains:
            mb = await storage.accounts.get_mailbox(r)
            if mb is None:
                raise InvalidInput(f"Boîte inconnue chez cet opérateur : {r}")
            local[r] = mb.mailbox_id
        elif trust.is_listed(domain):
            remote.append(r)
        else:
            raise InvalidInput(
                f"{r} : le domaine {domain} n'est pas dans l'espace de confiance MSSanté."
            )
    mid, data = build_message(draft, draft.sender.address.rpartition("@")[2])
    limit = cfg.smtp.max_message_bytes
    if len(data) > limit:
        raise InvalidInput(
            f"Message trop volumineux ({len(data) // 1024} Kio, limite {limit // 1024} Kio)."
        )
    blob = await storage.blobs.put(data)
    key = f"web:{cfg.name}:{mid}"
    if local:
        await storage.messages.deliver(blob, sorted(set(local.values())), dedup_key=key)
    await storage.messages.deliver(
        blob, [draft.sender.mailbox_id], folder="Sent", flags=[_SEEN], dedup_key=f"{key}:sent"
    )
    notify = frozenset({"SUCCESS", "FAILURE"}) if draft.delivery_receipt else frozenset({"FAILURE"})
    by_domain: dict[str, list[QueueRecipient]] = {}
    for r in remote:
        by_domain.setdefault(r.rpartition("@")[2].lower(), []).append(
            QueueRecipient(r, notify=notify, orcpt=f"rfc822;{r}")
        )
    expires = datetime.now(UTC) + timedelta(seconds=cfg.smtp.queue_lifetime_seconds)
    envid = mid.strip("<>")[:100]
    for domain, qr in by_domain.items():
        await storage.queue.enqueue(
            draft.sender.address, qr, blob, domain, expires=expires, envid=envid, ret="HDRS"
        )
    if local and draft.delivery_receipt:
        await delivery_receipt(
            cfg,
            storage,
            queue_id=key,
            sender=draft.sender.address,
            recipients=[(a, notify, f"rfc822;{a}") for a in local],
            blob=blob,
            envid=envid,
            on_queued=wake,
        )
    if remote and wake is not None:
        wake()
    await storage.audit.record(
        AuditEvent(
            "web.message.sent",
            "ok",
            actor,
            draft.sender.address,
            {
                "message_id": mid,
                "recipients": ",".join(rcpts),
                "size": str(len(data)),
                "attachments": str(len(draft.attachments)),
            },
        )
    )
    return SendResult(mid, tuple(local), tuple(remote))


def split_addresses(text: str) -> Sequence[str]:
    out = []
    for chunk in text.replace(";", ",").replace("\n", ",").split(","):
        chunk = chunk.strip()
        if "<" in chunk and chunk.endswith(">"):
            chunk = chunk[chunk.rfind("<") + 1 : -1].strip()
        if chunk:
            out.append(chunk)
    return out
