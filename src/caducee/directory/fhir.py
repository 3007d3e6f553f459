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


# -- rendering straight from rows ------------------------------------------------------------
# The API renders 50 resources per never-seen search: the functions below build the same JSON
# as the ones above from the tuples the store reads (column orders in
# :mod:`caducee.directory.sqlbase`: ``PERSON_READ``, ``ROLE_READ``, ``ORG_READ``, ``BOX_READ``),
# without the intermediate records, and share the constant parts (profiles, identifier types,
# codings of the code tables) between resources. ``tests/directory/test_dir_fastrender.py``
# checks they equal the functions above.

_ID_TYPES = {
    code: {"coding": [{"system": SYS_ID_TYPE, "code": code}]}
    for code in ("IDNPS", "RPPS", "ADELI", "IDNST", "FINEG", "FINEJ", "SIRET", "SIREN")
}
_PROFILES = {kind: [url] for kind, url in PROFILE.items()}
_EMAIL_TYPE = {"url": URL_EMAIL_TYPE, "valueCoding": {"system": TRE_R256, "code": "MSSANTE"}}
_NOT_RED = {"url": "listeRouge", "valueBoolean": False}
_DIGITIZED = {"url": "digitization", "valueBoolean": True}
_NOT_DIGITIZED = {"url": "digitization", "valueBoolean": False}
_CODINGS: dict[tuple[str, ...], JSON] = {}  # code-table fragments, shared by every resource
_CODINGS_MAX = 50_000


def _fragment(key: tuple[str, ...], build: Any) -> JSON:
    hit = _CODINGS.get(key)
    if hit is None:
        if len(_CODINGS) >= _CODINGS_MAX:
            _CODINGS.clear()
        hit = _CODINGS[key] = build()
    return hit


def _coded(system: str, code: str, display: str) -> JSON:
    """``{"coding": [...]}`` of one code (``display`` left out when empty), shared."""
    return _fragment(
        (system, code, display),
        lambda: {"coding": [{"system": system, "code": code, "display": display}
                            if display else {"system": system, "code": code}]},
    )  # fmt: skip


def _box_type(mtype: str) -> JSON:
    return _fragment(
        ("box", mtype),
        lambda: {"url": "type", "valueCodeableConcept": {"coding": [{"system": TRE_R257,
                                                                     "code": mtype}]}},
    )  # fmt: skip


def _rid(system: str, value: str, type_code: str) -> JSON:
    return {"use": "official", "type": _ID_TYPES[type_code], "system": system, "value": value}


def _row_meta(kind: str, updated: str | None) -> JSON:
    if updated:
        return {"profile": _PROFILES[kind], "lastUpdated": updated}
    return {"profile": _PROFILES[kind]}


def box_from_row(r: tuple[Any, ...], authenticated: bool) -> JSON:
    """A mailbox row (holder, org key, ``BOX_READ``; never on liste rouge) as a ContactPoint."""
    _holder, _org, address, mtype, service, description, responsible, rank, demat = r
    meta = [_box_type(mtype)]
    if description:
        meta.append({"url": "description", "valueString": description})
    if service:
        meta.append({"url": "service", "valueString": service})
    if responsible and authenticated:
        meta.append({"url": "responsible", "valueString": responsible})
    meta.append(_NOT_RED)
    if demat:
        meta.append(_DIGITIZED if demat == "O" else _NOT_DIGITIZED)
    cp: JSON = {
        "extension": [_EMAIL_TYPE, {"url": URL_MAILBOX_METADATA, "extension": meta}],
        "system": "email",
        "value": address,
    }
    if rank:
        cp["rank"] = rank
    return cp


def _qualification(system: str, code: str, display: str, category: str = "") -> JSON:
    def build() -> JSON:
        coding = [{"system": system, "code": code, "display": display}
                  if display else {"system": system, "code": code}]  # fmt: skip
        if category:
            coding.append({"system": TRE_R09, "code": category})
        return {"code": {"coding": coding}}

    return _fragment(("q", system, code, display or "", category or ""), build)


