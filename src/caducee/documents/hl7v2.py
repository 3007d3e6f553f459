"""HL7 v2 for the CI-SIS volets: MDM^T02/T10/T04 towards practice software, ACK reading,
ORU^R01 lab results carrying a CDA, and MLLP framing.

- MDM follows the ANS volet "Transmission à un LPS d'un document CDA reçu par courriel
  MSSanté" (HL7 v2.6, MSH-21 ``CISIS_CDA_HL7_LPS``, ORC-1 NW/RO/CA, TXA-12/13 unique/parent
  document id, TXA-17 AU, OBX-5 ED with the CDA in Base64, PRT segments pre-adopted from v2.9
  for sender (SB), recipients (RCT) and reply address (REPLY), a second OBX with the subject and
  body).
- ORU^R01 follows the volet "Transmission de documents CDA en HL7v2" (OBX ED carrying the
  CR-BIO CDA, ORC-1 NW/RO/CA).
- MLLP: ``<VT> message <FS><CR>`` (HL7 v2 Appendix C).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

from caducee.core.errors import InvalidInput
from caducee.documents.cda import CdaDocument, Party

__all__ = [
    "MLLP_END",
    "MLLP_START",
    "Ack",
    "MdmRequest",
    "OruDocument",
    "build_ack",
    "build_mdm",
    "escape",
    "mllp_frame",
    "parse_ack",
    "parse_oru",
    "split_segments",
]

MLLP_START = b"\x0b"
MLLP_END = b"\x1c\x0d"
_TRIGGER = {"new": ("T02", "NW"), "replace": ("T10", "RO"), "delete": ("T04", "CA")}
_INS_AUTH = {
    "1.2.250.1.213.1.4.8": "ASIP-SANTE-INS-NIR",
    "1.2.250.1.213.1.4.9": "ASIP-SANTE-INS-NIA",
    "1.2.250.1.213.1.4.10": "ASIP-SANTE-INS-NIR",
    "1.2.250.1.213.1.4.11": "ASIP-SANTE-INS-NIA",
}


def escape(value: str | None) -> str:
    """Escape HL7 delimiters in a field value (HL7 v2 §2.7)."""
    if not value:
        return ""
    out = value.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    out = out.replace("&", "\\T\\").replace("~", "\\R\\")
    return out.replace("\r", " ").replace("\n", " ")


def mllp_frame(message: str | bytes) -> bytes:
    data = message.encode("utf-8") if isinstance(message, str) else message
    return MLLP_START + data + MLLP_END


def _ts(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")


def _xcn(p: Party | None) -> str:
    if p is None:
        return ""
    ident = escape(p.id.extension) if p.id and p.id.extension else ""
    root = p.id.root if p.id else ""
    kind = "IDNPS" if root.startswith("1.2.250.1.71.4.2.1") else "EI"
    return f"{ident}^{escape(p.family)}^{escape(p.given)}^^^^^^&{root}&ISO^D^^^{kind}"


@dataclass(frozen=True)
class MdmRequest:
    """Everything an MDM message carries besides the CDA header facts."""

    action: str  # new / replace / delete
    control_id: str
    parent_document_id: str | None = None
    sender_email: str | None = None
    recipient_email: str | None = None
    reply_to: str | None = None
    subject: str | None = None
    body: str | None = None
    sending_app: str = "CADUCEE"
    sending_facility: str = "CADUCEE"
    receiving_app: str = "LPS"
    receiving_facility: str = "LPS"


def build_mdm(doc: CdaDocument, req: MdmRequest, *, now: datetime | None = None) -> str:
    """An MDM^T02/T10/T04 message (segments joined by ``\\r``) for ``doc``."""
    if req.action not in _TRIGGER:
        raise InvalidInput(f"unknown MDM action {req.action!r}")
    trigger, orc = _TRIGGER[req.action]
    ts = _ts(now)
    p = doc.patient
    t = p.traits
    ids: list[str] = []
    if p.ins is not None:
        auth = _INS_AUTH.get(p.ins.root, "INS")
        ids.append(f"{escape(p.ins.extension)}^^^{auth}&{p.ins.root}&ISO^INS")
    for lid in p.local_ids:
        ids.append(f"{escape(lid.extension)}^^^&{lid.root}&ISO^PI")
    name = f"{escape(t.birth_family)}^{escape(t.first_birth_given)}^{escape(t.birth_givens)}^^^^L"
    birthplace = f"^^^^^^BDL^^{escape(t.birthplace_cog)}" if t.birthplace_cog else ""
    code = doc.type_code
    code_str = f"{escape(code.code)}^{escape(code.display)}^LN" if code else ""
    cda_b64 = base64.b64encode(doc.raw).decode("ascii")
    author_id = doc.author.id.extension if doc.author and doc.author.id else ""
    org = doc.author.organisation if doc.author else None
    segs = [
        f"MSH|^~\\&|{req.sending_app}|{req.sending_facility}|{req.receiving_app}|"
        f"{req.receiving_facility}|{ts}||MDM^{trigger}^MDM_T02|{escape(req.control_id)}|P|2.6|||||"
        "FRA|UNICODE UTF-8|||1.1^CISIS_CDA_HL7_LPS",
        f"EVN||{ts}",
        f"PID|||{'~'.join(ids)}||{name}||{escape(t.birth_date)}|{escape(t.sex)}|||{birthplace}",
        "PV1|1|N",
        f"ORC|{orc}|",
        f"OBR|1|||{code_str}|",
        f"TXA|1|{escape(code.code) if code else ''}|TEXT|{escape(doc.effective_time)}||||||||"
        f"{escape(doc.unique_id)}^{escape(org)}|{escape(req.parent_document_id)}||||AU|||||"
        f"{escape(author_id)}",
        f"OBX|1|ED|{code_str}||^text^XML^Base64^{cda_b64}||||||F|",
    ]
    if req.sender_email:
        segs.append(
            f"PRT||UC||SB^^participation|{_xcn(doc.author)}||||||||||^^X.400^{escape(req.sender_email)}"
        )
    if req.recipient_email:
        segs.append(f"PRT||UC||RCT^^participation|||||||||||^^X.400^{escape(req.recipient_email)}")
    if req.reply_to:
        segs.append(f"PRT||UC||REPLY^^participation|||||||||||^^X.400^{escape(req.reply_to)}")
    if req.subject is not None:
        body = base64.b64encode((req.body or "").encode("utf-8")).decode("ascii")
        segs.append(f"OBX|2|ED|1^{escape(req.subject)}||^text^^Base64^{body}||||||F|")
    return "\r".join(segs) + "\r"


def split_segments(message: str | bytes) -> list[list[str]]:
    """Split an ER7 message into segments of fields (field separator read from MSH-1)."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    text = text.strip("\x0b\x1c\r\n ")
    if not text.startswith("MSH") or len(text) < 8:
        raise InvalidInput("HL7 v2 message does not start with an MSH segment")
    sep = text[3]
    lines = [s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s]
    return [line.split(sep) for line in lines]


