"""The FHIR API driven by a real client library over a real uvicorn server (notes §6.4)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.practitioner import Practitioner
from fhirclient.models.practitioner import Practitioner as ClientPractitioner
from fhirclient.server import FHIRServer

from caducee.directory.api import build_app
from caducee.directory.codes import SYS_RPPS, TRE_G15, TRE_R257
from caducee.directory.server import StaticAuthenticator, uvicorn_config
from caducee.directory.store import DirectoryStore

HELENE = "810000000017"
TOKEN = "professional-token-for-tests"


@pytest.fixture(scope="module")
def base(module_store: DirectoryStore, server_thread: Any) -> Iterator[str]:
    auth = StaticAuthenticator(tokens={TOKEN: "Dr Test"})
    app = build_app(module_store, auth=auth)
    with server_thread(uvicorn_config(app, "127.0.0.1", 0)) as srv:
        yield f"http://127.0.0.1:{srv.port}"


def _get(base: str, path: str, **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{base}/{path}", params=params, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = r.json()
    return body


def _ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def test_fhirclient_search_and_read(base: str) -> None:
    server = FHIRServer(None, base_uri=base)
    found = ClientPractitioner.where({"name": "helene lefevre"}).perform_resources_iter(server)
    ids = [p.id for p in found]
    assert HELENE in ids
    prac = ClientPractitioner.read(HELENE, server)
    assert prac.name[0].family == "LEFÈVRE-DUPONT"
    assert {i.system for i in prac.identifier} == {"urn:oid:1.2.250.1.71.4.2.1", SYS_RPPS}
    assert prac.telecom[0].value == "helene.lefevre-dupont@medecin.mssante.fr"


def test_fhirclient_follows_next_links(base: str, module_store: DirectoryStore) -> None:
    server = FHIRServer(None, base_uri=base)
    search = ClientPractitioner.where({"qualification-code": "60", "_count": "50"})
    pages = list(search.perform_iter(server))
    ids = [e.resource.id for b in pages for e in (b.entry or [])]
    assert len(pages) >= 3
    assert len(ids) == len(set(ids))
    nurses = 0
    offset = 0
    while batch := module_store.search_persons(_query(professions=("60",)), offset, 500):
        nurses += len(batch)
        offset += 500
    assert len(ids) == nurses


def _query(**kw: Any) -> Any:
    from caducee.directory.store import PersonQuery

    return PersonQuery(**kw)


def test_bundles_validate_as_fhir(base: str) -> None:
    b = _get(base, "Practitioner", name="lefevre", _revinclude="PractitionerRole:practitioner")
    Bundle.model_validate(b)
    assert _ids(b) and _ids(b, "include")
    for entry in b["entry"]:
        if entry["resource"]["resourceType"] == "Practitioner":
            Practitioner.model_validate(entry["resource"])
    roles = _get(base, "PractitionerRole", practitioner=f"Practitioner/{HELENE}", _include="*")
    Bundle.model_validate(roles)
    kinds = {e["resource"]["resourceType"] for e in roles["entry"]}
    assert kinds == {"PractitionerRole", "Practitioner", "Organization"}
    orgs = _get(base, "Organization", name="chu", _revinclude="PractitionerRole:organization")
    Bundle.model_validate(orgs)
    org = orgs["entry"][0]["resource"]
    Organization.model_validate(org)
    boxes = [t for t in org["telecom"] if t["system"] == "email"]
    assert len(boxes) >= 10
    meta = boxes[0]["extension"][1]
    assert meta["url"].endswith("as-ext-mailbox-mss-metadata")
    assert meta["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "ORG"


@pytest.mark.parametrize(
    "params",
    [
        {"identifier": f"{SYS_RPPS}|10000000017"},
        {"identifier": "urn:oid:1.2.250.1.71.4.2.1|810000000017"},
        {"_id": HELENE},
        {"family": "lefevre", "given": "helene"},
        {"qualification-code": f"{TRE_G15}|10", "family": "lefèvre"},
        {"qualification-code": "SM04", "address-postalcode": "69", "name": "dupont"},
        {"address-city": "Lyon 3e", "name": "lefevre"},
        {"mailbox-mss": "helene.lefevre"},
        {"mailbox-mss:contains": "lefevre-dupont@medecin"},
        {"mailbox-mss:exact": "helene.lefevre-dupont@medecin.mssante.fr"},
        {"name": "lefevre", "_lastUpdated": "ge2000-01-01"},
    ],
)
def test_practitioner_search_parameters(base: str, params: dict[str, str]) -> None:
    assert HELENE in _ids(_get(base, "Practitioner", **params))


def test_no_match_cases(base: str) -> None:
    assert _ids(_get(base, "Practitioner", name="lefevre", active="false")) == []
    assert _ids(_get(base, "Practitioner", name="lefevre", _lastUpdated="ge2999-01-01")) == []
    empty = _get(base, "Practitioner", **{"mailbox-mss:exact": "nobody@nowhere.mssante.fr"})
    assert empty["total"] == 0 and "entry" not in empty


def test_paging_links_and_count(base: str) -> None:
    first = _get(base, "Organization", _count=5)
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert len(_ids(first)) == 5 and "next" in links and "total" not in first
    second = httpx.get(links["next"], timeout=30).json()
    assert not set(_ids(first)) & set(_ids(second))
    assert "previous" in {link["relation"] for link in second["link"]}
    assert len(_ids(_get(base, "Practitioner", name="a"))) == 50  # pages of 50 by default


def test_post_search(base: str) -> None:
    r = httpx.post(f"{base}/Practitioner/_search", data={"name": "helene lefevre"}, timeout=30)
    assert r.status_code == 200 and HELENE in _ids(r.json())


def test_organization_search_parameters(base: str, module_store: DirectoryStore) -> None:
    chu = _get(base, "Organization", name="chu", _count=1)["entry"][0]["resource"]
    finess = next(
        i["value"] for i in chu["identifier"] if i["type"]["coding"][0]["code"] == "FINEG"
    )
    by_finess = _get(base, "Organization", identifier=f"https://finess.esante.gouv.fr|{finess}")
    assert _ids(by_finess) == [chu["id"]]
    city = chu["address"][0]["city"]
    assert chu["id"] in _ids(_get(base, "Organization", name="chu", **{"address-city": city}))
    box = next(t["value"] for t in chu["telecom"] if t["system"] == "email")
    assert _ids(_get(base, "Organization", **{"mailbox-mss:exact": box})) == [chu["id"]]
    assert chu["id"] in _ids(_get(base, "Organization", name="chu", type="SA01", _count=200))


def test_metadata(base: str) -> None:
    cs = _get(base, "metadata")
    CapabilityStatement.model_validate(cs)
    kinds = {r["type"] for r in cs["rest"][0]["resource"]}
    assert kinds == {"Practitioner", "PractitionerRole", "Organization"}


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("Practitioner/000", {}, 404),
        ("Patient", {}, 404),
        ("Practitioner", {"_count": "many"}, 400),
        ("Practitioner", {"_lastUpdated": "lt2020"}, 400),
    ],
)
def test_errors_are_operation_outcomes(
    base: str, path: str, params: dict[str, str], status: int
) -> None:
    r = httpx.get(f"{base}/{path}", params=params, timeout=30)
    assert r.status_code == status
    OperationOutcome.model_validate(r.json())


def test_phones_only_for_authenticated_professionals(base: str) -> None:
    anon = _get(base, "Organization", name="chu", _count=20)
    systems = {t["system"] for e in anon["entry"] for t in e["resource"].get("telecom", [])}
    assert systems == {"email"}
    r = httpx.get(
        f"{base}/Organization",
        params={"name": "chu", "_count": 20},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    systems = {t["system"] for e in r.json()["entry"] for t in e["resource"].get("telecom", [])}
    assert "phone" in systems
    bad = httpx.get(
        f"{base}/Organization",
        params={"name": "chu", "_count": 20},
        headers={"Authorization": "Bearer wrong"},
        timeout=30,
    )
    systems = {t["system"] for e in bad.json()["entry"] for t in e["resource"].get("telecom", [])}
    assert systems == {"email"}


def test_autocomplete(base: str) -> None:
    r = httpx.get(f"{base}/autocomplete", params={"q": "hel lefev", "limit": 5}, timeout=30)
    assert r.status_code == 200
    results = r.json()["results"]
    assert {
        "resourceType": "Practitioner",
        "id": HELENE,
        "label": "LEFÈVRE-DUPONT Hélène",
    } in results
    orgs = httpx.get(f"{base}/autocomplete", params={"q": "chu"}, timeout=30).json()["results"]
    assert orgs and all(o["resourceType"] == "Organization" for o in orgs)
    assert httpx.get(f"{base}/autocomplete", params={"q": "x", "limit": "a"}).status_code == 400


@pytest.mark.parametrize(
    "params",
    [
        {"qualification-code": 'SM04")|(x'},
        {"address-postalcode": '7"5)|(*'},
        {"address-city": '"*'},
        {"name": "\" OR 1=1 -- ' ; DROP TABLE person"},
        {"mailbox-mss:contains": "%_%'"},
        {"identifier": "x|y|z"},
        {"type": "'); --"},
        {"name": "é" * 300},
    ],
)
def test_hostile_parameters_are_harmless(base: str, params: dict[str, str]) -> None:
    for kind in ("Practitioner", "Organization", "PractitionerRole"):
        r = httpx.get(f"{base}/{kind}", params=params, timeout=30)
        assert r.status_code == 200, r.text
        Bundle.model_validate(r.json())


def test_mailbox_type_filter(base: str) -> None:
    per = f"{TRE_R257}|PER"
    found = _get(base, "Practitioner", name="lefevre", **{"mailbox-mss-type": per})
    assert HELENE in _ids(found)
    for entry in found["entry"]:
        types = {
            ext["extension"][0]["valueCodeableConcept"]["coding"][0]["code"]
            for t in entry["resource"].get("telecom", [])
            for ext in t.get("extension", [])
            if ext["url"].endswith("as-ext-mailbox-mss-metadata")
        }
        assert "PER" in types
    orgs = _get(base, "Organization", name="chu", **{"mailbox-mss-type": "ORG"})
    assert _ids(orgs)
    assert _ids(_get(base, "Organization", name="chu", **{"mailbox-mss-type": "PER"})) == []
    bad = httpx.get(f"{base}/Practitioner", params={"mailbox-mss-type": "XYZ"}, timeout=30)
    assert bad.status_code == 400


def test_fast_get_path_parses_as_starlette(base: str) -> None:
    """GET searches skip Starlette (``FastPath``); POST ``_search`` goes through it: the same
    parameters (UTF-8 percent-encoding, ``+`` for spaces, repeated keys) give the same answer."""
    query = "name=h%C3%A9l%C3%A8ne+lefevre&_count=5&_include=x&_include=y"
    got = httpx.get(f"{base}/Practitioner?{query}", timeout=30)
    posted = httpx.post(
        f"{base}/Practitioner/_search",
        content=query,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert got.status_code == posted.status_code == 200
    assert got.headers["content-type"] == posted.headers["content-type"]
    assert HELENE in _ids(got.json())
    assert got.json() == posted.json()
    assert httpx.get(f"{base}/Practitioner/{HELENE}/x", timeout=30).status_code == 404
