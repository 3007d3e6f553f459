"""``caducee trust inspect`` on the real liste blanche and on defective variants."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from caducee.cli.main import main
from caducee.trust.inspect import inspect_liste_blanche

CORPUS = "corpora/trust/listeblanchemssante-2025-05-head-truncated.xml"


@pytest.fixture(scope="module")
def real_bytes(shared_dir: Path) -> bytes:
    return (shared_dir / CORPUS).read_bytes()


def test_figures_of_the_real_file(real_bytes: bytes) -> None:
    report = inspect_liste_blanche(real_bytes, "real.xml")
    assert report.usable
    assert report.entries == 619
    assert report.certificate_dns == 35  # distinct DNCertificatOperateur values
    assert 0 < report.domains <= report.entries
    assert 0 < report.organisations <= report.certificate_dns
    assert report.top_organisations[0][0] == "GIP MIPIH"
    messages = [d.message for d in report.defects]
    assert any("root end tag" in m for m in messages)
    # real defects of this file: markup remnants in contacts, DateMAJ after generation
    assert any("markup remnants" in m and "ResponsableContact" in m for m in messages)
    assert any("nddtestasmae.mssante.fr: DateMAJ" in m and "after" in m for m in messages)
    assert any("'rassconsult' is not a fully qualified host name" in m for m in messages)


def test_defects_of_a_doctored_file(real_bytes: bytes) -> None:
    doctored = (
        real_bytes.replace(b"<Nom>adsea30.mssante.fr</Nom>", b"<Nom>adsea29.mssante.fr</Nom>", 1)
        .replace(b"CN=mss.synappse.fr,", b"CN=mss.synappse.fr, ", 1)
        .replace(b"<Nom>ag11.mssante.fr</Nom>", b"<Nom>bad_domain!</Nom>", 1)
        .replace(b"CN=mss.enovacom.fr,", b"CN=mss.enovacom.fr\\,x\\", 1)
    )
    report = inspect_liste_blanche(doctored)
    messages = [d.message for d in report.defects]
    assert any("adsea29.mssante.fr: duplicate entry" in m for m in messages)
    assert any("not in canonical form" in m for m in messages)
    assert any("'bad_domain!' is not a valid domain name" in m for m in messages)
    assert any("DN does not parse" in m for m in messages)
    assert report.usable  # warnings only


def test_cli_text_json_and_exit_status(
    real_bytes: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "lb.xml"
    good.write_bytes(real_bytes)
    assert main(["trust", "inspect", str(good)]) == 0
    out = capsys.readouterr().out
    assert "entries:          619" in out and "generated:        2025-03-13T14:54:10Z" in out
    assert main(["trust", "inspect", "--json", str(good)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["entries"] == 619 and data["usable"] is True
    assert {"domains", "certificate_dns", "organisations", "defects"} <= set(data)
    cut = tmp_path / "cut.xml"
    cut.write_bytes(real_bytes[: len(real_bytes) // 2])
    assert main(["trust", "inspect", "--json", str(cut)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["usable"] is False
    assert any("cut inside entry" in d["message"] for d in data["defects"])


def test_cli_missing_file_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "caducee", "trust", "inspect", "/nonexistent/lb.xml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "caducee: error:" in proc.stderr
