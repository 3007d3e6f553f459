"""A query word longer than the longest prefix index matches the known names it starts,
exactly: the same persons as the prefix query it replaces."""

from __future__ import annotations

import pytest

from caducee.directory import sqlbase
from caducee.directory.store import DirectoryStore, PersonQuery
from caducee.directory.text import tokens


def _long_words(store: DirectoryStore) -> list[str]:
    persons = store.get_persons(store.search_persons(PersonQuery(), 0, 1500))
    words = {w for p in persons for w in tokens(f"{p.family} {p.given}") if len(w) > 8}
    return sorted(words)[:40]


def test_long_words_find_the_same_persons(
    module_store: DirectoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = _long_words(module_store)
    assert len(words) >= 10
    queries = [PersonQuery(text=w[:9]) for w in words] + [PersonQuery(family=w) for w in words]
    queries += [PersonQuery(text=w[:9], professions=("60",)) for w in words]
    queries += [PersonQuery(text="delafontaine"), PersonQuery(text="lefevredupont helene")]
    queries += [PersonQuery(text="lefevredupomt", fuzzy=True)]  # a typo: corrections still
    expanded = [module_store.search_persons(q, 0, 200) for q in queries]
    monkeypatch.setattr(sqlbase, "EXPAND_MAX", 0)  # every word stays a prefix query
    plain = [module_store.search_persons(q, 0, 200) for q in queries]
    assert expanded == plain
    assert sum(1 for ids in expanded if ids) >= len(words)
    assert "810000000017" in expanded[-1] and "810000000017" in expanded[-2]
