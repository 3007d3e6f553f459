from __future__ import annotations

import subprocess
import sys

from caducee.cli.main import main


def test_help_lists_commands(capsys: object) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "caducee", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert "usage: caducee" in proc.stdout


def test_no_command_prints_help_and_fails() -> None:
    assert main([]) == 2
