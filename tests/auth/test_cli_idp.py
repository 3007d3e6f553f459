"""``caducee idp ...`` as a user runs it: a subprocess, a real server, real HTTPS."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from caducee.auth.totp import totp
from caducee.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "caducee", "idp", *args],
        capture_output=True,
        text=True,
        check=False,
        env=full_env,
        timeout=60,
    )


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in (
        [],
        ["serve"],
        ["user"],
        ["user", "add"],
        ["user", "list"],
        ["client", "add"],
        ["rotate-key"],
        ["audit"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(["idp", *cmd, "--help"])
        assert exc.value.code == 0, cmd
        assert "usage: caducee idp" in capsys.readouterr().out


def test_user_and_client_commands(tmp_path: Path) -> None:
    d = str(tmp_path / "idp")
    proc = _run(
        "user", "add", "--dir", d, "jdupont", "--idnps", "810002345678",
        "--given-name", "Jeanne", "--family-name", "DUPONT", "--password-env", "PW",
        env={"PW": "un mot de passe solide"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"TOTP secret: [A-Z2-7]{32}", proc.stdout)
    assert "un mot de passe solide" not in proc.stdout
    dup = _run("user", "add", "--dir", d, "jdupont", "--idnps", "810002345679", "--no-password",
               "--cert-subject", "CN=x,C=FR")  # fmt: skip
    assert dup.returncode == 1 and dup.stderr.startswith("caducee: error:")
    short = _run("user", "add", "--dir", d, "x", "--idnps", "810002345670", "--password-env",
                 "PW", env={"PW": "court"})  # fmt: skip
    assert short.returncode == 1 and "too short" in short.stderr
    listed = _run("user", "list", "--dir", d)
    assert "jdupont\t810002345678\tJeanne DUPONT\tpwd,totp" in listed.stdout
    conf = _run("client", "add", "--dir", d, "op1", "--audience", "op1", "--confidential")
    assert re.search(r"client secret: \S{40,}", conf.stdout)
    pub = _run("client", "add", "--dir", d, "lps", "--redirect-uri", "http://127.0.0.1/cb",
               "--audience", "op1")  # fmt: skip
    assert "public (PKCE)" in pub.stdout
    assert "lps\tpublic\taud=op1" in _run("client", "list", "--dir", d).stdout


def test_serve_answers_discovery_and_logs_in(tmp_path: Path) -> None:
    d = tmp_path / "idp"
    out = _run("user", "add", "--dir", str(d), "jdupont", "--idnps", "810002345678",
               "--password-env", "PW", env={"PW": "un mot de passe solide"})  # fmt: skip
    secret = re.search(r"TOTP secret: (\S+)", out.stdout).group(1)  # type: ignore[union-attr]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "caducee", "idp", "serve", "--dir", str(d), "--listen",
         "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.match(r"IdP issuer (https://127\.0\.0\.1:\d+) listening", line)
        assert m, (line, proc.poll())
        base = m.group(1)
        ctx = ssl.create_default_context(cafile=str(d / "tls-cert.pem"))
        with httpx.Client(verify=ctx, timeout=10) as c:
            doc = c.get(f"{base}/.well-known/openid-configuration").json()
            assert doc["issuer"] == base
            assert c.get(f"{base}/jwks").json()["keys"][0]["alg"] == "ES256"
            page = c.get(f"{base}/authorize?response_type=code&client_id=none")
            assert page.status_code == 400  # unknown client: an error page, no redirect
        assert totp(secret).isdigit()
    finally:
        proc.terminate()
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