def _seg(segments: list[list[str]], name: str) -> list[str] | None:
    return next((s for s in segments if s and s[0] == name), None)


def _field(seg: list[str] | None, idx: int) -> str:
    """HL7 field ``idx`` (1-based); for MSH the separator itself counts as MSH-1."""
    if seg is None:
        return ""
    pos = idx - 1 if seg[0] == "MSH" else idx
    return seg[pos] if 0 <= pos < len(seg) else ""


@dataclass(frozen=True)
class Ack:
    code: str  # AA / AE / AR (or CA / CE / CR)
    control_id: str
    error_code: str | None = None
    app_error: str | None = None
    text: str | None = None

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")


def parse_ack(message: str | bytes) -> Ack:
    segs = split_segments(message)
    msa = _seg(segs, "MSA")
    if msa is None:
        raise InvalidInput("HL7 ACK has no MSA segment")
    err = _seg(segs, "ERR")
    comp = _field(segs[0], 2)[:1] or "^"
    return Ack(
        code=_field(msa, 1),
        control_id=_field(msa, 2),
        error_code=_field(err, 3).split(comp)[0] or None if err else None,
        app_error=_field(err, 5).split(comp)[0] or None if err else None,
        text=_field(msa, 3) or None,
    )


def build_ack(
    message: str | bytes,
    *,
    code: str = "AA",
    error: int | None = None,
    label: str | None = None,
    app: str = "CADUCEE",
    facility: str = "CADUCEE",
) -> str:
    """An ACK for ``message``; ``error`` (900-906) goes to ERR-5 as the ANS volet says."""
    segs = split_segments(message)
    msh = segs[0]
    msg_type = _field(msh, 9).split("^")
    trigger = msg_type[1] if len(msg_type) > 1 else ""
    out = [
        f"MSH|^~\\&|{app}|{facility}|{_field(msh, 3)}|{_field(msh, 4)}|{_ts()}||ACK^{trigger}^ACK|"
        f"ACK{_field(msh, 10)}|P|{_field(msh, 12) or '2.5'}|||||FRA|UNICODE UTF-8",
        f"MSA|{code}|{_field(msh, 10)}",
    ]
    if error is not None:
        detail = f"{error}^{escape(label)}^applicationErrorCondition"
        out.append(f"ERR|||207^Application error^HL70357|E|{detail}")
    return "\r".join(out) + "\r"


@dataclass(frozen=True)
class OruDocument:
    """A CDA carried by an ORU^R01, with the order control (NW / RO / CA / SC)."""

    control_id: str
    order_control: str
    cda: bytes
    ins: str | None


def parse_oru(message: str | bytes, *, limit: int = 40 * 1024 * 1024) -> list[OruDocument]:
    """The CDA documents of an ORU^R01 (OBX of type ED, Base64 XML). Non-CDA OBX are skipped."""
    raw = message.encode("utf-8") if isinstance(message, str) else message
    if len(raw) > limit:
        raise InvalidInput(f"HL7 message is too large ({len(raw)} bytes)")
    segs = split_segments(raw)
    msh = segs[0]
    if not _field(msh, 9).startswith("ORU"):
        raise InvalidInput(f"not an ORU message: {_field(msh, 9)!r}")
    comp = _field(msh, 2)[:1] or "^"
    orc = _field(_seg(segs, "ORC"), 1) or "NW"
    pid3 = _field(_seg(segs, "PID"), 3)
    ins = None
    for rep in pid3.split("~"):
        parts = rep.split(comp)
        if len(parts) > 4 and parts[4] == "INS":
            ins = parts[0]
    docs: list[OruDocument] = []
    for seg in segs:
        if seg[0] != "OBX" or _field(seg, 2) != "ED":
            continue
        value = _field(seg, 5).split(comp)
        if len(value) < 5 or value[3].lower() != "base64":
            continue
        try:
            data = base64.b64decode(value[4], validate=False)
        except (binascii.Error, ValueError):
            continue
        if b"ClinicalDocument" not in data[:4096]:
            continue
        docs.append(OruDocument(_field(msh, 10), orc, data, ins))
    return docs
