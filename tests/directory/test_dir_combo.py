"""Combined profession x department tokens: the same ids with and without them, both engines,
and a directory imported before them upgraded by its next import."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caducee.directory import sqlbase
from caducee.directory.importer import import_extract
from caducee.directory.rows import SEARCH_VERSION, combo_tokens, upgrade_doc
from caducee.directory.store import DirectoryStore, PersonQuery
from caducee.directory.store_sqlite import PERSON_FTS
from caducee.directory.synth import SynthResult, generate

POPULATION = 3000


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    return generate(tmp_path_factory.mktemp("combo"), POPULATION, seed=11)


def _open(kind: str, request: pytest.FixtureRequest, path: Path) -> DirectoryStore:
    if kind == "sqlite":
        from caducee.directory.store_sqlite import SqliteDirectoryStore

        return SqliteDirectoryStore(path / "directory.db")
    from caducee.directory.store_postgres import PostgresDirectoryStore

    return PostgresDirectoryStore(request.getfixturevalue("pg_dsn"), max_size=4)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def loaded(
    request: pytest.FixtureRequest, tmp_path: Path, population: SynthResult
) -> Iterator[Any]:
    store: Any = _open(request.param, request, tmp_path)
    import_extract(store, population.ps_path)
    yield store
    store.close()


def _queries(store: Any) -> list[PersonQuery]:
    """Name prefixes x professions x departments drawn from the stored documents, plus
    professions that the person does not have (empty and near-empty answers)."""
    rows = store._all("SELECT family, given, doc FROM person ORDER BY pk")
    rng = random.Random(5)
    out: list[PersonQuery] = []
    for family, given, doc in rng.sample(rows, 60):
        toks = doc.split()
        given = (given or "").lower()
        specs = tuple(t[3:] for t in toks if t.startswith("zzs"))
        profs = [t[3:] for t in toks if t.startswith("zzp")]
        depts = [t[3:] for t in toks if t.startswith("zzd")]
        if not profs or not depts:
            continue
        word = family.split()[0][:3] if family else ""
        for n in (1, 3):
            out.append(PersonQuery(text=word[:n], professions=(profs[0],), postal_code=depts[0]))
        out.append(PersonQuery(professions=(profs[0], "60", "10"), postal_code=depts[-1]))
        out.append(PersonQuery(text=word, professions=("21",), postal_code=depts[0]))
        out.append(PersonQuery(family=family, professions=(profs[-1],), postal_code=depts[0]))
        typo = word + "x" if len(word) >= 3 else word
        out.append(PersonQuery(text=f"{typo} {given[:2]}", professions=(profs[0],),
                               postal_code=depts[0]))  # fmt: skip
        out.append(PersonQuery(text=given[:4], specialties=specs[:1], postal_code=depts[0]))
    out.append(PersonQuery(professions=("10",), postal_code="2A", city="ajaccio"))
    out.append(PersonQuery(text="ma", professions=("60",), postal_code="971"))
    return out


def _answers(store: Any, version: int, queries: list[PersonQuery]) -> list[list[str]]:
    store._search_version = version
    try:
        return [store.search_persons(q, 0, 50) + store.search_persons(q, 5, 20) for q in queries]
    finally:
        store._search_version = None


def test_combo_tokens_are_the_cross_product() -> None:
    assert combo_tokens(["zzp10", "zzd75", "zzcp75014", "zzp60", "zzd2a"]) == [
        "zzx10d75",
        "zzx10d2a",
        "zzx60d75",
        "zzx60d2a",
    ]
    doc = "martin jean zzp10 zzd75 zzx99d01"
    assert upgrade_doc(doc) == "martin jean zzp10 zzd75 zzx10d75"
    assert upgrade_doc(upgrade_doc(doc)) == upgrade_doc(doc)


def test_same_ids_with_and_without_the_token(loaded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert loaded.search_version() == SEARCH_VERSION
    queries = _queries(loaded)
    assert len(queries) > 100
    with_token = _answers(loaded, SEARCH_VERSION, queries)
    without = _answers(loaded, 1, queries)
    assert with_token == without
    combo = next(t for t in loaded._all("SELECT doc FROM person")[0][0].split() if "zzx" in t)
    name = [("ma", True)]
    # the smaller group drives when the other has more than DRIVE_MAX documents
    small, large = loaded._capped_count([(combo, False)]), loaded._capped_count(name)
    assert 0 < small < large <= sqlbase.DRIVE_MAX
    monkeypatch.setattr(sqlbase, "DRIVE_MAX", small)
    loaded._counts = None
    assert loaded._driving_groups([name, [(combo, False)]]) == ([[(combo, False)]], [name])
    assert _answers(loaded, SEARCH_VERSION, queries) == with_token
    monkeypatch.setattr(sqlbase, "DRIVE_MAX", 0)  # everything matched by the index
    loaded._counts = None
    assert loaded._driving_groups([name, [(combo, False)]]) == ([name, [(combo, False)]], [])
    assert _answers(loaded, SEARCH_VERSION, queries) == with_token
    assert _answers(loaded, 1, queries) == with_token
    assert sum(1 for a in with_token if a) > len(queries) // 2  # the queries find people


def _make_old(store: Any) -> None:
    """The directory as an earlier version left it: no combined tokens, no version flag."""
    rows = store._all("SELECT pk, doc FROM person")
    with store._cursor() as cur:
        for pk, doc in rows:
            old = " ".join(t for t in doc.split() if not t.startswith("zzx"))
            cur.execute(store._q("UPDATE person SET doc = ? WHERE pk = ?"), (old, pk))
        cur.execute("DELETE FROM meta WHERE k = 'search_version'")
        if store.engine == "sqlite":  # prefix indexes of 1 to 3 characters
            cur.execute("DROP TABLE person_fts")
            cur.execute(PERSON_FTS.replace("prefix='1 2 3 4 5 6 7 8'", "prefix='1 2 3'"))
            cur.execute("INSERT INTO person_fts(person_fts) VALUES('rebuild')")
    store._search_version = None


def test_old_directory_keeps_old_path_until_next_import(
    loaded: Any, population: SynthResult
) -> None:
    queries = _queries(loaded)
    expected = _answers(loaded, SEARCH_VERSION, queries)
    _make_old(loaded)
    assert loaded.search_version() == 1
    assert not loaded._all("SELECT 1 FROM person WHERE doc LIKE ?", ["%zzx%"])
    if loaded.engine == "sqlite":  # opening a non-empty old directory does not flag it
        from caducee.directory.store_sqlite import SqliteDirectoryStore

        again = SqliteDirectoryStore(loaded.path)
        assert again.search_version() == 1
        again.close()
    assert [loaded.search_persons(q, 0, 50) + loaded.search_persons(q, 5, 20)
            for q in queries] == expected  # fmt: skip
    report = import_extract(loaded, population.ps_path)  # same file: nothing else changes
    with_combo = loaded._all("SELECT count(*) FROM person WHERE doc LIKE ?", ["%zzx%"])[0][0]
    assert report.upgraded == with_combo > POPULATION * 9 // 10  # a few have no place
    assert report.added == report.changed == report.removed == 0
    assert "search documents upgraded" in report.summary()
    assert loaded.search_version() == SEARCH_VERSION
    assert _answers(loaded, SEARCH_VERSION, queries) == expected
    if loaded.engine == "sqlite":
        sql = loaded._all("SELECT sql FROM sqlite_master WHERE name = 'person_fts'")[0][0]
        assert "prefix='1 2 3 4 5 6 7 8'" in sql
    assert import_extract(loaded, population.ps_path).upgraded == 0
