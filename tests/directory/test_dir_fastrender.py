"""The API renders resources straight from rows (``render_rows``); the result must equal, byte
for byte, what the record mappings of ``fhir`` give (``render_records``), for the public and
the authenticated view, on every person, role and structure of a generated population, with
mailboxes of every shape (liste rouge, responsible, description, service, digitization, rank)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import orjson
import pytest
from fhir.resources.practitioner import Practitioner
from starlette.datastructures import MultiDict

from caducee.directory.api import DirectoryApi, anonymous
from caducee.directory.model import Mailbox
from caducee.directory.render import render_records, render_rows
from caducee.directory.store import DirectoryStore, OrgQuery, PersonQuery

HELENE = "810000000017"


def _population(store: DirectoryStore) -> dict[str, list[str]]:
    persons = store.search_persons(PersonQuery(), 0, 10_000)
    orgs = store.search_orgs(OrgQuery(), 0, 10_000)
    roles = store.roles_of(practitioners=persons)
    return {"Practitioner": persons, "Organization": orgs, "PractitionerRole": roles}


def _shaped_mailboxes(store: DirectoryStore) -> str:
    """Mailboxes of every shape on Hélène, her first role's structure and that role."""
    org = store.get_persons([HELENE])[0].activities[0].org_key
    shapes = [
        Mailbox("a.red@medecin.mssante.fr", "PER", idnps=HELENE, org_key=org, liste_rouge=True),
        Mailbox(
            "b.full@medecin.mssante.fr",
            "PER",
            idnps=HELENE,
            org_key=org,
            rank=1,
            service="Cardiologie",
            description="Consultations",
            responsible="Dr Martin",
            demat="O",
        ),
        Mailbox("c.cab@medecin.mssante.fr", "CAB", idnps=HELENE, demat="N", rank=2),
        Mailbox("d.org@chu.mssante.fr", "ORG", org_key=org, responsible="Secrétariat"),
        Mailbox("e.app@chu.mssante.fr", "APP", org_key=org, liste_rouge=True),
    ]
    for m in shapes:
        store.put_mailbox(m)
    return org


def test_rows_render_like_records(store: DirectoryStore) -> None:
    org = _shaped_mailboxes(store)
    population = _population(store)
    assert len(population["Practitioner"]) > 1500 and len(population["Organization"]) > 100
    getters = {"Practitioner": "person_rows", "Organization": "org_rows",
               "PractitionerRole": "role_rows"}  # fmt: skip
    for kind, ids in population.items():
        for authed in (False, True):
            for start in range(0, len(ids), 200):
                chunk = ids[start : start + 200]
                fast = render_rows(kind, getattr(store, getters[kind])(chunk), authed)
                slow = render_records(store, kind, chunk, authed)
                assert set(fast) == set(chunk)
                assert fast == slow, kind
    # the shaped mailboxes did reach the output, and the views differ where they must
    public = render_rows("Practitioner", store.person_rows([HELENE]), False)[HELENE][0]  # type: ignore[attr-defined]
    authed = render_rows("Practitioner", store.person_rows([HELENE]), True)[HELENE][0]  # type: ignore[attr-defined]
    for text in (b"b.full@", b"c.cab@", b"Cardiologie", b"Consultations"):
        assert text in public
    assert b"a.red@" not in public and b"a.red@" not in authed
    assert b"Dr Martin" not in public and b"Dr Martin" in authed
    Practitioner.model_validate(orjson.loads(authed))
    org_public = render_rows("Organization", store.org_rows([org]), False)[org][0]  # type: ignore[attr-defined]
    assert b"d.org@" in org_public and b"e.app@" not in org_public
    assert "Secrétariat".encode() not in org_public


@pytest.mark.parametrize(
    ("items", "offset", "more"),
    [
        ([], 0, False),
        ([("name", "lefè vre"), ("_count", "2")], 2, True),
        ([("_offset", "4")], 4, False),
    ],
)
def test_bundle_is_the_compact_json_of_the_searchset(
    empty_store: DirectoryStore, items: list[tuple[str, str]], offset: int, more: bool
) -> None:
    """The bundle, built from byte fragments, is exactly the compact JSON of the searchset
    (links with the query encoded as ``urlencode`` does, fullUrl escaped as JSON)."""
    api = DirectoryApi(empty_store, anonymous, 'http://h"x/fhir')
    matches = [("Practitioner", "810000000017", (b'{"a":1}', ())),
               ("Practitioner", 'we"ird/é', (b'{"b":2}', ()))]  # fmt: skip
    included = [("Organization", "1750000001", (b'{"c":3}', ()))]
    body = api._bundle("Practitioner", api.base_url, MultiDict(items), matches, included,
                       offset, 2, more)  # fmt: skip
    base = 'http://h"x/fhir/Practitioner?'
    plain = [(k, v) for k, v in items if k != "_offset"]
    links = [{"relation": "self", "url": base + urlencode([*plain, ("_offset", offset)])}]
    if more:
        links.append(
            {"relation": "next", "url": base + urlencode([*plain, ("_offset", offset + 2)])}
        )
    if offset:
        links.append(
            {"relation": "previous", "url": base + urlencode([*plain, ("_offset", offset - 2)])}
        )
    expected: dict[str, object] = {"resourceType": "Bundle", "type": "searchset", "link": links}
    if not more:
        expected["total"] = offset + 2
    expected["entry"] = [
        {"fullUrl": f'http://h"x/fhir/{k}/{i}', "resource": json.loads(b), "search": {"mode": mode}}
        for mode, group in (("match", matches), ("include", included))
        for k, i, (b, _r) in group
    ]
    assert body == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()
