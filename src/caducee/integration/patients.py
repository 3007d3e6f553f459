"""The practice's patient index (a simple, configurable source) and INS-first matching.

Sources: CSV (header row), JSON (a list of objects) or SQLite (table ``patients``), with the
columns ``id, ins, birth_name, first_birth_forename, birth_date, sex, birthplace_cog``
(``ins`` and ``birthplace_cog`` may be empty).

Matching (ANS volet, errors 902-905): the CDA INS must be present (903) with its traits (905);
the patient is found by INS, and the stored traits must match exactly (904); without an INS
match, a unique patient with the same traits and no stored INS is accepted (the identity is
then the practice's to qualify), a patient with the same traits and another INS is 904, and
nobody is 902.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from caducee.core.errors import ConfigError
from caducee.documents.cda import Patient

__all__ = ["MatchResult", "PatientIndex", "PatientRecord", "load_patient_index"]

_FIELDS = ("id", "ins", "birth_name", "first_birth_forename", "birth_date", "sex", "birthplace_cog")


def _norm(value: str | None) -> str:
    text = unicodedata.normalize("NFC", value or "").upper()
    return " ".join(text.split())


@dataclass(frozen=True)
class PatientRecord:
    id: str
    ins: str | None
    birth_name: str
    first_birth_forename: str
    birth_date: str
    sex: str
    birthplace_cog: str | None = None

    def traits_key(self) -> tuple[str, str, str, str]:
        return (
            _norm(self.birth_name),
            _norm(self.first_birth_forename),
            self.birth_date[:8],
            _norm(self.sex),
        )


@dataclass(frozen=True)
class MatchResult:
    patient: PatientRecord | None
    error: int | None
    how: str  # "ins" | "traits" | "-"


class PatientIndex:
    def __init__(self, records: list[PatientRecord]) -> None:
        self.records = records
        self._by_ins = {r.ins.upper(): r for r in records if r.ins}
        self._by_traits: dict[tuple[str, str, str, str], list[PatientRecord]] = {}
        for r in records:
            self._by_traits.setdefault(r.traits_key(), []).append(r)

    def match(self, patient: Patient) -> MatchResult:
        status = patient.ins_status
        if not status.present or patient.ins is None:
            return MatchResult(None, 903, "-")
        if status.problems or status.missing_traits:
            return MatchResult(None, 905, "-")
        t = patient.traits
        key = (
            _norm(t.birth_family),
            _norm(t.first_birth_given),
            (t.birth_date or "")[:8],
            _norm(t.sex),
        )
        found = self._by_ins.get((patient.ins.extension or "").upper())
        if found is not None:
            if found.traits_key() != key:
                return MatchResult(found, 904, "ins")
            if (
                found.birthplace_cog
                and t.birthplace_cog
                and found.birthplace_cog != t.birthplace_cog
            ):
                return MatchResult(found, 904, "ins")
            return MatchResult(found, None, "ins")
        same = self._by_traits.get(key, [])
        if len(same) == 1:
            if same[0].ins:
                return MatchResult(same[0], 904, "traits")
            return MatchResult(same[0], None, "traits")
        return MatchResult(None, 902, "-")


def _record(row: dict[str, object], where: str) -> PatientRecord:
    missing = [
        f
        for f in ("id", "birth_name", "first_birth_forename", "birth_date", "sex")
        if not row.get(f)
    ]
    if missing:
        raise ConfigError([f"patient index {where}: missing {', '.join(missing)}"])
    return PatientRecord(
        id=str(row["id"]),
        ins=str(row["ins"]).strip() if row.get("ins") else None,
        birth_name=str(row["birth_name"]),
        first_birth_forename=str(row["first_birth_forename"]),
        birth_date=str(row["birth_date"]).replace("-", ""),
        sex=str(row["sex"]),
        birthplace_cog=str(row["birthplace_cog"]) if row.get("birthplace_cog") else None,
    )


def load_patient_index(path: str | Path) -> PatientIndex:
    """Load a CSV, JSON or SQLite patient index (by file suffix)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"patient index: file not found: {p}"])
    suffix = p.suffix.lower()
    rows: list[dict[str, object]]
    if suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(p.read_text(encoding="utf-8-sig"))))
    elif suffix == ".json":
        data = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ConfigError([f"patient index {p}: JSON must be a list of patients"])
        rows = [dict(r) for r in data if isinstance(r, dict)]
    elif suffix in (".sqlite", ".sqlite3", ".db"):
        with sqlite3.connect(f"file:{p}?mode=ro", uri=True) as conn:
            conn.row_factory = sqlite3.Row
            cols = ", ".join(_FIELDS)
            rows = [dict(r) for r in conn.execute(f"SELECT {cols} FROM patients")]  # noqa: S608
    else:
        raise ConfigError([f"patient index {p}: use .csv, .json or .sqlite"])
    return PatientIndex([_record(r, f"{p.name} row {i + 1}") for i, r in enumerate(rows)])
