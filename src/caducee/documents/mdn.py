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

import binascii
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import Header, decode_header, make_header
from email.message import EmailMessage, Message
from email.policy import SMTP, default
from email.utils import format_datetime, make_msgid, parseaddr

from caducee.documents.mime import leaves

__all__ = [
    "ERRORS",
    "MdnInfo",
    "build_mdn",
    "build_mdn_bytes",
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


def _decode(value: object) -> str:
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except (ValueError, LookupError):
        return str(value)


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


def _one_line(value: str) -> str:
    """Unfold and collapse whitespace: nothing from the original can start a new line."""
    return " ".join(value.split())


def _encode_header(value: str) -> str:
    """RFC 2047 encoding for a header value when it is not plain ASCII."""
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=76).encode()


def _human(error: int | None) -> str:
    if error is None:
        return "Le message ci-dessous a été intégré automatiquement.\n"
    label = ERRORS.get(error, ERRORS[906])
    return (
        "Le message ci-dessous n'a pas pu être intégré automatiquement dans le logiciel "
        f"pour la raison suivante : {label}\n"
        f"Le système a retourné l'erreur {error}^{label}^messageErrorCondition\n"
    )


def build_mdn_bytes(
    original: bytes,
    *,
    final_recipient: str,
    error: int | None = None,
    mdn_from: str | None = None,
    reporting_ua: str = "caducee-integrate",
) -> tuple[str, bytes]:
    """Build the MDN answering the message ``original`` (bytes); return (recipient, MDN bytes).

    The original message is included verbatim (``message/rfc822``) and its attachments are
    re-attached with their original encoding, so nothing is decoded and re-encoded.
    """
    headers, parts = leaves(original)
    to = mdn_requested(headers) or parseaddr(str(headers.get("From", "")))[1]
    subject = _one_line(_decode(headers.get("Subject")))
    if error is not None:
        subject = f"[KO Intégration système !][{error}] {subject}"
    orig_id = _one_line(str(headers.get("Message-ID", "")))
    original_rcpt = _one_line(str(headers.get("Original-Recipient", "")))
    boundary = f"mdn-{make_msgid().strip('<>').replace('@', '.')}"
    fields = [f"Reporting-UA: {reporting_ua}"]
    fields.append(f"Original-Recipient: {original_rcpt or 'rfc822;' + final_recipient}")
    fields.append(f"Final-Recipient: rfc822;{final_recipient}")
    if orig_id:
        fields.append(f"Original-Message-ID: {orig_id}")
    fields.append(f"Disposition: {_disposition(error)}")
    top = [
        f"From: {mdn_from or final_recipient}",
        f"To: {to}",
        f"Subject: {_encode_header(subject)}",
        f"Date: {format_datetime(datetime.now(UTC))}",
        f"Message-ID: {make_msgid(domain=final_recipient.rsplit('@', 1)[-1])}",
    ]
    if orig_id:
        top += [f"In-Reply-To: {orig_id}", f"References: {orig_id}"]
    top += [
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=disposition-notification;",
        f' boundary="{boundary}"',
    ]
    crlf = b"\r\n"
    body_orig = original if original.endswith(b"\n") else original + crlf
    out = [crlf.join(h.encode("utf-8") for h in top), b"", b""]
    out += [
        f"--{boundary}".encode(),
        b'Content-Type: text/plain; charset="utf-8"',
        b"Content-Transfer-Encoding: quoted-printable",
        b"",
        binascii.b2a_qp(_human(error).encode("utf-8")).replace(b"\n", crlf),
        f"--{boundary}".encode(),
        b"Content-Type: message/disposition-notification",
        b"Content-Transfer-Encoding: 7bit",
        b"",
        crlf.join(f.encode("ascii", "replace") for f in fields) + crlf,
        f"--{boundary}".encode(),
        b"Content-Type: message/rfc822",
        b"Content-Transfer-Encoding: " + (b"7bit" if original.isascii() else b"8bit"),
        b"",
        body_orig,
    ]
    for part in parts:
        if part.filename is None:
            continue
        out.append(f"--{boundary}".encode())
        for name in ("Content-Type", "Content-Transfer-Encoding", "Content-Disposition"):
            value = part.headers.get(name)
            if value is not None:
                out.append(f"{name}: {value}".encode())
        out += [b"", part.raw_body]
    out += [f"--{boundary}--".encode(), b""]
    return to, crlf.join(out)


def build_mdn(
    original: Message,
    *,
    final_recipient: str,
    error: int | None = None,
    mdn_from: str | None = None,
    reporting_ua: str = "caducee-integrate",
) -> EmailMessage:
    """Build the MDN answering ``original``, as a parsed message (see :func:`build_mdn_bytes`)."""
    raw = (
        original.as_bytes(policy=SMTP)
        if isinstance(original, EmailMessage)
        else original.as_bytes()
    )
    _, data = build_mdn_bytes(
        raw,
        final_recipient=final_recipient,
        error=error,
        mdn_from=mdn_from,
        reporting_ua=reporting_ua,
    )
    parsed = message_from_bytes(data, policy=default)
    if not isinstance(parsed, EmailMessage):  # pragma: no cover - policy default gives one
        raise TypeError("unexpected message class")
    return parsed


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
