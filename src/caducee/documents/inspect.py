"""Inspect a CDA document, an ``IHE_XDM.zip`` or a whole message (.eml).

Returns a plain dict (JSON-ready) of the header facts and the validation verdict of each
document found. It only reports; it never logs identity data.
"""

from __future__ import annotations

import email
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from caducee.core.errors import InvalidInput
from caducee.documents.cda import CdaDocument, Code, Party, read_cda
from caducee.documents.validate import validate_cda
from caducee.documents.xdm import read_xdm
from caducee.documents.xmlsafe import MAX_XML_BYTES

__all__ = ["MAX_INPUT_BYTES", "describe_cda", "inspect_bytes", "xdm_attachments"]

MAX_INPUT_BYTES = 60 * 1024 * 1024


def _code(c: Code | None) -> dict[str, str | None] | None:
    return None if c is None else {"code": c.code, "system": c.system, "display": c.display}


def _party(p: Party | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "id": str(p.id) if p.id else None,
        "name": " ".join(x for x in (p.prefix, p.given, p.family) if x) or None,
        "specialty": _code(p.specialty),
        "organisation": p.organisation,
        "organisation_id": str(p.organisation_id) if p.organisation_id else None,
        "time": p.time,
    }


def describe_cda(doc: CdaDocument, *, schema: str | Path | None = None) -> dict[str, Any]:
    """Header facts and verdict of one CDA, as a JSON-ready dict."""
    verdict = validate_cda(doc, schema=schema)
    p = doc.patient
    st = p.ins_status
    return {
        "kind": "cda",
        "document_id": doc.unique_id or None,
        "set_id": str(doc.set_id) if doc.set_id else None,
        "version": doc.version,
        "type": _code(doc.type_code),
        "title": doc.title,
        "effective_time": doc.effective_time,
        "confidentiality": _code(doc.confidentiality),
        "language": doc.language,
        "author": _party(doc.author),
        "legal_authenticator": _party(doc.legal_authenticator),
        "patient": {
            "ins": doc.patient.ins.extension if doc.patient.ins else None,
            "ins_oid": doc.patient.ins.root if doc.patient.ins else None,
            "ins_kind": st.kind,
            "ins_test": st.test,
            "ins_key_ok": st.key_ok,
            "ins_qualified": st.qualified,
            "ins_problems": list(st.problems) + [f"missing {t}" for t in st.missing_traits],
            "birth_name": p.traits.birth_family,
            "first_birth_forename": p.traits.first_birth_given,
            "birth_forenames": p.traits.birth_givens,
            "used_name": p.used_family,
            "birth_date": p.traits.birth_date,
            "sex": p.traits.sex,
            "birthplace_cog": p.traits.birthplace_cog,
            "local_ids": [str(i) for i in p.local_ids],
            "mssante_address": p.mssante_address,
        },
        "verdict": {
            "conformant": verdict.conformant,
            "schema_checked": verdict.schema_checked,
            "schema_ok": verdict.schema_ok,
            "reasons": list(verdict.reasons),
        },
    }


def xdm_attachments(msg: Message) -> list[bytes]:
    """The ``IHE_XDM.zip`` attachments of a message (by name, else by zip content type)."""
    found: list[bytes] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        name = (part.get_filename() or "").lower()
        ctype = part.get_content_type()
        if name.endswith("ihe_xdm.zip") or (
            ctype in ("application/zip", "application/x-zip-compressed") and name.endswith(".zip")
        ):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                found.append(payload)
    return found


def _inspect_xdm(data: bytes, schema: str | Path | None) -> dict[str, Any]:
    pkg = read_xdm(data)
    return {
        "kind": "xdm",
        "subset": pkg.subset,
        "problems": list(pkg.problems),
        "entries": [
            {
                "uri": e.uri,
                "mime_type": e.mime_type,
                "unique_id": e.unique_id,
                "hash_ok": e.hash_ok,
                "size_ok": e.size_ok,
                "document": describe_cda(e.cda, schema=schema) if e.cda is not None else None,
            }
            for e in pkg.entries
        ],
    }


def inspect_bytes(data: bytes, *, schema: str | Path | None = None) -> dict[str, Any]:
    """Inspect ``data``: CDA XML, XDM zip, or RFC 5322 message (detected from content)."""
    if len(data) > MAX_INPUT_BYTES:
        raise InvalidInput(f"input is too large ({len(data)} bytes, limit {MAX_INPUT_BYTES})")
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    if data[:4] == b"PK\x03\x04":
        return _inspect_xdm(data, schema)
    if head.startswith(b"<"):
        if len(data) > MAX_XML_BYTES:
            raise InvalidInput("CDA document is too large")
        return describe_cda(read_cda(data), schema=schema)
    msg = email.message_from_bytes(data, policy=default_policy)
    if not msg.keys():
        raise InvalidInput("input is neither a CDA document, an XDM zip nor a message")
    xdms = xdm_attachments(msg)
    return {
        "kind": "message",
        "subject": str(msg.get("Subject", "")),
        "message_id": str(msg.get("Message-ID", "")) or None,
        "x_mss": {
            k: str(msg.get(k))
            for k in ("X-MSS-CODECDA", "X-MSS-INS", "X-MSS-NIL", "X-MSS-MES")
            if msg.get(k) is not None
        },
        "mdn_requested": msg.get("Disposition-Notification-To") is not None,
        "attachments": [_inspect_xdm(x, schema) for x in xdms],
        "problems": [] if xdms else ["message carries no IHE_XDM.zip attachment"],
    }
