"""Mapping of the directory to FHIR R4 resources, as the Annuaire Santé FHIR API v2 shows them.

Profiles, identifier systems and extensions follow the French directory IG (notes §6.1, §6.4,
§5.3): IDNPS ``urn:oid:1.2.250.1.71.4.2.1``, RPPS ``https://rpps.esante.gouv.fr``, IDNST
``urn:oid:1.2.250.1.71.4.2.2``, FINESS ``https://finess.esante.gouv.fr``; each BAL is a
``telecom`` with the ``fr-core-contact-point-email-type`` and ``as-ext-mailbox-mss-metadata``
extensions. Mailboxes on liste rouge are never mapped; phone numbers, fax, e-mail and the
mailbox ``responsible`` only when the caller is an authenticated professional.
"""

from __future__ import annotations

from typing import Any

from caducee.directory.codes import (
    SYS_ADELI,
    SYS_FINESS,
    SYS_ID_TYPE,
    SYS_IDNPS,
    SYS_IDNST,
    SYS_RPPS,
    SYS_SIRENE,
    TRE_G15,
    TRE_R02,
    TRE_R09,
    TRE_R23,
    TRE_R38,
    TRE_R256,
    TRE_R257,
    URL_EMAIL_TYPE,
    URL_MAILBOX_METADATA,
)
from caducee.directory.model import Activity, Mailbox, Organization, Person

__all__ = [
    "PROFILE",
    "mailbox_contact_point",
    "operation_outcome",
    "organization",
    "practitioner",
    "practitioner_role",
]

JSON = dict[str, Any]
_SD = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/"
PROFILE = {
    "Practitioner": _SD + "as-dp-practitioner",
    "PractitionerRole": _SD + "as-dp-practitionerrole",
    "Organization": _SD + "as-dp-organization",
}
URL_INSEE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"
TRE_R13 = "https://mos.esante.gouv.fr/NOS/TRE_R13-Commune/FHIR/TRE-R13-Commune"


def _meta(kind: str, updated: str) -> JSON:
    meta: JSON = {"profile": [PROFILE[kind]]}
    if updated:
        meta["lastUpdated"] = updated
    return meta


def _ident(system: str, value: str, type_code: str) -> JSON:
    return {
        "use": "official",
        "type": {"coding": [{"system": SYS_ID_TYPE, "code": type_code}]},
        "system": system,
        "value": value,
    }


def mailbox_contact_point(m: Mailbox, *, authenticated: bool = False) -> JSON:
    """A BAL as a ContactPoint (AS Mailbox MSS profile)."""
    meta: list[JSON] = [
        {"url": "type", "valueCodeableConcept": {"coding": [{"system": TRE_R257, "code": m.type}]}}
    ]
    if m.description:
        meta.append({"url": "description", "valueString": m.description})
    if m.service:
        meta.append({"url": "service", "valueString": m.service})
    if m.responsible and authenticated:
        meta.append({"url": "responsible", "valueString": m.responsible})
    meta.append({"url": "listeRouge", "valueBoolean": m.liste_rouge})
    if m.demat:
        meta.append({"url": "digitization", "valueBoolean": m.demat == "O"})
    cp: JSON = {
        "extension": [
            {"url": URL_EMAIL_TYPE, "valueCoding": {"system": TRE_R256, "code": "MSSANTE"}},
            {"url": URL_MAILBOX_METADATA, "extension": meta},
        ],
        "system": "email",
        "value": m.address,
    }
    if m.rank:
        cp["rank"] = m.rank
    return cp


def _boxes(boxes: tuple[Mailbox, ...], authenticated: bool) -> list[JSON]:
    return [
        mailbox_contact_point(m, authenticated=authenticated) for m in boxes if not m.liste_rouge
    ]


