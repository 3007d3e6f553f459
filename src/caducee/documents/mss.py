"""MSSanté messages carrying clinical documents (Référentiel #2 "ECO.2.x" rules).

- ECO.2.1.1: documents travel as an ``IHE_XDM.zip`` attachment;
- ECO.2.1.3: subject ``XDM/1.0/DDM+<libellé> <NOM> <prénom> <date de naissance>``;
- ECO.2.1.6: PDF named ``<date de l'acte>_<type document>_<NOM>_<prenom>_<numéro de dossier>.pdf``;
- ECO.2.2.3: UTF-8 text parts; ECO.2.2.6: patient addresses only from a qualified INS;
- ECO.2.4.1-3: ``X-MSS-CODECDA``, ``X-MSS-INS``, ``X-MSS-NIL``; ECO.2.2.8: ``X-MSS-MES: FIN``;
- ECO.2.3.1 / ECO.3.1.6: DSN requested at submission, MDN via ``Disposition-Notification-To``.
- Mon Espace Santé: 25 MB total per message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from caducee.core.errors import InvalidInput, QuotaExceeded
from caducee.documents.cda import CdaDocument, read_cda
from caducee.documents.xdm import build_xdm

__all__ = [
    "MES_MAX_BYTES",
    "OutgoingDocuments",
    "build_message",
    "build_subject",
    "is_patient_address",
    "pdf_filename",
    "subject_prefix_stripped",
]

MES_MAX_BYTES = 25 * 1024 * 1024
SUBJECT_PREFIX = "XDM/1.0/DDM+"
_PATIENT_DOMAIN = re.compile(r"@patient\.", re.IGNORECASE)


def is_patient_address(address: str) -> bool:
    """True for a Mon Espace Santé address (``…@patient.<domain>``)."""
    return bool(_PATIENT_DOMAIN.search(address))


def _birth(cda: CdaDocument) -> str:
    b = cda.patient.traits.birth_date or ""
    return f"{b[6:8]}/{b[4:6]}/{b[:4]}" if len(b) >= 8 else ""


def build_subject(cda: CdaDocument) -> str:
    """``XDM/1.0/DDM+<libellé> <NOM> <prénom> <date de naissance>`` (ECO.2.1.3)."""
    label = (cda.type_code.display if cda.type_code and cda.type_code.display else cda.title) or ""
    t = cda.patient.traits
    family = (t.birth_family or cda.patient.used_family or "").upper()
    given = t.first_birth_given or cda.patient.used_given or ""
    parts = [p for p in (label, family, given, _birth(cda)) if p]
    return SUBJECT_PREFIX + " ".join(" ".join(parts).split())


def subject_prefix_stripped(subject: str) -> str:
    """The subject as a client should display it (SC.MSS/UX.28 hides the prefix)."""
    return subject[len(SUBJECT_PREFIX) :] if subject.startswith(SUBJECT_PREFIX) else subject


def _safe_name_part(value: str) -> str:
    cleaned = re.sub(r"[\\/:*?\"<>|\r\n\t]", "", value)
    return " ".join(cleaned.split())


def pdf_filename(cda: CdaDocument) -> str:
    """``<date de l'acte>_<type document>_<NOM>_<prenom>_<numéro de dossier>.pdf`` (ECO.2.1.6)."""
    date = (cda.service_start or cda.effective_time or "")[:8]
    kind = cda.type_code.display if cda.type_code and cda.type_code.display else (cda.title or "")
    t = cda.patient.traits
    family = (t.birth_family or cda.patient.used_family or "").upper()
    given = t.first_birth_given or cda.patient.used_given or ""
    folder = cda.patient.local_ids[0].extension if cda.patient.local_ids else ""
    parts = [date, kind, family, given, folder or ""]
    return "_".join(_safe_name_part(p) for p in parts) + ".pdf"


@dataclass(frozen=True)
class OutgoingDocuments:
    """What :func:`build_message` needs to know about the documents it packs."""

    cdas: tuple[CdaDocument, ...]
    xdm: bytes
    pdf: bytes | None


def build_message(
    *,
    sender: str,
    recipients: list[str],
    cdas: list[bytes],
    pdf: bytes | None = None,
    text: str | None = None,
    nil: str = "CADUCEE",
    end_exchange: bool = False,
    request_mdn: bool = True,
    sender_name: str | None = None,
    reply_to: str | None = None,
    max_bytes: int | None = None,
    in_reply_to: str | None = None,
    delete: bool = False,
) -> EmailMessage:
    """Build the RFC 5322 message for ``cdas`` (bytes) and an optional PDF.

    Patient recipients need the document's patient to carry a qualified INS whose matricule is
    the address local part (ECO.2.2.6); the whole message then stays under 25 MB.
    """
    if not recipients:
        raise InvalidInput("at least one recipient is needed")
    if not cdas:
        raise InvalidInput("at least one CDA document is needed")
    docs = [read_cda(raw) for raw in cdas]
    first = docs[0]
    to_patient = [r for r in recipients if is_patient_address(r)]
    for rcpt in to_patient:
        status = first.patient.ins_status
        if not status.qualified:
            raise InvalidInput(
                "a patient address needs a qualified INS in the document (ECO.2.2.6)"
            )
        local = rcpt.split("@", 1)[0]
        ins = first.patient.ins
        if ins is None or (ins.extension or "").lower() != local.lower():
            raise InvalidInput("patient address does not match the document's INS (ECO.2.2.6)")
    if end_exchange and not to_patient:
        raise InvalidInput("X-MSS-MES: FIN applies only to messages towards a patient")
    limit = min(max_bytes or MES_MAX_BYTES, MES_MAX_BYTES) if to_patient else max_bytes
    if limit is not None and pdf is not None and len(pdf) * 4 // 3 > limit:
        # Base64 alone takes the PDF over the limit: refuse before building anything.
        raise QuotaExceeded(f"the PDF alone exceeds the {limit}-byte message limit")
    xdm = build_xdm(cdas, pdf, deprecated=delete)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = (
        Address(display_name=sender_name or "", addr_spec=sender) if sender_name else sender
    )
    msg["To"] = ", ".join(recipients)
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = build_subject(first)
    msg["Date"] = format_datetime(datetime.now(UTC))
    domain = sender.rsplit("@", 1)[-1]
    msg["Message-ID"] = make_msgid(domain=domain)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    codes = [d.type_code.code for d in docs if d.type_code]
    if codes:
        msg["X-MSS-CODECDA"] = ",".join(codes)
    msg["X-MSS-INS"] = "O" if all(d.patient.ins_status.qualified for d in docs) else "N"
    msg["X-MSS-NIL"] = nil
    if end_exchange:
        msg["X-MSS-MES"] = "FIN"
    if request_mdn:
        msg["Disposition-Notification-To"] = sender
    body = text if text is not None else f"Document : {subject_prefix_stripped(msg['Subject'])}\n"
    msg.set_content(body, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_attachment(xdm, maintype="application", subtype="zip", filename="IHE_XDM.zip")
    if pdf is not None:
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=pdf_filename(first))
    size = len(msg.as_bytes())
    if limit is not None and size > limit:
        raise QuotaExceeded(f"message is {size} bytes, over the {limit}-byte limit")
    return msg
