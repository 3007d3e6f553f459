"""The generator writes realistic files in exactly the public formats, deterministically."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from caducee.directory.codes import PROFESSIONS, SECTEURS
from caducee.directory.extracts import ExtractKind, iter_lines, open_extract
from caducee.directory.synth import SynthResult, generate


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", 300, seed=5)
    b = generate(tmp_path / "b", 300, seed=5)
    c = generate(tmp_path / "c", 300, seed=6)
    assert _digest(a.ps_path) == _digest(b.ps_path)
    assert _digest(a.mss_path) == _digest(b.mss_path)
    assert _digest(a.ps_path) != _digest(c.ps_path)


def _rows(path: Path) -> list[list[str]]:
    with open_extract(path) as raw:
        out = []
        for _kind, _n, f in iter_lines(raw):
            assert isinstance(f, list), f"bad generated line: {f}"
            out.append(f)
        return out


def test_files_parse_with_real_code_sets_and_geography(synth: SynthResult) -> None:
    ps = _rows(synth.ps_path)
    mss = _rows(synth.mss_path)
    assert len(ps) == synth.activity_lines and len(mss) == synth.mailboxes
    assert {f[9] for f in ps} - {"41"} <= set(PROFESSIONS)
    assert {f[48] for f in ps if f[48]} <= set(SECTEURS)
    for f in ps:
        if f[35]:
            dept = f[44]
            assert f[35].startswith(dept[:2].replace("2A", "20").replace("2B", "20")), f
        assert f[2] == f[0] + f[1]
    per_person = Counter(f[2] for f in ps)
    assert max(per_person.values()) >= 2  # several activities per person
    assert any(f[19] == "" and f[21] == "" and f[23] == "" for f in ps) or len(ps) < 5000
    names = {f[7] for f in ps} | {f[8] for f in ps}
    assert any("-" in n for n in names) and any("'" in n for n in names)
    assert any(ch in "".join(names) for ch in "éèëïô")
    kinds = Counter(f[0] for f in mss)
    assert kinds["PER"] > kinds["ORG"] > 0
    org_per_struct = Counter(f[6] for f in mss if f[0] == "ORG")
    assert max(org_per_struct.values()) >= 15  # hospitals with many ORG mailboxes
    sectors = {f[48] for f in ps}
    assert {"SA01", "SA07", "SA17", "SA25", "SA33", "SA52"} <= sectors


def test_extra_people_are_in_both_files(synth: SynthResult) -> None:
    assert synth.extra_ids == ("810000000017", "810000000025", "810000000033")
    ps = _rows(synth.ps_path)
    helene = [f for f in ps if f[2] == "810000000017"]
    assert helene[0][7] == "LEFÈVRE-DUPONT" and helene[0][15] == "SM04"
    assert helene[0][35] == "69003"
    mss = _rows(synth.mss_path)
    assert any(f[1] == "helene.lefevre-dupont@medecin.mssante.fr" for f in mss)


def test_zip_output(tmp_path: Path) -> None:
    res = generate(tmp_path, 50, seed=1, zip_files=True)
    assert res.ps_path.suffix == ".zip" and res.mss_path.suffix == ".zip"
    assert len(_rows(res.ps_path)) == res.activity_lines
    kind = next(iter_lines(open_extract(res.mss_path)))[0]
    assert kind == ExtractKind.MSS
