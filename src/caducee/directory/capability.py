"""The CapabilityStatement served at ``/metadata`` (FHIR R4 §CapabilityStatement)."""

from __future__ import annotations

from typing import Any

__all__ = ["capability_statement"]

_SEARCH = {
    "Practitioner": [
        ("_id", "token"), ("_lastUpdated", "date"), ("active", "token"), ("identifier", "token"),
        ("identifier-type", "token"), ("name", "string"), ("family", "string"),
        ("given", "string"), ("qualification-code", "token"), ("mailbox-mss", "string"),
        ("address-city", "string"), ("address-postalcode", "string"),
        ("mailbox-mss-type", "token"),
    ],
    "PractitionerRole": [
        ("_id", "token"), ("_lastUpdated", "date"), ("active", "token"), ("identifier", "token"),
        ("practitioner", "reference"), ("organization", "reference"), ("role", "token"),
        ("mailbox-mss", "string"), ("mailbox-mss-type", "token"),
    ],
    "Organization": [
        ("_id", "token"), ("_lastUpdated", "date"), ("active", "token"), ("identifier", "token"),
        ("identifier-type", "token"), ("name", "string"), ("address-city", "string"),
        ("address-postalcode", "string"), ("type", "token"), ("mailbox-mss", "string"),
        ("mailbox-mss-type", "token"),
    ],
}  # fmt: skip
_INCLUDE = {
    "PractitionerRole": ["PractitionerRole:practitioner", "PractitionerRole:organization"],
}
_REVINCLUDE = {
    "Practitioner": ["PractitionerRole:practitioner"],
    "Organization": ["PractitionerRole:organization"],
}


def capability_statement(base: str) -> dict[str, Any]:
    resources = []
    for kind, params in _SEARCH.items():
        res: dict[str, Any] = {
            "type": kind,
            "interaction": [
                {"code": "read"},
                {"code": "search-type"},
                {"code": "patch"},
            ],
            "searchParam": [{"name": n, "type": t} for n, t in params],
        }
        if kind in _INCLUDE:
            res["searchInclude"] = _INCLUDE[kind]
        if kind in _REVINCLUDE:
            res["searchRevInclude"] = _REVINCLUDE[kind]
        resources.append(res)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-28",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "implementation": {"description": "Caducée national directory", "url": base},
        "rest": [{"mode": "server", "resource": resources}],
    }
