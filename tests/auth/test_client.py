"""The relying-party helper against the running IdP: login, refresh before expiry, end of
session when the refresh is refused; SASL responses it builds parse back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from caducee.auth.client import OidcClient, oauthbearer_response, xoauth2_response
from caducee.auth.sasl_mechs import parse_oauthbearer, parse_xoauth2
from caducee.auth.totp import totp
from caducee.core.errors import AuthenticationFailed, InvalidInput

from .conftest import PASSWORD, REDIRECT, RunningIdp, settings_for_tests, start_idp
from .pki import Pki


async def _browser_login(idp: RunningIdp, url: str) -> str:
    """What the user's browser does: open the URL, fill the form, follow to the callback."""
    async with idp.http() as browser:
        page = await browser.get(url)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        query = url.split("?", 1)[1]
        resp = await browser.post(
            "/login/password",
            data={
                "csrf": csrf,
                "query": query,
                "username": "jdupont",
                "password": PASSWORD,
                "totp": totp(idp.totp_secret),
            },
        )
        resp = await browser.get(resp.headers["location"])
        return str(resp.headers["location"])


async def test_login_refresh_and_session_end(tmp_path: Path, pki: Pki) -> None:
    idp = await start_idp(tmp_path, pki, settings_for_tests(access_token_lifetime=40))
    try:
        client = OidcClient(idp.base, "lps", REDIRECT, verify=idp.client_ctx())
        req = await client.start()
        assert "code_challenge_method=S256" in req.url and "verifier" not in repr(req)
        callback = await _browser_login(idp, req.url)
        with pytest.raises(InvalidInput, match="state"):
            await client.finish(req, callback.replace(req.state, "forged"))
        tokens = await client.finish(req, callback)
        assert tokens.access_token not in repr(tokens)
        # 40 s lifetime, 30 s margin: still fresh now ...
        tok, same = await client.access_token(tokens)
        assert same is tokens and tok == tokens.access_token
        # ... and refreshed (rotated) once inside the margin
        client.refresh_margin = 60
        tok2, fresh = await client.access_token(tokens)
        assert fresh.refresh_token != tokens.refresh_token and tok2 != tok
        # the old refresh token is spent: using it revokes the grant -> session over
        with pytest.raises(AuthenticationFailed, match="invalid_grant"):
            await client.refresh(tokens)
        with pytest.raises(AuthenticationFailed):
            await client.refresh(fresh)
    finally:
        await idp.server.stop()


def test_sasl_responses_roundtrip() -> None:
    x = parse_xoauth2(xoauth2_response("jeanne.dupont@op1.test", "abc.def.ghi"))
    assert (x.authzid, x.token) == ("jeanne.dupont@op1.test", "abc.def.ghi")
    o = parse_oauthbearer(oauthbearer_response("a,b=c@op1.test", "abc.def.ghi", "mx", 587))
    assert (o.authzid, o.token, dict(o.fields)) == (
        "a,b=c@op1.test",
        "abc.def.ghi",
        {"host": "mx", "port": "587"},
    )
