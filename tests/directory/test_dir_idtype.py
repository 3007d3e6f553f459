"""``identifier-type`` (Annuaire Santé FHIR API v2, notes §6.4): resources holding an identifier
of that type (fr-core-cs-v2-0203 codes, as on the identifiers the resources carry)."""

from __future__ import annotations

import pytest
from starlette.datastructures import MultiDict

from caducee.directory.api import DirectoryApi, anonymous
from caducee.directory.codes import SYS_ID_TYPE
from caducee.directory.params import parse_org, parse_person
from caducee.directory.store import DirectoryStore, OrgQuery, PersonQuery


def _types(resource: dict[str, object]) -> set[str]:
    idents = resource["identifier"]
    assert isinstance(idents, list)
    return {i["type"]["coding"][0]["code"] for i in idents}


def _search(store: DirectoryStore, kind: str, **params: str) -> list[dict[str, object]]:
    import orjson

    api = DirectoryApi(store, anonymous, "http://test")
    body = orjson.loads(api._search(kind, MultiDict(params), False, "http://test"))
    return [e["resource"] for e in body.get("entry", [])]


def test_parse_identifier_type() -> None:
    def person(v: str) -> PersonQuery | None:
        return parse_person(MultiDict({"identifier-type": v}))

    assert person("RPPS") == PersonQuery(id_types=("8",))
    assert person(f"{SYS_ID_TYPE}|ADELI") == PersonQuery(id_types=("0",))
    assert person("RPPS,ADELI") == PersonQuery(id_types=("8", "0"))
    assert person("IDNPS") == PersonQuery()  # every practitioner has one
    assert person("RPPS,IDNPS") == PersonQuery()
    assert person("FINEG") is None  # not a practitioner identifier: nothing matches
    assert person("http://other.example/cs|RPPS") is None
    org = parse_org(MultiDict({"identifier-type": "FINEG,SIREN"}))
    assert org == OrgQuery(id_kinds=("finess", "siren"))
    assert parse_org(MultiDict({"identifier-type": "IDNST"})) == OrgQuery()
    assert parse_org(MultiDict({"identifier-type": "RPPS"})) is None


def test_practitioner_identifier_type(module_store: DirectoryStore) -> None:
    rpps = _search(module_store, "Practitioner", **{"identifier-type": "RPPS", "_count": "200"})
    adeli = _search(module_store, "Practitioner", **{"identifier-type": "ADELI", "_count": "200"})
    everyone = _search(module_store, "Practitioner", **{"_count": "200"})
    assert rpps and adeli
    assert all("RPPS" in _types(r) and "ADELI" not in _types(r) for r in rpps)
    assert all("ADELI" in _types(r) and "RPPS" not in _types(r) for r in adeli)
    both = {str(r["id"]) for r in rpps} | {str(r["id"]) for r in adeli}
    assert {str(r["id"]) for r in everyone} <= both
    idnps = _search(module_store, "Practitioner", **{"identifier-type": "IDNPS", "_count": "200"})
    assert [r["id"] for r in idnps] == [r["id"] for r in everyone]
    # combined with a name: the RPPS holder is found, not with ADELI
    found = _search(module_store, "Practitioner", name="lefevre", **{"identifier-type": "RPPS"})
    assert "810000000017" in {r["id"] for r in found}
    gone = _search(module_store, "Practitioner", name="lefevre", **{"identifier-type": "ADELI"})
    assert "810000000017" not in {r["id"] for r in gone}
    assert _search(module_store, "Practitioner", **{"identifier-type": "FINEG"}) == []


@pytest.mark.parametrize("code", ["FINEG", "FINEJ", "SIRET", "SIREN"])
def test_organization_identifier_type(module_store: DirectoryStore, code: str) -> None:
    found = _search(module_store, "Organization", **{"identifier-type": code, "_count": "200"})
    assert found
    assert all(code in _types(r) for r in found)
    everyone = _search(module_store, "Organization", **{"_count": "200"})
    without = [r for r in everyone if code not in _types(r)]
    assert without, "the population has structures without this identifier"
    assert not {r["id"] for r in without} & {r["id"] for r in found}


def test_organization_finess_either(module_store: DirectoryStore) -> None:
    found = _search(module_store, "Organization", **{"identifier-type": "FINESS", "_count": "200"})
    assert found and all(_types(r) & {"FINEG", "FINEJ"} for r in found)
