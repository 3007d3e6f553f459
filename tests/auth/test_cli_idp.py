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

from .conftest import AUDIENCE, IDNPS, PASSWORD, REDIRECT, RunningIdp

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
        ["token"],
        ["client", "list"],
        ["user", "unlock"],
        ["user", "passwd"],
        ["audit"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(["idp", *cmd, "--help"])
        assert exc.value.code == 0, cmd
        assert "usage: caducee idp" in capsys.readouterr().out


def test_user_and_client_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = str(tmp_path / "idp")

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["idp", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    monkeypatch.setenv("PW", "un mot de passe solide")
    code, out, _ = run(
        "user", "add", "--dir", d, "jdupont", "--idnps", "810002345678",
        "--given-name", "Jeanne", "--family-name", "DUPONT", "--password-env", "PW",
    )  # fmt: skip
    assert code == 0
    assert re.search(r"TOTP secret: [A-Z2-7]{32}", out)
    assert "un mot de passe solide" not in out
    code, _, err = run("user", "add", "--dir", d, "jdupont", "--idnps", "810002345679",
                       "--no-password", "--cert-subject", "CN=x,C=FR")  # fmt: skip
    assert code == 1 and err.startswith("caducee: error:")
    monkeypatch.setenv("PW", "court")
    code, _, err = run("user", "add", "--dir", d, "x", "--idnps", "810002345670",
                       "--password-env", "PW")  # fmt: skip
    assert code == 1 and "too short" in err
    assert "jdupont\t810002345678\tJeanne DUPONT\tpwd,totp" in run("user", "list", "--dir", d)[1]
    code, out, _ = run("client", "add", "--dir", d, "op1", "--audience", "op1", "--confidential")
    assert re.search(r"client secret: \S{40,}", out)
    _, out, _ = run("client", "add", "--dir", d, "lps", "--redirect-uri",
                    "http://127.0.0.1/cb", "--audience", "op1")  # fmt: skip
    assert "public (PKCE)" in out
    assert "lps\tpublic\taud=op1" in run("client", "list", "--dir", d)[1]
    assert run("rotate-key", "--dir", d)[1].startswith("new signing key ")
    assert run("user", "unlock", "--dir", d, "jdupont")[0] == 0
    assert run("audit", "--dir", d)[1] == ""  # no login happened yet


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
        proc.terminate()  # SIGTERM: a clean stop, exit status 0
        assert proc.wait(timeout=15) == 0
    finally:
        proc.terminate()
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


async def test_token_command_prints_a_usable_xoauth2_string(
    idp: RunningIdp, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import base64

    from caducee.auth.sasl_mechs import parse_xoauth2
    from caducee.auth.tokens import TokenValidator

    monkeypatch.setenv("PW", PASSWORD)
    monkeypatch.setenv("TOTP", idp.totp_secret)
    args = [
        "idp", "token", "--issuer", idp.base, "--client-id", "lps",
        "--redirect-uri", REDIRECT, "--login", "jdupont", "--password-env", "PW",
        "--totp-secret-env", "TOTP", "--ca", str(idp.pki.ca_file),
        "--xoauth2", "jeanne.dupont@op1.test",
    ]  # fmt: skip
    assert await asyncio.to_thread(main, args) == 0
    out = capsys.readouterr().out.strip()
    creds = parse_xoauth2(base64.b64decode(out))
    assert creds.authzid == "jeanne.dupont@op1.test"
    v = TokenValidator(
        idp.base, audience=AUDIENCE, jwks_url=f"{idp.base}/jwks", verify=idp.client_ctx()
    )
    assert (await v.validate(creds.token)).idnps == IDNPS
    # a wrong password is one line on stderr, exit status 1, and no token
    monkeypatch.setenv("PW", "wrong password")
    assert await asyncio.to_thread(main, args) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("caducee: error: login refused")
