"""The directory's data model: persons, activities, structures and mailboxes (notes §6.1, §5).

Rows are plain tuples in the storage column order below (imports move millions of them); the
read side turns them into the frozen records of this module. Identifiers follow the ANS rules:
IDNPS = identifier type digit (``8`` RPPS, ``0`` ADELI) + identifier; IDNST = structure
identifier type digit (``1`` FINESS, ``3`` SIRET, ``4`` RPPS rang) + identifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "ACTIVITY_COLUMNS",
    "MAILBOX_COLUMNS",
    "MAILBOX_TYPES",
    "ORG_COLUMNS",
    "PERSON_COLUMNS",
    "Activity",
    "Mailbox",
    "Organization",
    "Person",
    "idnst",
]

PERSON_COLUMNS: Final = (
    "idnps",
    "id_type",
    "id_pp",
    "civ_ex_code",
    "civ_ex_label",
    "civ_code",
    "civ_label",
    "family",
    "given",
    "doc",
    "names",
    "hash",
    "updated",
)
ACTIVITY_COLUMNS: Final = (
    "id",
    "idnps",
    "profession_code",
    "profession_label",
    "category_code",
    "category_label",
    "sf_type_code",
    "sf_type_label",
    "sf_code",
    "sf_label",
    "mode_code",
    "mode_label",
    "org_key",
    "authority",
    "pharma_code",
    "pharma_label",
)
ORG_COLUMNS: Final = (
    "key",
    "siret",
    "siren",
    "finess",
    "finess_ej",
    "tech_id",
    "name",
    "enseigne",
    "compl_dest",
    "compl_geo",
    "num_voie",
    "indice",
    "type_voie_code",
    "type_voie_label",
    "voie",
    "mention",
    "cedex",
    "postal_code",
    "commune_code",
    "city",
    "country_code",
    "country",
    "phone",
    "phone2",
    "fax",
    "email",
    "dept_code",
    "dept_label",
    "old_id",
    "sector_code",
    "sector_label",
    "doc",
    "source",
    "updated",
)
# The 31 columns of Extraction_Correspondance_MSSante, then our own.
MAILBOX_COLUMNS: Final = (
    "type",
    "address",
    "id_type_pp",
    "id_pp",
    "idnps",
    "struct_type",
    "struct_id",
    "service",
    "civ",
    "family",
    "given",
    "category_code",
    "category_label",
    "profession_code",
    "profession_label",
    "sf_code",
    "sf_label",
    "demat",
    "org_name",
    "enseigne",
    "l2",
    "l3",
    "l4num",
    "l4compl",
    "l4type",
    "l4voie",
    "l5",
    "l6",
    "postal_code",
    "dept",
    "country",
    "org_key",
    "description",
    "responsible",
    "liste_rouge",
    "rank",
    "source",
    "hash",
    "updated",
)
MAILBOX_TYPES: Final = ("PER", "ORG", "APP", "CAB")

_TECH_PREFIX = {"F": "1", "C": "3", "R": "4"}


def idnst(finess: str, siret: str, tech_id: str) -> str:
    """The national structure identifier of a PS_LibreAcces site (FINESS, else SIRET, else the
    technical id, whose letter maps to the IDNST type digit)."""
    if finess:
        return "1" + finess
    if siret:
        return "3" + siret
    if tech_id:
        return _TECH_PREFIX.get(tech_id[0], "4") + tech_id[1:]
    return ""


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A BAL MSSanté (notes §5): address and type are immutable, the rest is metadata."""

    address: str
    type: str
    idnps: str = ""
    org_key: str = ""
    service: str = ""
    description: str = ""
    responsible: str = ""
    liste_rouge: bool = False
    rank: int | None = None
    demat: str = ""
    family: str = ""
    given: str = ""
    profession_code: str = ""
    source: str = "extract"
    updated: str = ""


@dataclass(frozen=True, slots=True)
class Organization:
    """A structure: an FHIR Organization (site, géographique or juridique)."""

    key: str
    name: str
    siret: str = ""
    siren: str = ""
    finess: str = ""
    finess_ej: str = ""
    tech_id: str = ""
    enseigne: str = ""
    address_line: str = ""
    num_voie: str = ""
    type_voie: str = ""
    voie: str = ""
    postal_code: str = ""
    commune_code: str = ""
    city: str = ""
    dept_code: str = ""
    country: str = ""
    phone: str = ""
    phone2: str = ""
    fax: str = ""
    email: str = ""
    sector_code: str = ""
    sector_label: str = ""
    updated: str = ""
    mailboxes: tuple[Mailbox, ...] = ()


@dataclass(frozen=True, slots=True)
class Activity:
    """A situation d'exercice: a FHIR PractitionerRole."""

    id: str
    idnps: str
    profession_code: str
    profession_label: str
    category_code: str
    sf_type_code: str
    sf_code: str
    sf_label: str
    mode_code: str
    mode_label: str
    org_key: str
    authority: str = ""
    updated: str = ""
    mailboxes: tuple[Mailbox, ...] = ()


@dataclass(frozen=True, slots=True)
class Person:
    """A professional (exercice professionnel): a FHIR Practitioner."""

    idnps: str
    id_type: str
    id_pp: str
    civ_ex_code: str
    civ_ex_label: str
    civ_code: str
    family: str
    given: str
    updated: str
    activities: tuple[Activity, ...] = ()
    mailboxes: tuple[Mailbox, ...] = field(default=())
