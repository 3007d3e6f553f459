"""Message Disposition Notifications (RFC 8098) in the ANS profile for automated integration.

Profile (ANS volet "transmission à un LPS d'un document CDA reçu par courriel MSSanté",
``struct-msg-mdn``): ``multipart/report; report-type=disposition-notification`` with a human
part (error code and label), a ``message/disposition-notification`` part (``Original-Recipient``,
``Final-Recipient``, ``Original-Message-ID``, ``Disposition``), the original message, and its
attachments (``IHE_XDM.zip``, PDF) re-attached. Success is
``automatic-action/MDN-sent-automatically; processed``; an error is
``…; processed/Error: 902^Identifiant de patient inconnu^messageErrorCondition``, and the
subject then starts with ``[KO Intégration système !][902]``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr

__all__ = [
    "ERRORS",
    "MdnInfo",
    "build_mdn",
    "mdn_requested",
    "parse_mdn",
]

#: ANS applicationErrorCondition table (consumer errors 900-906).
ERRORS: dict[int, str] = {
    900: "Version du document incorrecte lors d'une demande de remplacement/suppression",
    901: "Auteur non autorisé à remplacer ou supprimer un document",
    902: "Identifiant de patient inconnu",
    903: "INS non présent dans le document",
    904: "L'INS transmis ne correspond pas exactement à celui stocké dans la base du consommateur",
    905: "L'INS transmis n'est pas complet",
    906: "Erreur 'Autre'",
}


def mdn_requested(msg: Message) -> str | None:
    """The address to send an automatic MDN to, or ``None`` (RFC 8098 §2.1).

    An MDN is sent only when ``Disposition-Notification-To`` is present, and automatically only
    when it names the same address as ``Return-Path`` (when that header is present).
    """
    dnt = msg.get("Disposition-Notification-To")
    if not dnt:
        return None
    addr = parseaddr(str(dnt))[1]
    if not addr or "\r" in addr or "\n" in addr:
        return None
    rp = msg.get("Return-Path")
    if rp:
        rp_addr = parseaddr(str(rp))[1]
        if rp_addr and rp_addr.lower() != addr.lower():
            return None
    return addr


def _ascii(text: str) -> str:
    """RFC 8098 fields are US-ASCII: drop the diacritics of the French labels."""
    decomposed = unicodedata.normalize("NFKD", text.replace("’", "'"))
    return decomposed.encode("ascii", "ignore").decode("ascii")


def _disposition(error: int | None) -> str:
    base = "automatic-action/MDN-sent-automatically; processed"
    if error is None:
        return base
    label = _ascii(ERRORS.get(error, ERRORS[906]))
    return f"{base}/Error: {error}^{label}^messageErrorCondition"


def build_mdn(
    original: Message,
    *,
    final_recipient: str,
    error: int | None = None,
    mdn_from: str | None = None,
    reporting_ua: str = "caducee-integrate",
) -> EmailMessage:
    """Build the MDN answering ``original`` on behalf of ``final_recipient``."""
    to = mdn_requested(original) or parseaddr(str(original.get("From", "")))[1]
    subject = str(original.get("Subject", ""))
    if error is not None:
        subject = f"[KO Intégration système !][{error}] {subject}"
    mdn = EmailMessage(policy=SMTP)
    mdn["From"] = mdn_from or final_recipient
    mdn["To"] = to
    mdn["Subject"] = subject
    mdn["Date"] = format_datetime(datetime.now(UTC))
    mdn["Message-ID"] = make_msgid(domain=final_recipient.rsplit("@", 1)[-1])
    orig_id = str(original.get("Message-ID", "")).strip()
    if orig_id:
        mdn["In-Reply-To"] = orig_id
        mdn["References"] = orig_id
    mdn["Auto-Submitted"] = "auto-replied"
    if error is None:
        human = "Le message ci-dessous a été intégré automatiquement.\n"
    else:
        label = ERRORS.get(error, ERRORS[906])
        human = (
            "Le message ci-dessous n'a pas pu être intégré automatiquement dans le logiciel "
            f"pour la raison suivante : {label}\n"
            f"Le système a retourné l'erreur {error}^{label}^messageErrorCondition\n"
        )
    mdn.set_content(human, subtype="plain", charset="utf-8", cte="quoted-printable")
    original_rcpt = str(original.get("Original-Recipient", "")).strip()
    fields = [f"Reporting-UA: {reporting_ua}"]
    if original_rcpt:
        fields.append(f"Original-Recipient: {original_rcpt}")
    else:
        fields.append(f"Original-Recipient: rfc822;{final_recipient}")
    fields.append(f"Final-Recipient: rfc822;{final_recipient}")
    if orig_id:
        fields.append(f"Original-Message-ID: {orig_id}")
    fields.append(f"Disposition: {_disposition(error)}")
    report = EmailMessage(policy=SMTP)
    report["Content-Type"] = "message/disposition-notification"
    report["Content-Transfer-Encoding"] = "8bit"
    report.set_payload("\r\n".join(fields) + "\r\n", charset=None)
    mdn.make_mixed()
    mdn.attach(report)
    original_part = EmailMessage(policy=SMTP)
    original_part.set_content(original)
    mdn.attach(original_part)
    for part in original.walk():
        name = part.get_filename()
        if name and not part.is_multipart():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                att = EmailMessage(policy=SMTP)
                maintype, _, subtype = part.get_content_type().partition("/")
                att.set_content(payload, maintype=maintype, subtype=subtype, filename=name)
                mdn.attach(att)
    mdn.replace_header("Content-Type", "multipart/report; report-type=disposition-notification")
    mdn.set_boundary(f"mdn-{make_msgid().strip('<>').replace('@', '.')}")
    return mdn


@dataclass(frozen=True)
class MdnInfo:
    original_message_id: str | None
    final_recipient: str | None
    disposition: str
    error_code: int | None
    error_label: str | None

    @property
    def processed(self) -> bool:
        return "processed" in self.disposition and self.error_code is None


_ERR = re.compile(r"error:\s*(\d{3})\^([^\^]*)", re.IGNORECASE)


def parse_mdn(msg: Message) -> MdnInfo | None:
    """Read the machine part of an MDN, or ``None`` when ``msg`` is not one."""
    for part in msg.walk():
        if part.get_content_type() != "message/disposition-notification":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            text = "".join(str(p) for p in payload)
        else:
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
        fields: dict[str, str] = {}
        for line in re.split(r"\r?\n(?![ \t])", text):
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = " ".join(value.split())
        disp = fields.get("disposition", "")
        m = _ERR.search(disp)
        final = fields.get("final-recipient", "")
        return MdnInfo(
            original_message_id=fields.get("original-message-id"),
            final_recipient=final.split(";", 1)[-1].strip() or None,
            disposition=disp,
            error_code=int(m.group(1)) if m else None,
            error_label=m.group(2) if m else None,
        )
    return None
