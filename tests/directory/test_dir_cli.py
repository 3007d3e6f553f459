"""``caducee directory`` commands, end to end through the CLI entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from caducee.cli.main import main
from caducee.directory.sandbox import build_sandbox_directory
from caducee.directory.store import PersonQuery
from caducee.directory.synth import ExtraPerson


@pytest.mark.parametrize("cmd", ["import", "synth", "search", "serve"])
def test_every_command_has_help(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["directory", cmd, "--help"])
    assert exc.value.code == 0
    assert f"usage: caducee directory {cmd}" in capsys.readouterr().out


def test_synth_import_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "files"
    assert main(["directory", "synth", "--persons", "300", "--out", str(out), "--seed", "2"]) == 0
    files = sorted(out.iterdir())
    db = tmp_path / "d.db"
    ps = next(f for f in files if f.name.startswith("PS_"))
    mss = next(f for f in files if f.name.startswith("Extraction_"))
    assert main(["directory", "import", str(ps), str(mss), "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert "persons: 300 added" in text and "mailboxes:" in text
    assert main(["directory", "search", "--db", str(db), "--profession", "10", "--limit", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert 1 <= len(lines) <= 3
    assert main(["directory", "search", "--db", str(db), "--org", "ch", "--limit", "2"]) == 0
    assert capsys.readouterr().out.strip()


def test_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("not|an|extract\n", encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "caducee",
            "directory",
            "import",
            str(bad),
            "--db",
            str(tmp_path / "d.db"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("caducee: error: line 1: unknown header")


def test_progress_bar_on_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["directory", "synth", "--persons", "50", "--out", str(tmp_path), "--progress"]) == 0
    )
    assert "generating [" in capsys.readouterr().err


def test_build_sandbox_directory(tmp_path: Path) -> None:
    extra = [
        ExtraPerson(
            "Sandbox", "Alice", mailbox="alice.sandbox@medecin.mssante.fr", rpps="10000000041"
        )
    ]
    sd = build_sandbox_directory(tmp_path / "sandbox.db", extra, persons=200)
    assert sd.extra_ids == ("810000000041",)
    assert sd.store.search_persons(PersonQuery(text="alice sandbox"), 0, 5) == ["810000000041"]
    assert sd.store.find_mailbox("alice.sandbox@medecin.mssante.fr")[0].idnps == "810000000041"
    assert sd.store.counts()["person"] == 201
    sd.store.close()
