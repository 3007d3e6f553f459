"""Search: names without accents or case, prefixes, compound names, typos, combined criteria."""

from __future__ import annotations

import pytest

from caducee.directory.model import Mailbox
from caducee.directory.publication import publish_mailbox
from caducee.directory.store import DirectoryStore, OrgQuery, PersonQuery

HELENE, JEAN_MARIE, AISSATOU = "810000000017", "810000000025", "810000000033"


def _find(store: DirectoryStore, **kw: object) -> list[str]:
    return store.search_persons(PersonQuery(**kw), 0, 50)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "who"),
    [
        ("helene lefevre", HELENE),
        ("HÉLÈNE LEFÈVRE-DUPONT", HELENE),
        ("hel lef", HELENE),
        ("lefevre dupont", HELENE),
        ("lefevredupont", HELENE),
        ("dupont helene", HELENE),
        ("jean-marie fontaine", JEAN_MARIE),
        ("jean marie de la fontaine", JEAN_MARIE),
        ("delafontaine", JEAN_MARIE),
        ("lafont jean", JEAN_MARIE),
        ("aissatou n'diaye", AISSATOU),
        ("ndiaye", AISSATOU),
        ("aissatu", AISSATOU),  # typo: a letter missing
        ("helnee lefevre", HELENE),  # typo: two letters swapped
        ("helene lefevrf", HELENE),  # typo: a letter substituted
    ],
)
def test_name_search(module_store: DirectoryStore, text: str, who: str) -> None:
    assert who in _find(module_store, text=text)


def test_typos_are_off_when_asked(module_store: DirectoryStore) -> None:
    assert _find(module_store, text="aissatu", fuzzy=False) == []
    assert _find(module_store, text="zzzzqqqq") == []


def test_combined_criteria(module_store: DirectoryStore) -> None:
    assert HELENE in _find(
        module_store,
        text="lefevre",
        professions=("10",),
        specialties=("SM04",),
        postal_code="69003",
    )
    assert HELENE in _find(module_store, text="lefevre", city="Lyon 3e")
    assert HELENE in _find(module_store, text="lefevre", postal_code="69")
    assert _find(module_store, text="lefevre", professions=("60",), specialties=("SM04",)) == []
    assert _find(module_store, text="lefevre dupont", postal_code="75") == []
    assert JEAN_MARIE in _find(module_store, text="fontaine", postal_code="2A")
    assert AISSATOU in _find(module_store, professions=("21",), postal_code="974")


def test_family_and_given(module_store: DirectoryStore) -> None:
    assert HELENE in _find(module_store, family="Lefèvre")
    assert HELENE not in _find(module_store, family="Hélène")
    assert JEAN_MARIE in _find(module_store, given="jean-marie", family="de la")


def test_profession_only_query_pages(module_store: DirectoryStore) -> None:
    page1 = module_store.search_persons(PersonQuery(professions=("60",)), 0, 20)
    page2 = module_store.search_persons(PersonQuery(professions=("60",)), 20, 20)
    assert len(page1) == 20 and len(page2) == 20 and not set(page1) & set(page2)
    persons = module_store.get_persons(page1)
    assert all(any(a.profession_code == "60" for a in p.activities) for p in persons)


def test_mailbox_search_modes(module_store: DirectoryStore) -> None:
    addr = "helene.lefevre-dupont@medecin.mssante.fr"
    assert _find(module_store, mailbox=addr, mailbox_match="exact") == [HELENE]
    assert _find(module_store, mailbox="HELENE.LEFEVRE", mailbox_match="start") == [HELENE]
    assert HELENE in _find(module_store, mailbox="lefevre-dup", mailbox_match="contains")
    assert _find(module_store, mailbox="lefevre-dup", mailbox_match="start") == []


def test_liste_rouge_is_never_found(store: DirectoryStore) -> None:
    addr = "helene.lefevre-dupont@medecin.mssante.fr"
    box = store.find_mailbox(addr)[0]
    publish_mailbox(store, Mailbox(addr, "PER", idnps=box.idnps, liste_rouge=True))
    assert _find(store, mailbox=addr, mailbox_match="exact") == []
    assert _find(store, mailbox="lefevre-dup", mailbox_match="contains") == []
    assert store.get_persons([HELENE])[0].mailboxes[0].liste_rouge is True


def test_structures_by_name_finess_city(module_store: DirectoryStore) -> None:
    chu = module_store.search_orgs(OrgQuery(text="chu"), 0, 5)
    assert chu
    org = module_store.get_orgs(chu[:1])[0]
    assert "CHU" in org.name
    assert module_store.search_orgs(OrgQuery(identifiers=(org.finess,)), 0, 5) == [org.key]
    assert org.key in module_store.search_orgs(OrgQuery(text="chu", city=org.city), 0, 50)
    assert org.key in module_store.search_orgs(
        OrgQuery(postal_code=org.postal_code[:2], text="chu"), 0, 50
    )
    lagon = module_store.search_orgs(OrgQuery(text="pharmacie lagon"), 0, 5)
    assert module_store.get_orgs(lagon)[0].city == "SAINT-DENIS"
    assert len(org.mailboxes) >= 10
    box = org.mailboxes[0].address
    assert module_store.search_orgs(OrgQuery(mailbox=box, mailbox_match="exact"), 0, 5) == [org.key]


def test_search_by_structure_finess(module_store: DirectoryStore) -> None:
    role_org = module_store.get_persons([HELENE])[0].activities[0].org_key
    org = module_store.get_orgs([role_org])[0]
    if org.finess:
        assert HELENE in _find(module_store, finess=org.finess)
