"""Import and daily diff of the extracts, on SQLite and PostgreSQL (notes §6.3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from caducee.core.errors import InvalidInput
from caducee.directory import importer
from caducee.directory.extracts import (
    MSS_HEADER,
    PS_HEADER,
    ExtractKind,
    format_line,
    iter_lines,
    open_extract,
)
from caducee.directory.importer import import_extract
from caducee.directory.store import DirectoryStore, PersonQuery
from caducee.directory.synth import SynthResult, generate


def _rows(path: Path) -> list[list[str]]:
    with open_extract(path) as raw:
        return [f for _k, _n, f in iter_lines(raw) if isinstance(f, list)]


def _write(path: Path, kind: str, rows: list[list[str]], extra: list[bytes] = ()) -> Path:  # type: ignore[assignment]
    header = PS_HEADER if kind == ExtractKind.PS else MSS_HEADER
    body = "".join(format_line(r, kind) + "\n" for r in rows).encode()
    path.write_bytes(header.encode() + b"\n" + body + b"".join(extra))
    return path


def test_full_import_counts(store: DirectoryStore, synth: SynthResult) -> None:
    ps, mss = _rows(synth.ps_path), _rows(synth.mss_path)
    counts = store.counts()
    assert counts["person"] == len({f[2] for f in ps}) == synth.persons
    assert counts["activity"] == len(ps)
    assert counts["mailbox"] == len(mss)
    assert counts["org"] >= len({f[23] for f in ps if f[23]}) * 0.9


def test_daily_diff_adds_changes_removes(
    store: DirectoryStore, synth: SynthResult, tmp_path: Path
) -> None:
    ps = _rows(synth.ps_path)
    ids = sorted({f[2] for f in ps})
    gone, changed = ids[10], ids[20]
    rows = [f for f in ps if f[2] != gone]
    for f in rows:
        if f[2] == changed:
            f[17], f[18] = "B", "Bénévole"
    newcomer = list(next(f for f in ps if f[2] == ids[30]))
    newcomer[1], newcomer[2] = "19999999999", "819999999999"
    newcomer[7], newcomer[8] = "ZÉPHYRIN-ÖZTÜRK", "Anaëlle"
    rows.append(newcomer)
    report = import_extract(store, _write(tmp_path / "ps.txt", ExtractKind.PS, rows))
    assert (report.added, report.changed, report.removed) == (1, 1, 1)
    assert report.unchanged == len(ids) - 2
    assert store.get_persons([gone]) == []
    assert {a.mode_code for a in store.get_persons([changed])[0].activities} == {"B"}
    assert store.search_persons(PersonQuery(text="zephyrin ozturk"), 0, 5) == ["819999999999"]
    assert store.search_persons(PersonQuery(identifiers=(gone,)), 0, 5) == []
    again = import_extract(store, tmp_path / "ps.txt")
    assert (again.added, again.changed, again.removed) == (0, 0, 0)


def test_mailbox_diff(store: DirectoryStore, synth: SynthResult, tmp_path: Path) -> None:
    mss = _rows(synth.mss_path)
    dropped = mss[5][1]
    rows = [f for f in mss if f[1] != dropped]
    rows[0][7] = "NOUVEAU SERVICE"
    fresh = list(rows[1])
    fresh[1] = "nouvelle.adresse@medecin.mssante.fr"
    rows.append(fresh)
    report = import_extract(store, _write(tmp_path / "m.txt", ExtractKind.MSS, rows))
    assert (report.added, report.changed, report.removed) == (1, 1, 1)
    assert store.find_mailbox(dropped) == []
    assert store.find_mailbox(rows[0][1])[0].service == "NOUVEAU SERVICE"
    assert store.find_mailbox("Nouvelle.Adresse@medecin.mssante.fr")


def test_bad_lines_reported_and_skipped(
    empty_store: DirectoryStore, synth: SynthResult, tmp_path: Path
) -> None:
    rows = _rows(synth.ps_path)[:50]
    path = _write(tmp_path / "ps.txt", ExtractKind.PS, rows, [b"8|123|too|short|\n", b"\xff|x\n"])
    report = import_extract(empty_store, path)
    assert report.bad_count == 2
    assert [b.number for b in report.bad] == [52, 53]
    assert "columns" in report.bad[0].reason
    assert empty_store.counts()["activity"] == 50


def test_too_many_bad_lines_write_nothing(
    empty_store: DirectoryStore, synth: SynthResult, tmp_path: Path
) -> None:
    rows = _rows(synth.ps_path)[:20]
    path = _write(tmp_path / "ps.txt", ExtractKind.PS, rows, [b"bad\n"] * 5)
    with pytest.raises(InvalidInput, match=r"bad lines \(more than 3\)"):
        import_extract(empty_store, path, max_bad=3)
    assert empty_store.counts()["person"] == 0


def test_truncated_refresh_is_refused(
    store: DirectoryStore, synth: SynthResult, tmp_path: Path
) -> None:
    before = store.counts()
    rows = _rows(synth.ps_path)[:100]
    path = _write(tmp_path / "ps.txt", ExtractKind.PS, rows)
    with pytest.raises(InvalidInput, match="truncated"):
        import_extract(store, path)
    assert store.counts() == before
    report = import_extract(store, path, force=True)
    assert report.removed > 1000
    assert store.counts()["activity"] == 100


def test_failure_mid_import_rolls_back(
    store: DirectoryStore, synth: SynthResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = store.counts()
    rows = _rows(synth.ps_path)
    for f in rows:
        f[18] = "Libellé modifié"
    path = _write(tmp_path / "ps.txt", ExtractKind.PS, rows)
    calls = {"n": 0}
    real = importer.person_row

    def failing(*args: object, **kw: object) -> tuple[object, ...]:
        calls["n"] += 1
        if calls["n"] > 200:
            raise RuntimeError("disk full")
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(importer, "person_row", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        import_extract(store, path)
    assert store.counts() == before
    some = store.get_persons(store.search_persons(PersonQuery(), 0, 3))
    assert all(a.mode_label != "Libellé modifié" for p in some for a in p.activities)


def test_zip_import(empty_store: DirectoryStore, tmp_path: Path) -> None:
    res = generate(tmp_path, 120, seed=3, zip_files=True)
    r1 = import_extract(empty_store, res.ps_path)
    r2 = import_extract(empty_store, res.mss_path)
    assert r1.added == 120 and r2.added > 0
    assert r1.kind == ExtractKind.PS and r2.kind == ExtractKind.MSS


def test_first_load_of_an_unsorted_file(
    empty_store: DirectoryStore, synth: SynthResult, tmp_path: Path
) -> None:
    rows = _rows(synth.ps_path)
    several = [k for k in {f[2] for f in rows} if sum(1 for f in rows if f[2] == k) >= 2][:5]
    moved = [f for f in rows if f[2] in several and f is next(g for g in rows if g[2] == f[2])]
    shuffled = [f for f in rows if not any(f is m for m in moved)] + moved  # split their lines
    report = import_extract(empty_store, _write(tmp_path / "ps.txt", ExtractKind.PS, shuffled))
    assert report.added == synth.persons and report.lines == len(rows)
    assert empty_store.counts()["activity"] == len(rows)
    for key in several:
        expected = sum(1 for f in rows if f[2] == key)
        assert len(empty_store.get_persons([key])[0].activities) == expected
    again = import_extract(empty_store, synth.ps_path)  # same content, file order differs
    assert (again.added, again.changed, again.removed) == (0, 0, 0)


def test_refresh_with_too_many_bad_lines_changes_nothing(
    store: DirectoryStore, synth: SynthResult, tmp_path: Path
) -> None:
    before = store.counts()
    rows = _rows(synth.ps_path)[:-10]
    path = _write(tmp_path / "ps.txt", ExtractKind.PS, rows, [b"bad\n"] * 5)
    with pytest.raises(InvalidInput, match="5 bad lines"):
        import_extract(store, path, max_bad=3)
    assert store.counts() == before
