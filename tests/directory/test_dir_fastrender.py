"""The API renders resources straight from rows (``render_rows``); the result must equal, byte
for byte, what the record mappings of ``fhir`` give (``render_records``), for the public and
the authenticated view, on every person, role and structure of a generated population, with
mailboxes of every shape (liste rouge, responsible, description, service, digitization, rank)."""

from __future__ import annotations

import orjson
from fhir.resources.practitioner import Practitioner

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
