"""CDA R2 header reader (HL7 CDA R2, French CI-SIS "structuration minimale" header).

:func:`read_cda` returns the header facts a receiver needs: document type (LOINC), title,
effective time, ``setId``/``versionNumber`` (replacement), confidentiality, author and
organisation, legal authenticator, patient with INS, identity traits and birthplace, local IPP.
Lenient by design: a missing element is ``None``; conformance is judged in :mod:`.validate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from caducee.core.errors import InvalidInput
from caducee.documents.ins import INS_OIDS, IdentityTraits, InsStatus, check_ins
from caducee.documents.xmlsafe import parse_xml

__all__ = [
    "NS",
    "CdaDocument",
    "Code",
    "InstanceId",
    "Party",
    "Patient",
    "read_cda",
]

NS = "urn:hl7-org:v3"
_N = {"h": NS}


@dataclass(frozen=True)
class Code:
    code: str
    system: str | None = None
    display: str | None = None


@dataclass(frozen=True)
class InstanceId:
    root: str
    extension: str | None = None

    def __str__(self) -> str:
        return f"{self.root}^{self.extension}" if self.extension else self.root


@dataclass(frozen=True)
class Party:
    """An author or legal authenticator (person and represented organisation)."""

    id: InstanceId | None = None
    family: str | None = None
    given: str | None = None
    prefix: str | None = None
    specialty: Code | None = None
    organisation: str | None = None
    organisation_id: InstanceId | None = None
    time: str | None = None


@dataclass(frozen=True)
class Patient:
    ins: InstanceId | None
    local_ids: tuple[InstanceId, ...]
    traits: IdentityTraits
    used_family: str | None = None
    used_given: str | None = None
    mssante_address: str | None = None
    ins_status: InsStatus = field(default_factory=lambda: InsStatus(present=False))


@dataclass(frozen=True)
class CdaDocument:
    """The header facts of one CDA R2 document, plus the raw bytes and parsed tree."""

    raw: bytes
    id: InstanceId | None
    set_id: InstanceId | None
    version: int | None
    type_code: Code | None
    title: str | None
    effective_time: str | None
    confidentiality: Code | None
    language: str | None
    realm: str | None
    template_ids: tuple[str, ...]
    author: Party | None
    legal_authenticator: Party | None
    patient: Patient
    healthcare_facility: Code | None
    practice_setting: Code | None
    service_start: str | None
    service_stop: str | None
    event_codes: tuple[Code, ...]
    has_structured_body: bool
    tree: Any = field(repr=False, compare=False, default=None)

    @property
    def unique_id(self) -> str:
        return str(self.id) if self.id else ""


def _attr(el: Any, name: str) -> str | None:
    if el is None:
        return None
    value = el.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _text(el: Any) -> str | None:
    if el is None:
        return None
    txt = " ".join("".join(el.itertext()).split())
    return txt or None


def _first(el: Any, path: str) -> Any:
    if el is None:
        return None
    found = el.find(path, _N)
    return found


def _code(el: Any) -> Code | None:
    code = _attr(el, "code")
    if code is None:
        return None
    return Code(code, _attr(el, "codeSystem"), _attr(el, "displayName"))


def _ii(el: Any) -> InstanceId | None:
    root = _attr(el, "root")
    return InstanceId(root, _attr(el, "extension")) if root else None


def _party(el: Any, role: str) -> Party | None:
    if el is None:
        return None
    assigned = _first(el, f"h:{role}")
    person = _first(assigned, "h:assignedPerson/h:name")
    org = _first(assigned, "h:representedOrganization")
    return Party(
        id=_ii(_first(assigned, "h:id")),
        family=_text(_first(person, "h:family")),
        given=_text(_first(person, "h:given")),
        prefix=_text(_first(person, "h:prefix")),
        specialty=_code(_first(assigned, "h:code")),
        organisation=_text(_first(org, "h:name")),
        organisation_id=_ii(_first(org, "h:id")),
        time=_attr(_first(el, "h:time"), "value"),
    )


def _patient(doc: Any) -> Patient:
    role = _first(doc, "h:recordTarget/h:patientRole")
    ins: InstanceId | None = None
    local: list[InstanceId] = []
    for id_el in role.findall("h:id", _N) if role is not None else []:
        ii = _ii(id_el)
        if ii is None:
            continue
        if ii.root in INS_OIDS and ins is None:
            ins = ii
        else:
            local.append(ii)
    pat = _first(role, "h:patient")
    birth_family = first_given = all_given = used_family = used_given = None
    for name in pat.findall("h:name", _N) if pat is not None else []:
        for fam in name.findall("h:family", _N):
            q = _attr(fam, "qualifier")
            if q == "BR" and birth_family is None:
                birth_family = _text(fam)
            elif q in ("CL", "SP") or (q is None and used_family is None):
                used_family = used_family or _text(fam)
        for giv in name.findall("h:given", _N):
            q = _attr(giv, "qualifier")
            if q == "BR" and first_given is None:
                first_given = _text(giv)
            elif q is None and all_given is None:
                all_given = _text(giv)
            elif q == "CL" and used_given is None:
                used_given = _text(giv)
    birth_date = _attr(_first(pat, "h:birthTime"), "value")
    traits = IdentityTraits(
        birth_family=birth_family,
        first_birth_given=first_given,
        birth_givens=all_given,
        birth_date=birth_date[:8] if birth_date else None,
        sex=_attr(_first(pat, "h:administrativeGenderCode"), "code"),
        birthplace_cog=_text(_first(pat, "h:birthplace/h:place/h:addr/h:county")),
    )
    address = None
    for tel in role.findall("h:telecom", _N) if role is not None else []:
        value = _attr(tel, "value") or ""
        if value.lower().startswith("mailto:") and "@patient." in value.lower():
            address = value[7:]
    status = check_ins(ins.root if ins else None, ins.extension if ins else None, traits)
    return Patient(
        ins=ins,
        local_ids=tuple(local),
        traits=traits,
        used_family=used_family or birth_family,
        used_given=used_given or first_given or (all_given.split()[0] if all_given else None),
        mssante_address=address,
        ins_status=status,
    )


def read_cda(data: bytes) -> CdaDocument:
    """Read the header of a CDA R2 document (bytes). Raises :class:`InvalidInput` if not CDA."""
    root = parse_xml(data, what="CDA document")
    if root.tag != f"{{{NS}}}ClinicalDocument":
        raise InvalidInput("not a CDA R2 document (root is not urn:hl7-org:v3 ClinicalDocument)")
    version_text = _attr(_first(root, "h:versionNumber"), "value")
    try:
        version = int(version_text) if version_text else None
    except ValueError:
        version = None
    service = _first(root, "h:documentationOf/h:serviceEvent")
    events = tuple(
        c
        for c in (_code(e) for e in root.findall("h:documentationOf/h:serviceEvent/h:code", _N))
        if c is not None
    )
    practice = _code(
        _first(
            service,
            "h:performer/h:assignedEntity/h:representedOrganization/h:standardIndustryClassCode",
        )
    ) or _code(
        _first(
            root,
            "h:legalAuthenticator/h:assignedEntity/h:representedOrganization/h:standardIndustryClassCode",
        )
    )
    return CdaDocument(
        raw=data,
        id=_ii(_first(root, "h:id")),
        set_id=_ii(_first(root, "h:setId")),
        version=version,
        type_code=_code(_first(root, "h:code")),
        title=_text(_first(root, "h:title")),
        effective_time=_attr(_first(root, "h:effectiveTime"), "value"),
        confidentiality=_code(_first(root, "h:confidentialityCode")),
        language=_attr(_first(root, "h:languageCode"), "code"),
        realm=_attr(_first(root, "h:realmCode"), "code"),
        template_ids=tuple(
            r for r in (_attr(t, "root") for t in root.findall("h:templateId", _N)) if r
        ),
        author=_party(_first(root, "h:author"), "assignedAuthor"),
        legal_authenticator=_party(_first(root, "h:legalAuthenticator"), "assignedEntity"),
        patient=_patient(root),
        healthcare_facility=_code(
            _first(
                root, "h:componentOf/h:encompassingEncounter/h:location/h:healthCareFacility/h:code"
            )
        ),
        practice_setting=practice,
        service_start=_attr(_first(service, "h:effectiveTime/h:low"), "value"),
        service_stop=_attr(_first(service, "h:effectiveTime/h:high"), "value"),
        event_codes=events,
        has_structured_body=_first(root, "h:component/h:structuredBody") is not None,
        tree=root,
    )