def practitioner_from_rows(p: tuple[Any, ...], acts: list[tuple[Any, ...]],
                           boxes: list[JSON]) -> JSON:  # fmt: skip
    """A Practitioner from its ``PERSON_READ`` row, its ``PERSON_ACT_READ`` rows (in id order)
    and its rendered mailboxes."""
    idnps, id_type, id_pp, civ, family, given, updated = p
    idents = [_rid(SYS_IDNPS, idnps, "IDNPS")]
    if id_type == "8":
        idents.append(_rid(SYS_RPPS, id_pp or "", "RPPS"))
    elif id_type == "0":
        idents.append(_rid(SYS_ADELI, id_pp or "", "ADELI"))
    name: JSON = {"use": "usual", "family": family or ""}
    if given:
        name["given"] = [given]
    if civ:
        name["prefix"] = [civ]
    res: JSON = {
        "resourceType": "Practitioner",
        "id": idnps,
        "meta": _row_meta("Practitioner", updated),
        "identifier": idents,
        "active": True,
        "name": [name],
    }
    if boxes:
        res["telecom"] = boxes
    if acts:
        quals: list[JSON] = []
        seen: set[tuple[str, str]] = set()
        for prof, prof_label, category, sf, sf_label in acts:
            if prof and ("p", prof) not in seen:
                seen.add(("p", prof))
                quals.append(_qualification(TRE_G15, prof, prof_label, category))
            if sf and ("s", sf) not in seen:
                seen.add(("s", sf))
                quals.append(_qualification(TRE_R38, sf, sf_label))
        if quals:
            res["qualification"] = quals
    return res


def role_from_row(a: tuple[Any, ...], boxes: list[JSON]) -> JSON:
    """A PractitionerRole from its ``ROLE_READ`` row and its rendered mailboxes."""
    rid, idnps, prof, prof_label, sf, sf_label, mode, mode_label, org_key, updated = a
    res: JSON = {
        "resourceType": "PractitionerRole",
        "id": rid,
        "meta": _row_meta("PractitionerRole", updated),
        "active": True,
        "practitioner": {"reference": f"Practitioner/{idnps}"},
    }
    if org_key:
        res["organization"] = {"reference": f"Organization/{org_key}"}
    if mode or prof:
        codes = []
        if mode:
            codes.append(_coded(TRE_R23, mode, mode_label))
        if prof:
            codes.append(_coded(TRE_G15, prof, prof_label))
        res["code"] = codes
    if sf:
        res["specialty"] = [_coded(TRE_R38, sf, sf_label)]
    if boxes:
        res["telecom"] = boxes
    return res


def organization_from_row(o: tuple[Any, ...], boxes: list[JSON], authenticated: bool) -> JSON:
    """An Organization from its ``ORG_READ`` row and its rendered mailboxes."""
    (key, name, siret, siren, finess, finess_ej, enseigne, line, num_voie, type_voie, voie,
     postal, commune, city, dept, country, phone, phone2, fax, email, sector, sector_label,
     updated) = o  # fmt: skip
    idents = [_rid(SYS_IDNST, key, "IDNST")]
    if finess:
        idents.append(_rid(SYS_FINESS, finess, "FINEG"))
    if finess_ej:
        idents.append(_rid(SYS_FINESS, finess_ej, "FINEJ"))
    if siret:
        idents.append(_rid(SYS_SIRENE, siret, "SIRET"))
    if siren:
        idents.append(_rid(SYS_SIRENE, siren, "SIREN"))
    res: JSON = {
        "resourceType": "Organization",
        "id": key,
        "meta": _row_meta("Organization", updated),
        "identifier": idents,
        "active": True,
        "name": name or enseigne or key,
    }
    if enseigne:
        res["alias"] = [enseigne]
    if sector:
        res["type"] = [_coded(TRE_R02, sector, sector_label)]
    telecom: list[JSON] = []
    if authenticated:
        if phone:
            telecom.append({"system": "phone", "value": phone, "rank": 1})
        if phone2:
            telecom.append({"system": "phone", "value": phone2, "rank": 2})
        if fax:
            telecom.append({"system": "fax", "value": fax})
        if email:
            telecom.append({"system": "email", "value": email})
    if boxes:
        telecom += boxes
    if telecom:
        res["telecom"] = telecom
    street = " ".join(x for x in (num_voie, type_voie, voie) if x)
    if street or city or postal:
        addr: JSON = {"use": "work"}
        lines = [x for x in (line, street) if x]
        if lines:
            addr["line"] = lines
        if city:
            addr["city"] = city
        if postal:
            addr["postalCode"] = postal
        if dept:
            addr["district"] = dept
        if country:
            addr["country"] = country
        if commune:
            addr["extension"] = [
                {"url": URL_INSEE, "valueCoding": {"system": TRE_R13, "code": commune}}
            ]
        res["address"] = [addr]
    return res
