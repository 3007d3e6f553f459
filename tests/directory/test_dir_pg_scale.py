"""PostgreSQL at scale: prefix lexemes (``doc_pfx``) give the same ids as the prefix queries on
``doc_tsv``, a directory created before the column gets it with its next import, and mailbox
substring holders are cut without a sort."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from caducee.directory.importer import import_extract
from caducee.directory.store import PersonQuery
from caducee.directory.synth import SynthResult, generate

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    return generate(tmp_path_factory.mktemp("pfx"), 2500, seed=13)


@pytest.fixture
def pg(pg_dsn: str, population: SynthResult) -> Iterator[Any]:
    from caducee.directory.store_postgres import PostgresDirectoryStore

    store = PostgresDirectoryStore(pg_dsn, max_size=4)
    import_extract(store, population.ps_path)
    yield store
    store.close()


def _queries(store: Any) -> list[PersonQuery]:
    rows = store._all("SELECT family, given, doc FROM person ORDER BY pk")
    rng = random.Random(3)
    out = [PersonQuery(text=t) for t in ("a", "ma", "de la", "z", "zz", "zzp", "jean-ma")]
    for family, given, doc in rng.sample(rows, 50):
        words = family.lower().split() + (given or "x").lower().split()
        depts = [t[3:] for t in doc.split() if t.startswith("zzd")]
        profs = [t[3:] for t in doc.split() if t.startswith("zzp")]
        for n in (1, 2, 4, 8, 9, 12):
            out.append(PersonQuery(text=" ".join(w[:n] for w in words)))
        out.append(PersonQuery(text=words[0][:3], professions=tuple(profs[:1]),
                               postal_code=depts[0] if depts else ""))  # fmt: skip
        out.append(PersonQuery(text=words[0] + "q"))  # a typo: corrections, exact lexemes
    return out


def _answers(store: Any, pfx: bool, queries: list[PersonQuery]) -> list[list[str]]:
    store._pfx = pfx
    try:
        return [store.search_persons(q, 0, 50) + store.search_persons(q, 3, 10) for q in queries]
    finally:
        store._pfx = True


def test_same_ids_with_and_without_prefix_lexemes(pg: Any) -> None:
    assert pg._pfx
    groups = [[("fontaine", True)], [("francoise", True)], [("zzx10d75", False)],
              [("leb", True), ("lef", False)]]  # fmt: skip
    sql, params = pg._fts_clause("person", groups)
    assert "doc_pfx" in sql and params[0] == "'fontaine' & 'francois' & 'zzx10d75'"
    assert params[1] == "francoise:* & (leb:* | lef)"
    _, params = pg._fts_clause("person", [[("zzcp75014", False), ("zzcp750", True)],
                                          [("zzp10", False), ("zzp60", False)]])  # fmt: skip
    assert params == ["('zzp10' | 'zzp60')", "(zzcp75014 | zzcp750:*)"]
    queries = _queries(pg)
    with_pfx = _answers(pg, True, queries)
    assert with_pfx == _answers(pg, False, queries)
    assert sum(1 for a in with_pfx if a) > len(queries) // 2


def test_directory_created_before_the_column_gets_it_on_next_import(
    pg: Any, pg_dsn: str, population: SynthResult
) -> None:
    from caducee.directory.store_postgres import PostgresDirectoryStore

    queries = _queries(pg)[:60]
    expected = _answers(pg, True, queries)
    with pg._cursor() as cur:
        cur.execute("ALTER TABLE person DROP COLUMN doc_pfx")
    old = PostgresDirectoryStore(pg_dsn, max_size=2)
    try:
        assert not old._pfx  # no doc_pfx: the queries stay on doc_tsv
        assert [old.search_persons(q, 0, 50) + old.search_persons(q, 3, 10) for q in queries] == (
            expected
        )
        report = import_extract(old, population.ps_path)
        assert (report.added, report.changed, report.removed) == (0, 0, 0)
        assert old._pfx and old._all("SELECT count(*) FROM person WHERE doc_pfx <> ''")[0][0] > 0
        assert old._all("SELECT 1 FROM pg_indexes WHERE indexname = 'person_pfx'")
        assert _answers(old, True, queries) == expected
    finally:
        old.close()


def test_mailbox_holders_cut_in_table_order(
    pg: Any, population: SynthResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    from caducee.directory import store_postgres

    import_extract(pg, population.mss_path)

    def holders(pattern: str) -> set[str]:
        return {
            r[0]
            for r in pg._all(
                "SELECT idnps FROM mailbox WHERE address LIKE ? AND liste_rouge = 0"
                " AND idnps <> ''",
                [f"%{pattern}%"],
            )
        }

    few = next(p for p in ("pharmacien", "sage-femme", "infirmier", "medecin") if holders(p))
    assert 0 < len(holders(few)) <= store_postgres.MAX_HOLDERS
    assert set(pg._mailbox_holders("idnps", few, "contains")) == holders(few)
    many = holders("mssante")
    assert len(many) > 20
    monkeypatch.setattr(store_postgres, "MAX_HOLDERS", 5)  # 20 mailboxes read, 5 holders kept
    cut = pg._mailbox_holders("idnps", "mssante", "contains")
    assert len(cut) == len(set(cut)) == 5 and set(cut) <= many
