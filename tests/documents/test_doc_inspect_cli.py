"""``caducee documents inspect`` on a CDA, an XDM archive and a whole message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caducee.cli.main import main
from caducee.documents.mss import build_message
from caducee.documents.xdm import build_xdm

IMG = "corpora/clinical/cda-fr-cisis/IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml"
SCHEMA = "corpora/clinical/cda-fr-cisis/infrastructure/cda/CDA_extended.xsd"


def test_inspect_cda_text(shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["documents", "inspect", str(shared_dir / IMG), "--schema", str(shared_dir / SCHEMA)])
        == 0
    )
    out = capsys.readouterr().out
    assert "Document: CR d’imagerie médicale (18748-4)" in out
    assert "INS: 279035121518989 [INS-NIR-TEST] qualified" in out
    assert "verdict: conformant (schema checked)" in out


def test_inspect_ccda_json_reasons(shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_dir / "corpora/clinical/cda-hl7-ccda/Discharge_Summary.xml"
    assert (
        main(["documents", "inspect", str(path), "--json", "--schema", str(shared_dir / SCHEMA)])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "cda" and result["verdict"]["conformant"] is False
    assert result["verdict"]["schema_ok"] is False
    assert result["patient"]["ins"] is None


def test_inspect_xdm_and_message(
    shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cda = (shared_dir / IMG).read_bytes()
    zip_path = tmp_path / "IHE_XDM.zip"
    zip_path.write_bytes(build_xdm([cda]))
    assert main(["documents", "inspect", str(zip_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "xdm"
    assert result["entries"][0]["document"]["patient"]["ins_qualified"] is True
    eml = tmp_path / "message.eml"
    eml.write_bytes(
        build_message(sender="a@x.fr", recipients=["b@y.fr"], cdas=[cda], nil="DEV1").as_bytes()
    )
    assert main(["documents", "inspect", str(eml)]) == 0
    out = capsys.readouterr().out
    assert "X-MSS-NIL: DEV1" in out and "X-MSS-INS: O" in out
    assert "IHE XDM package" in out and "INS: 279035121518989" in out


def test_inspect_refuses_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_bytes(
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><ClinicalDocument>&e;</ClinicalDocument>'
    )
    assert main(["documents", "inspect", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("caducee: error: ") and "DTD or entities" in err
    assert "root:" not in err
