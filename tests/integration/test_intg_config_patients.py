"""Agent configuration errors (reported together) and the three patient-index formats."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from caducee.core.errors import ConfigError
from caducee.documents.cda import InstanceId, Patient
from caducee.documents.ins import INS_NIR_TEST, IdentityTraits, check_ins
from caducee.integration.config import load_config
from caducee.integration.patients import load_patient_index

ROW = {
    "id": "P1",
    "ins": "279035121518989",
    "birth_name": "PAT-TROIS",
    "first_birth_forename": "DOMINIQUE",
    "birth_date": "1979-03-28",
    "sex": "F",
    "birthplace_cog": "51215",
}


def _patient(birth_date: str = "19790328") -> Patient:
    traits = IdentityTraits("PAT-TROIS", "DOMINIQUE", None, birth_date, "F", "51215")
    ins = InstanceId(INS_NIR_TEST, "279035121518989")
    return Patient(ins, (), traits, ins_status=check_ins(ins.root, ins.extension, traits))


def test_every_config_problem_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_PASSWORD", raising=False)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        '[mailbox]\nhost = "h"\nport = 143\nuser = "u"\npassword = "inline"\n'
        'password_env = "NOPE_PASSWORD"\ntls = "none"\n'
        '[practice]\naddress = "a@b.fr"\npatients = "missing.csv"\nstate = "s.sqlite"\n'
        '[[adapter]]\ntype = "smoke-signals"\n[[adapter]]\ntype = "mllp"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    problems = err.value.problems
    assert "mailbox.tls: must be starttls or implicit" in problems
    assert "mailbox.password_env: environment variable NOPE_PASSWORD is not set" in problems
    assert "mailbox.password: passwords are not accepted in the file" in problems
    assert "adapter[0].type: must be mllp, fhir or folder" in problems
    assert "adapter[1].host: required for mllp" in problems
    assert any(p.startswith("practice.patients: file not found") for p in problems)


def test_patient_index_formats(tmp_path: Path) -> None:
    csv_path = tmp_path / "p.csv"
    csv_path.write_text(",".join(ROW) + "\n" + ",".join(ROW.values()) + "\n")
    json_path = tmp_path / "p.json"
    json_path.write_text(json.dumps([ROW]))
    db_path = tmp_path / "p.sqlite"
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"CREATE TABLE patients ({', '.join(ROW)})")
        marks = ", ".join("?" * len(ROW))
        conn.execute(f"INSERT INTO patients VALUES ({marks})", list(ROW.values()))  # noqa: S608
    conn.close()
    for path in (csv_path, json_path, db_path):
        index = load_patient_index(path)
        match = index.match(_patient())
        assert match.error is None and match.patient is not None and match.patient.id == "P1"
        assert index.match(_patient("19790329")).error == 904
    with pytest.raises(ConfigError, match=r"use \.csv, \.json or \.sqlite"):
        bad = tmp_path / "p.txt"
        bad.write_text("x")
        load_patient_index(bad)
