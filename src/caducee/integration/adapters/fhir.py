"""FHIR R4 hand-off: ``Binary`` (the CDA) and ``DocumentReference`` (its metadata), written with
``PUT`` on ids derived from the document id, so a replay updates the same resources instead of
creating copies (FHIR R4 RESTful API §3.1.0.4 update-as-create).

Replacement sets ``relatesTo.code = replaces``; deletion marks the DocumentReference
``entered-in-error``. HTTP 4xx is a permanent refusal (906), 5xx or no answer is transient.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
from datetime import datetime
from typing import Any

import httpx

from caducee.integration.adapters import AdapterRejected, AdapterUnavailable, Delivery

__all__ = ["FhirAdapter", "document_reference", "fhir_id"]

_CONF_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"


def fhir_id(doc_id: str) -> str:
    return "cda-" + hashlib.sha256(doc_id.encode()).hexdigest()[:40]


def _instant(ts: str | None) -> str | None:
    if not ts or len(ts) < 8:
        return None
    for fmt, size in (("%Y%m%d%H%M%S%z", 19), ("%Y%m%d%H%M%z", 17)):
        if len(ts) == size:
            try:
                return datetime.strptime(ts, fmt).isoformat()
            except ValueError:
                return None
    if len(ts) >= 14:
        return datetime.strptime(ts[:14], "%Y%m%d%H%M%S").isoformat() + "Z"
    return None


def _master_identifier(d: Delivery) -> dict[str, str]:
    """The CDA ``id`` as an Identifier: ``urn:oid:root`` alone, or root as system + extension."""
    ident = d.doc.id
    if ident is None:
        return {"value": d.doc.unique_id}
    if ident.extension:
        return {"system": f"urn:oid:{ident.root}", "value": ident.extension}
    return {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{ident.root}"}


def document_reference(d: Delivery, binary_id: str, *, patient_system: str) -> dict[str, Any]:
    doc = d.doc
    status = "entered-in-error" if d.action == "delete" else "current"
    subject: dict[str, Any]
    if doc.patient.ins is not None:
        subject = {
            "identifier": {
                "system": f"urn:oid:{doc.patient.ins.root}",
                "value": doc.patient.ins.extension,
            }
        }
    else:
        subject = {"identifier": {"system": patient_system, "value": d.patient.id}}
    res: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": fhir_id(doc.unique_id),
        "masterIdentifier": _master_identifier(d),
        "identifier": [
            {"system": patient_system, "value": d.patient.id, "type": {"text": "patient-local-id"}}
        ],
        "status": status,
        "subject": subject,
        "content": [
            {
                "attachment": {
                    "contentType": "text/xml",
                    "url": f"Binary/{binary_id}",
                    "size": len(doc.raw),
                    "hash": base64.b64encode(
                        hashlib.sha1(doc.raw, usedforsecurity=False).digest()
                    ).decode(),
                    "title": doc.title or "",
                }
            }
        ],
    }
    if doc.type_code:
        res["type"] = {
            "coding": [
                {
                    "system": "http://loinc.org"
                    if doc.type_code.system == "2.16.840.1.113883.6.1"
                    else f"urn:oid:{doc.type_code.system}",
                    "code": doc.type_code.code,
                    "display": doc.type_code.display or "",
                }
            ]
        }
    when = _instant(doc.effective_time)
    if when:
        res["date"] = when
    if doc.author and (doc.author.family or doc.author.organisation):
        name = " ".join(x for x in (doc.author.given, doc.author.family) if x)
        res["author"] = [{"display": name or doc.author.organisation}]
    if doc.confidentiality:
        res["securityLabel"] = [
            {"coding": [{"system": _CONF_SYSTEM, "code": doc.confidentiality.code}]}
        ]
    if d.action in ("replace", "delete") and d.parent_document_id:
        res["relatesTo"] = [
            {
                "code": "replaces",
                "target": {"reference": f"DocumentReference/{fhir_id(d.parent_document_id)}"},
            }
        ]
    return res


class FhirAdapter:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        ca_file: str | None = None,
        timeout: float = 30.0,
        patient_system: str = "urn:caducee:patient-local-id",
        name: str = "fhir",
    ) -> None:
        self.name = name
        self.base = base_url.rstrip("/")
        headers = {"Accept": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.patient_system = patient_system
        verify = ssl.create_default_context(cafile=ca_file)
        self._client = httpx.AsyncClient(headers=headers, verify=verify, timeout=timeout)

    async def _put(self, path: str, resource: dict[str, Any]) -> None:
        try:
            resp = await self._client.put(
                f"{self.base}/{path}",
                json=resource,
                headers={"Content-Type": "application/fhir+json"},
            )
        except httpx.HTTPError as exc:
            raise AdapterUnavailable(f"FHIR server unreachable: {type(exc).__name__}") from exc
        if resp.status_code >= 500:
            raise AdapterUnavailable(f"FHIR server error {resp.status_code}")
        if resp.status_code >= 400:
            raise AdapterRejected(
                906, f"FHIR server refused {path.split('/')[0]}: {resp.status_code}"
            )

    async def deliver(self, delivery: Delivery) -> None:
        doc = delivery.doc
        binary_id = fhir_id(doc.unique_id)
        if delivery.action != "delete":
            await self._put(
                f"Binary/{binary_id}",
                {
                    "resourceType": "Binary",
                    "id": binary_id,
                    "contentType": "text/xml",
                    "data": base64.b64encode(doc.raw).decode("ascii"),
                },
            )
        ref = document_reference(delivery, binary_id, patient_system=self.patient_system)
        await self._put(f"DocumentReference/{ref['id']}", ref)

    async def close(self) -> None:
        await self._client.aclose()
