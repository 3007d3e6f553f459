"""Mailbox substring search on SQLite: matching the pattern's uncommon trigrams, then checking the
address, finds exactly the holders a plain ``LIKE`` over every address finds."""

from __future__ import annotations

from pathlib import Path

from caducee.directory.importer import import_extract
from caducee.directory.store_sqlite import SqliteDirectoryStore, _trigram_match
from caducee.directory.synth import SynthResult


def test_trigram_query_leaves_out_the_domain_trigrams() -> None:
    assert _trigram_match("emie.fa") == '"emi" AND "mie" AND "ie." AND ".fa"'
    assert _trigram_match("sante.fr") == '"san" AND "ant" AND "nte" AND "te." AND "e.f" AND ".fr"'
    assert _trigram_match('a"b.c') == '"a""b" AND """b." AND "b.c"'


def test_same_holders_as_like(synth: SynthResult, tmp_path: Path) -> None:
    store = SqliteDirectoryStore(tmp_path / "d.db")
    import_extract(store, synth.ps_path)
    import_extract(store, synth.mss_path)
    addresses = [r[0] for r in store._all("SELECT address FROM mailbox ORDER BY pk")]
    patterns = {a.split("@")[0][i : i + 7] for a in addresses[::40] for i in (0, 2)}
    patterns |= {"mssante", "ante.fr", "e.fr", "efevre-dupont@med", "lène", 'x"y', "@me", "%_%ab"}
    found = 0
    for p in sorted(patterns):
        holders = store._mailbox_holders("idnps", p, "contains")
        truth = {
            r[0]
            for r in store._all(
                "SELECT idnps FROM mailbox WHERE address LIKE ? AND liste_rouge = 0"
                " AND idnps <> ''",
                ["%" + p.replace("%", "").replace("_", "") + "%"],
            )
        }
        assert len(holders) == len(set(holders)) == min(len(truth), 200), p
        assert set(holders) <= truth, p
        found += bool(holders)
    assert found > len(patterns) // 2
    store.close()
