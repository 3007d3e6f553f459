"""Security regression: tokens, codes and passwords reach neither the logs nor the IdP's
database in clear (Ref#2 ECO.1.2.5; "never log tokens")."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from caducee.auth.sasl_mechs import XOAuth2Mechanism
from caducee.auth.tokens import TokenValidator
from caducee.core.errors import AuthenticationFailed
from caducee.core.model import Account

from .conftest import AUDIENCE, PASSWORD, RunningIdp, exchange, login_and_get_code, pkce


class NoAccounts:
    async def get_account(self, login: str) -> Account | None:
        return None

    async def get_account_by_idnps(self, idnps: str) -> Account | None:
        return None

    async def mailboxes_of(self, login: str) -> list[object]:
        return []


async def _challenge(data: bytes) -> bytes:
    return b""


async def test_no_secret_in_logs_or_database(
    idp: RunningIdp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    verifier, challenge = pkce()
    async with idp.http() as c:
        code = await login_and_get_code(idp, c, challenge)
        tok = (await exchange(c, code, verifier)).json()
        refreshed = (
            await c.post(
                "/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": tok["refresh_token"],
                    "client_id": "lps",
                },
            )
        ).json()
        await c.post("/introspect", data={"token": tok["access_token"]}, auth=(AUDIENCE, "x"))
    validator = TokenValidator(
        idp.base, audience="someone-else", jwks_url=f"{idp.base}/jwks", verify=idp.client_ctx()
    )
    with pytest.raises(AuthenticationFailed):
        await validator.validate(tok["access_token"])
    mech = XOAuth2Mechanism(validator, NoAccounts())  # type: ignore[arg-type]
    with pytest.raises(AuthenticationFailed):
        await mech.authenticate(
            f"user=x\x01auth=Bearer {tok['access_token']}\x01\x01".encode(), _challenge
        )
    secrets = [
        code,
        tok["access_token"],
        tok["refresh_token"],
        tok["id_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
        PASSWORD,
        idp.totp_secret,
    ]
    # signatures are the secret part of a JWT; a payload may be quoted in an error, never all
    pieces = [s.rsplit(".", 1)[-1] for s in secrets]
    # Server side and our code: everything but the test's own HTTP client (httpx/httpcore,
    # whose DEBUG trace prints the IdP's Location headers as the browser receives them).
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name.startswith("authlib") for r in caplog.records)  # server side captured
    for piece in pieces:
        leaks = [line for line in ours if piece in line]
        assert not leaks, leaks[0][:300]
    for name in ("idp.sqlite3", "idp.sqlite3-wal"):
        path: Path = idp.server.data_dir / name
        if path.exists():
            data = path.read_bytes()
            for piece in pieces:
                assert piece.encode() not in data, name
