"""Delivery and read receipts in the webmail.

- Sending a read receipt: an MDN (RFC 8098 §3) with ``Disposition:
  manual-action/MDN-sent-manually; displayed``, sent when the reader clicks the button (never
  automatically: the reader decides, RFC 8098 §2.1), without the original's body.
- The status of a sent message per recipient: queued (still in the outbound queue), delivered
  (a success DSN, RFC 3464 ``Action: delivered`` or ``relayed``), failed (``Action: failed``),
  read (an MDN whose ``Original-Message-ID`` is the message's). Reports are found in the
  sender's INBOX by the ``Original-Envelope-Id`` (the webmail sets ENVID to the Message-ID) or
  the Message-ID in the returned headers.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.policy import compat32
from email.utils import format_datetime, make_msgid, parseaddr

from caducee.core.model import StoredMessage
from caducee.storage.interfaces import Storage

__all__ = ["RecipientReceipt", "build_read_receipt", "receipt_status"]


@dataclass
class RecipientReceipt:
    address: str
    delivery: str = "en attente"  # en attente | en cours | remis | relayé | échec
    read: str = ""  # "" | lu
    detail: str = ""
    when: list[str] = field(default_factory=list)


def build_read_receipt(
    original_headers: Message, reader: str, reader_name: str
) -> tuple[str, bytes]:
    """(recipient, MDN bytes) answering a message the reader has displayed."""
    to = parseaddr(str(original_headers.get("Disposition-Notification-To", "")))[1]
    orig_id = " ".join(str(original_headers.get("Message-ID", "")).split())
    subject = " ".join(str(original_headers.get("Subject", "")).split())
    domain = reader.rpartition("@")[2]
    boundary = f"mdn-{make_msgid().strip('<>').replace('@', '.')}"
    now = datetime.now(UTC)
    human = (
        f"Le message « {subject} » envoyé à {reader} a été affiché le "
        f"{now.strftime('%d/%m/%Y à %H:%M')} UTC.\r\n"
        "Cet accusé de lecture ne garantit pas que le contenu a été lu ou compris.\r\n"
    )
    fields = [
        f"Reporting-UA: {domain}; Caducee-Webmail",
        f"Original-Recipient: rfc822;{reader}",
        f"Final-Recipient: rfc822;{reader}",
        f"Original-Message-ID: {orig_id}" if orig_id else "",
        "Disposition: manual-action/MDN-sent-manually; displayed",
    ]
    from email.header import Header

    lines = [
        f"From: {Header(reader_name, 'utf-8').encode()} <{reader}>"
        if reader_name
        else f"From: {reader}",
        f"To: {to}",
        f"Subject: {Header('Accusé de lecture : ' + subject, 'utf-8').encode()}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {make_msgid(domain=domain)}",
        *([f"In-Reply-To: {orig_id}", f"References: {orig_id}"] if orig_id else []),
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=disposition-notification;",
        f' boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        human,
        f"--{boundary}",
        "Content-Type: message/disposition-notification",
        "",
        "\r\n".join(f for f in fields if f),
        "",
        f"--{boundary}--",
        "",
    ]
    return to, "\r\n".join(lines).encode("utf-8")


_RECIPIENT = re.compile(r"(?im)^(final-recipient|original-recipient):\s*(?:rfc822;)?\s*(\S+)")


def _fields(block: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in re.split(r"\r?\n(?![ \t])", block):
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = " ".join(value.split())
    return out


def _report_parts(msg: Message) -> tuple[str, list[str], str]:
    """(report type, per-message/per-recipient field blocks, Message-ID of returned headers)."""
    kind = ""
    blocks: list[str] = []
    returned_id = ""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "message/disposition-notification"):
            kind = ctype
            payload = part.get_payload()
            if isinstance(payload, list):
                blocks += [str(p) for p in payload]
            else:
                raw = part.get_payload(decode=True)
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
                blocks += re.split(r"\r?\n\r?\n", text)
        elif ctype in ("text/rfc822-headers", "message/rfc822"):
            raw = part.get_payload(decode=True)
            text = (
                raw.decode("utf-8", "replace")
                if isinstance(raw, bytes)
                else str(part.get_payload())
            )
            m = re.search(r"(?im)^message-id:\s*(\S+)", text)
            if m:
                returned_id = m.group(1)
    return kind, blocks, returned_id


async def receipt_status(
    storage: Storage,
    mailbox_id: int,
    message_id: str,
    recipients: list[str],
    *,
    scan: int = 300,
) -> list[RecipientReceipt]:
    """The status of each recipient of the sent message ``message_id``."""
    status = {r.lower(): RecipientReceipt(r) for r in recipients}
    envid = message_id.strip().strip("<>")
    for item in await storage.queue.list():
        if item.envid and item.envid == envid[:100]:
            for qr in item.recipients:
                st = status.get(qr.address.lower())
                if st is not None:
                    if qr.state == "delivered":
                        st.delivery = "remis"
                    elif qr.state == "failed":
                        st.delivery = "échec"
                        st.detail = qr.diagnostic
                    else:
                        st.delivery = "en cours"
                        st.detail = item.last_error
    inbox = await storage.messages.get_folder(mailbox_id, "INBOX")
    if inbox is None:
        return list(status.values())
    msgs: list[StoredMessage] = (await storage.messages.list_messages(inbox.folder_id))[-scan:]
    for sm in msgs:
        head = b""
        async for chunk in storage.blobs.stream(sm.blob, 0, min(sm.size, 4096)):
            head += chunk
        if b"multipart/report" not in head.lower():
            continue
        raw = await storage.blobs.get(sm.blob)
        msg = email.message_from_bytes(raw, policy=compat32)
        kind, blocks, returned_id = _report_parts(msg)
        if not kind:
            continue
        per_message = _fields(blocks[0]) if blocks else {}
        ours = (
            per_message.get("original-envelope-id", "").strip("<>") == envid
            or returned_id.strip() == message_id.strip()
            or per_message.get("original-message-id", "").strip() == message_id.strip()
        )
        if not ours:
            continue
        for block in blocks:
            f = _fields(block)
            rcpt = (f.get("final-recipient") or f.get("original-recipient") or "").split(";")[-1]
            st = status.get(rcpt.strip().lower())
            if st is None:
                continue
            if kind == "message/disposition-notification":
                disp = f.get("disposition", "")
                if "displayed" in disp or "processed" in disp:
                    st.read = "lu"
                elif "deleted" in disp:
                    st.read = "supprimé sans lecture"
                st.when.append(sm.internal_date.strftime("%d/%m/%Y %H:%M"))
            else:
                action = f.get("action", "").lower()
                if action == "delivered":
                    st.delivery = "remis"
                elif action == "relayed":
                    st.delivery = "relayé"
                elif action == "failed":
                    st.delivery = "échec"
                    st.detail = f.get("diagnostic-code", f.get("status", ""))
                elif action == "delayed" and st.delivery == "en attente":
                    st.delivery = "retardé"
    return list(status.values())