def practitioner(p: Person, *, authenticated: bool = False) -> JSON:
    idents = [_ident(SYS_IDNPS, p.idnps, "IDNPS")]
    if p.id_type == "8":
        idents.append(_ident(SYS_RPPS, p.id_pp, "RPPS"))
    elif p.id_type == "0":
        idents.append(_ident(SYS_ADELI, p.id_pp, "ADELI"))
    name: JSON = {"use": "usual", "family": p.family}
    if p.given:
        name["given"] = [p.given]
    if p.civ_ex_code:
        name["prefix"] = [p.civ_ex_code]
    quals: list[JSON] = []
    seen: set[tuple[str, str]] = set()
    for a in p.activities:
        if a.profession_code and ("p", a.profession_code) not in seen:
            seen.add(("p", a.profession_code))
            coding = [{"system": TRE_G15, "code": a.profession_code, "display": a.profession_label}]
            if a.category_code:
                coding.append({"system": TRE_R09, "code": a.category_code})
            quals.append({"code": {"coding": _clean(coding)}})
        if a.sf_code and ("s", a.sf_code) not in seen:
            seen.add(("s", a.sf_code))
            quals.append(
                {
                    "code": {
                        "coding": _clean(
                            [{"system": TRE_R38, "code": a.sf_code, "display": a.sf_label}]
                        )
                    }
                }
            )
    res: JSON = {
        "resourceType": "Practitioner",
        "id": p.idnps,
        "meta": _meta("Practitioner", p.updated),
        "identifier": idents,
        "active": True,
        "name": [name],
    }
    telecom = _boxes(p.mailboxes, authenticated)
    if telecom:
        res["telecom"] = telecom
    if quals:
        res["qualification"] = quals
    return res


def _clean(codings: list[JSON]) -> list[JSON]:
    return [{k: v for k, v in c.items() if v} for c in codings]


def practitioner_role(a: Activity, *, authenticated: bool = False) -> JSON:
    codes = []
    if a.mode_code:
        codes.append(
            {"coding": _clean([{"system": TRE_R23, "code": a.mode_code, "display": a.mode_label}])}
        )
    if a.profession_code:
        codes.append(
            {
                "coding": _clean(
                    [{"system": TRE_G15, "code": a.profession_code, "display": a.profession_label}]
                )
            }
        )
    res: JSON = {
        "resourceType": "PractitionerRole",
        "id": a.id,
        "meta": _meta("PractitionerRole", a.updated),
        "active": True,
        "practitioner": {"reference": f"Practitioner/{a.idnps}"},
    }
    if a.org_key:
        res["organization"] = {"reference": f"Organization/{a.org_key}"}
    if codes:
        res["code"] = codes
    if a.sf_code:
        res["specialty"] = [
            {"coding": _clean([{"system": TRE_R38, "code": a.sf_code, "display": a.sf_label}])}
        ]
    telecom = _boxes(a.mailboxes, authenticated)
    if telecom:
        res["telecom"] = telecom
    return res


def organization(o: Organization, *, authenticated: bool = False) -> JSON:
    idents = [_ident(SYS_IDNST, o.key, "IDNST")]
    if o.finess:
        idents.append(_ident(SYS_FINESS, o.finess, "FINEG"))
    if o.finess_ej:
        idents.append(_ident(SYS_FINESS, o.finess_ej, "FINEJ"))
    if o.siret:
        idents.append(_ident(SYS_SIRENE, o.siret, "SIRET"))
    if o.siren:
        idents.append(_ident(SYS_SIRENE, o.siren, "SIREN"))
    res: JSON = {
        "resourceType": "Organization",
        "id": o.key,
        "meta": _meta("Organization", o.updated),
        "identifier": idents,
        "active": True,
        "name": o.name or o.enseigne or o.key,
    }
    if o.enseigne:
        res["alias"] = [o.enseigne]
    if o.sector_code:
        res["type"] = [
            {
                "coding": _clean(
                    [{"system": TRE_R02, "code": o.sector_code, "display": o.sector_label}]
                )
            }
        ]
    telecom: list[JSON] = []
    if authenticated:
        for system, value, rank in (("phone", o.phone, 1), ("phone", o.phone2, 2),
                                    ("fax", o.fax, None), ("email", o.email, None)):  # fmt: skip
            if value:
                cp: JSON = {"system": system, "value": value}
                if rank:
                    cp["rank"] = rank
                telecom.append(cp)
    telecom += _boxes(o.mailboxes, authenticated)
    if telecom:
        res["telecom"] = telecom
    street = " ".join(x for x in (o.num_voie, o.type_voie, o.voie) if x)
    if street or o.city or o.postal_code:
        addr: JSON = {"use": "work"}
        lines = [x for x in (o.address_line, street) if x]
        if lines:
            addr["line"] = lines
        if o.city:
            addr["city"] = o.city
        if o.postal_code:
            addr["postalCode"] = o.postal_code
        if o.dept_code:
            addr["district"] = o.dept_code
        if o.country:
            addr["country"] = o.country
        if o.commune_code:
            addr["extension"] = [
                {"url": URL_INSEE, "valueCoding": {"system": TRE_R13, "code": o.commune_code}}
            ]
        res["address"] = [addr]
    return res


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> JSON:
    """FHIR OperationOutcome (R4 §OperationOutcome) with one issue."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }
