"""FHIR search parameters of the Annuaire Santé API v2 (notes §6.4) -> store queries.

Each parser returns ``None`` when the query cannot match anything (``active=false``: the
directory only holds active entries). Token parameters accept ``code`` or ``system|code`` and
comma-separated alternatives; ``_lastUpdated`` accepts the ``ge``/``gt`` prefixes; string
parameters match the start of a word, ``:contains`` and ``:exact`` as in FHIR R4 §3.1.1.5.
"""

from __future__ import annotations

from typing import Any

from caducee.core.errors import InvalidInput
from caducee.directory.codes import SYS_FINESS, SYS_ID_TYPE, SYS_IDNPS, SYS_IDNST, SYS_RPPS
from caducee.directory.model import MAILBOX_TYPES
from caducee.directory.store import MailboxMatch, OrgQuery, PersonQuery, RoleQuery

__all__ = ["parse_org", "parse_person", "parse_role"]

Params = Any  # a starlette MultiDict (get / getlist / multi_items)


def _values(params: Params, name: str) -> list[str]:
    out: list[str] = []
    for raw in params.getlist(name):
        out += [v.strip() for v in str(raw).split(",") if v.strip()]
    return out


def _codes(params: Params, name: str) -> tuple[str, ...]:
    return tuple(v.rsplit("|", 1)[-1] for v in _values(params, name))


def _inactive(params: Params) -> bool:
    return str(params.get("active", "true")).lower() == "false"


def _updated(params: Params) -> str:
    value = str(params.get("_lastUpdated", ""))
    if not value:
        return ""
    for prefix in ("ge", "gt", "eq", "sa"):
        if value.startswith(prefix):
            return value[2:]
    if value[:2].isalpha():
        raise InvalidInput(f"_lastUpdated prefix {value[:2]!r} is not supported (use ge)")
    return value


def _mailbox(params: Params) -> tuple[str, MailboxMatch]:
    for suffix, match in ((":exact", "exact"), (":contains", "contains"), ("", "start")):
        v = params.get("mailbox-mss" + suffix)
        if v:
            return str(v), match  # type: ignore[return-value]
    return "", "start"


def _mailbox_type(params: Params) -> str:
    codes = _codes(params, "mailbox-mss-type")
    if len(codes) > 1:
        raise InvalidInput("mailbox-mss-type takes one type")
    if codes and codes[0] not in MAILBOX_TYPES:
        raise InvalidInput(f"mailbox-mss-type must be one of {', '.join(MAILBOX_TYPES)}")
    return codes[0] if codes else ""


def _person_ids(params: Params) -> tuple[str, ...]:
    out: list[str] = []
    for v in _values(params, "identifier"):
        system, _, value = v.rpartition("|")
        if system == SYS_RPPS:
            out.append("8" + value)
        elif system in ("", SYS_IDNPS):
            out.append(value)
            if not system and len(value) == 11:
                out.append("8" + value)
        else:
            out.append(value)
    out += _values(params, "_id")
    return tuple(out)


# ``identifier-type`` codes (fr-core-cs-v2-0203, as in the identifiers the resources carry):
# the person identifier types (``id_type``) and the organization identifier columns they need.
# IDNPS / IDNST: every resource has one (no filter). FINESS: either FINESS (site or legal).
PERSON_ID_TYPES = {"IDNPS": (), "RPPS": ("8",), "ADELI": ("0",)}
ORG_ID_TYPES = {
    "IDNST": (),
    "FINEG": ("finess",),
    "FINEJ": ("finess_ej",),
    "FINESS": ("finess", "finess_ej"),
    "SIRET": ("siret",),
    "SIREN": ("siren",),
}


def _id_types(params: Params, known: dict[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    """The union of what the ``identifier-type`` codes (comma = or) need: ``()`` when one of
    them holds for every resource (or none is given), ``None`` when none can match (an unknown
    code or code system)."""
    values = _values(params, "identifier-type")
    if not values:
        return ()
    out: list[str] = []
    for v in values:
        system, _, code = v.rpartition("|")
        need = known.get(code.upper()) if system in ("", SYS_ID_TYPE) else None
        if need == ():
            return ()
        if need is not None:
            out += need
    return tuple(dict.fromkeys(out)) or None


def _ref_ids(params: Params, name: str) -> tuple[str, ...]:
    return tuple(v.rsplit("/", 1)[-1] for v in _values(params, name))


def parse_person(params: Params) -> PersonQuery | None:
    id_types = _id_types(params, PERSON_ID_TYPES)
    if _inactive(params) or id_types is None:
        return None
    box, match = _mailbox(params)
    text = " ".join(str(v) for v in params.getlist("name"))
    family = str(params.get("family") or params.get("name:family") or "")
    given = str(params.get("given") or params.get("name:given") or "")
    quals = _codes(params, "qualification-code")
    professions = tuple(q for q in quals if q.isdigit())
    specialties = tuple(q for q in quals if not q.isdigit() and len(q) > 1)
    return PersonQuery(
        text=text,
        family=family,
        given=given,
        identifiers=_person_ids(params),
        id_types=id_types,
        professions=professions,
        specialties=specialties,
        postal_code=str(params.get("address-postalcode", "")),
        city=str(params.get("address-city", "")),
        finess=str(params.get("organization-finess", "")),
        mailbox=box,
        mailbox_match=match,
        mailbox_type=_mailbox_type(params),
        updated_since=_updated(params),
        fuzzy=str(params.get("_fuzzy", "true")).lower() != "false",
    )


def parse_org(params: Params) -> OrgQuery | None:
    id_kinds = _id_types(params, ORG_ID_TYPES)
    if _inactive(params) or id_kinds is None:
        return None
    box, match = _mailbox(params)
    ids: list[str] = []
    for v in _values(params, "identifier"):
        system, _, value = v.rpartition("|")
        if system in ("", SYS_IDNST, SYS_FINESS) or system.endswith("sirene.fr"):
            ids.append(value)
    ids += _values(params, "_id")
    return OrgQuery(
        text=" ".join(str(v) for v in params.getlist("name")),
        name_contains=str(params.get("name:contains", "")),
        identifiers=tuple(ids),
        id_kinds=id_kinds,
        postal_code=str(params.get("address-postalcode", "")),
        city=str(params.get("address-city", "")),
        sectors=_codes(params, "type"),
        mailbox=box,
        mailbox_match=match,
        mailbox_type=_mailbox_type(params),
        updated_since=_updated(params),
    )


def parse_role(params: Params) -> RoleQuery | None:
    if _inactive(params):
        return None
    box, match = _mailbox(params)
    return RoleQuery(
        ids=tuple(_values(params, "_id"))
        + tuple(v.rpartition("|")[2] for v in _values(params, "identifier")),
        practitioners=_ref_ids(params, "practitioner"),
        organizations=_ref_ids(params, "organization"),
        roles=_codes(params, "role"),
        mailbox=box,
        mailbox_match=match,
        mailbox_type=_mailbox_type(params),
        updated_since=_updated(params),
    )
