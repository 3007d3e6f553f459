"""``caducee demo``: a fresh sandbox, a message from one operator to another, instructions."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def _free_base() -> int:
    for _ in range(100):
        base = 20000 + secrets.randbelow(118) * 100  # below the ephemeral ports
        try:
            for port in [*range(base, base + 20), *range(base + 900, base + 903)]:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


@pytest.mark.slow
def test_demo_sends_a_message_and_explains(tmp_path: Path) -> None:
    pytest.importorskip("caducee.sandbox.init", reason="sandbox init (trust part) not merged")
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    demo = tmp_path / "demo"
    cmd = [sys.executable, "-m", "caducee", "demo", "--dir", str(demo), "--no-wait",
           "--port-base", str(_free_base())]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert (demo / "sandbox.json").is_file()
    assert re.search(r"arrived in \S+ INBOX as UID 1 after \d+ ms", out), out
    assert "swaks --server 127.0.0.1" in out and "--tls" in out and "--tls-ca-path" in out
    assert "curl --ssl-reqd --cacert" in out
    assert "caducee mailbox messages" in out
    assert "liste blanche https://" in out and "OCSP http://" in out  # the authority
    assert "directory      FHIR https://" in out and "Practitioner?mailbox-mss=" in out
    # a second run reuses the sandbox and the message count goes on
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "creating a sandbox" not in again.stdout
    assert "as UID 2" in again.stdout
