"""``caducee sandbox run``: every operator of a sandbox in one process, graceful on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_demo import SRC, _free_base


@pytest.mark.slow
def test_sandbox_run_serves_every_operator_until_sigterm(tmp_path: Path) -> None:
    pytest.importorskip("caducee.sandbox.init", reason="sandbox init (trust part) not merged")
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    d = tmp_path / "sb"
    base = [sys.executable, "-m", "caducee", "sandbox"]
    init = subprocess.run(
        [*base, "init", "--dir", str(d), "--operators", "3", "--port-base", str(_free_base())],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    info = json.loads((d / "sandbox.json").read_text())
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*base, "run", "--dir", str(d)], env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while b"operator(s) running" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert b"3 operator(s) running" in log.read_bytes()
        ctx = ssl.create_default_context(cafile=info["ca_bundle"])
        ctx.check_hostname = False
        for op in info["operators"]:  # each submission server answers with STARTTLS
            host, _, port = op["submission"].rpartition(":")
            with smtplib.SMTP(host, int(port), timeout=10) as client:
                client.starttls(context=ctx)
                assert client.noop()[0] == 250
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert b"stopped" in log.read_bytes()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
