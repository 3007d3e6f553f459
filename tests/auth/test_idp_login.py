"""Login at the IdP: lockout, rate limit, CSRF, TOTP window, card (TLS client certificate)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from caducee.auth.idp.app import SESSION_COOKIE
from caducee.auth.totp import totp

from .conftest import (
    PASSWORD,
    RunningIdp,
    authorize_query,
    csrf_of,
    exchange,
    pkce,
    settings_for_tests,
    start_idp,
)
from .pki import Pki


async def _try_password(
    c: httpx.AsyncClient, password: str, code: str, username: str = "jdupont"
) -> httpx.Response:
    _, challenge = pkce()
    q = authorize_query(challenge)
    page = await c.get(f"/authorize?{q}")
    return await c.post(
        "/login/password",
        data={
            "csrf": csrf_of(page.text),
            "query": q,
            "username": username,
            "password": password,
            "totp": code,
        },
    )


async def test_login_page_is_french_and_secure(idp: RunningIdp) -> None:
    _, challenge = pkce()
    async with idp.http() as c:
        page = await c.get(f"/authorize?{authorize_query(challenge)}")
    assert page.status_code == 200
    assert '<html lang="fr">' in page.text
    assert "Mot de passe" in page.text and 'for="totp"' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert "Se connecter avec ma carte" not in page.text  # no card offered without one


async def test_lockout_after_failures_even_with_right_password(idp: RunningIdp) -> None:
    async with idp.http() as c:
        for _ in range(3):  # settings_for_tests: max_failures=3
            resp = await _try_password(c, "wrong", totp(idp.totp_secret))
            assert resp.status_code == 401
            assert "Identifiant, mot de passe ou code incorrect" in resp.text
        locked = await _try_password(c, PASSWORD, totp(idp.totp_secret))
    assert locked.status_code == 401
    events = idp.server.store.audit_events()
    assert any("account locked" in e[4] for e in events)
    assert events[0][1:4] == ("idp.login.password", "refused", "jdupont")
    assert events[0][4] == "locked"
    # no secret ever reaches the audit trail
    assert not any(PASSWORD in e[4] or "wrong" in e[4] for e in events)
    idp.server.store.unlock("jdupont")
    async with idp.http() as c:
        ok = await _try_password(c, PASSWORD, totp(idp.totp_secret))
    assert ok.status_code == 303


async def test_wrong_totp_and_missing_totp_fail(idp: RunningIdp) -> None:
    async with idp.http() as c:
        bad = await _try_password(
            c, PASSWORD, "000000" if totp(idp.totp_secret) != "000000" else "111111"
        )
        missing = await _try_password(c, PASSWORD, "")
    assert bad.status_code == 401 and missing.status_code == 401


async def test_rate_limit_per_address(tmp_path: Path, pki: Pki) -> None:
    running = await start_idp(tmp_path, pki, settings_for_tests(rate_limit=4, max_failures=100))
    try:
        async with running.http() as c:
            codes = [
                (await _try_password(c, "wrong", "123456", username=f"u{i}")).status_code
                for i in range(6)
            ]
        assert codes[:4] == [401] * 4
        assert codes[4:] == [429, 429]
    finally:
        await running.server.stop()


async def test_login_without_csrf_cookie_is_refused(idp: RunningIdp) -> None:
    _, challenge = pkce()
    q = authorize_query(challenge)
    async with idp.http() as c:
        page = await c.get(f"/authorize?{q}")
        token = csrf_of(page.text)
    async with idp.http() as other:  # a forged cross-site post has no CSRF cookie
        resp = await other.post(
            "/login/password",
            data={"csrf": token, "query": q, "username": "jdupont", "password": PASSWORD},
        )
    assert resp.status_code == 403


async def test_card_login_with_client_certificate(idp: RunningIdp) -> None:
    verifier, challenge = pkce()
    q = authorize_query(challenge)
    async with idp.http(cert=idp.card) as c:
        page = await c.get(f"/authorize?{q}")
        assert "Se connecter avec ma carte" in page.text
        resp = await c.post("/login/card", data={"csrf": csrf_of(page.text), "query": q})
        assert resp.status_code == 303, resp.text
        resp = await c.get(resp.headers["location"])
        code = parse_qs(urlsplit(resp.headers["location"]).query)["code"][0]
        tok = (await exchange(c, code, verifier)).json()
        info = await c.get("/userinfo", headers={"Authorization": f"Bearer {tok['access_token']}"})
    assert info.json()["SubjectNameID"] == "899700218896"
    claims = idp.server.core.decode_access_token(tok["access_token"])  # type: ignore[union-attr]
    assert claims is not None and claims["amr"] == ["sc", "hwk"]


async def test_card_login_without_certificate_or_unknown_card(idp: RunningIdp) -> None:
    _, challenge = pkce()
    q = authorize_query(challenge)
    async with idp.http() as c:
        page = await c.get(f"/authorize?{q}")
        none = await c.post("/login/card", data={"csrf": csrf_of(page.text), "query": q})
    stranger = idp.pki.client("899700999999/Inconnu", "CPS")
    async with idp.http(cert=stranger) as c:
        page = await c.get(f"/authorize?{q}")
        unknown = await c.post("/login/card", data={"csrf": csrf_of(page.text), "query": q})
    assert none.status_code == 401 and unknown.status_code == 401
    assert "Carte non reconnue" in unknown.text


async def test_certificate_from_another_ca_fails_the_handshake(
    idp: RunningIdp, tmp_path: Path
) -> None:
    other = Pki(tmp_path / "other").client("899700218896/Jeanne DUPONT", "CPS")
    async with idp.http(cert=other) as c:
        with pytest.raises(httpx.HTTPError):
            await c.get("/.well-known/openid-configuration")


async def test_expired_card_fails_the_handshake(idp: RunningIdp) -> None:
    expired = idp.pki.client("899700218896/Jeanne DUPONT", "CPS", expired=True)
    async with idp.http(cert=expired) as c:
        with pytest.raises(httpx.HTTPError):
            await c.get("/.well-known/openid-configuration")


async def test_logout_ends_the_session(idp: RunningIdp) -> None:
    async with idp.http() as c:
        assert (await _try_password(c, PASSWORD, totp(idp.totp_secret))).status_code == 303
        _, challenge = pkce()
        assert (await c.get(f"/authorize?{authorize_query(challenge)}")).status_code == 302
        sid = c.cookies[SESSION_COOKIE]
        await c.post("/logout")
        c.cookies.set(SESSION_COOKIE, sid)  # the old cookie is dead on the server side too
        page = await c.get(f"/authorize?{authorize_query(challenge)}")
    assert page.status_code == 200 and "Mot de passe" in page.text


async def test_prompt_none_and_prompt_login(idp: RunningIdp) -> None:
    _, challenge = pkce()
    async with idp.http() as c:
        none = await c.get(f"/authorize?{authorize_query(challenge, prompt='none')}")
        assert none.status_code == 302
        assert "error=login_required" in none.headers["location"]
        assert "state=st4te" in none.headers["location"]
        assert (await _try_password(c, PASSWORD, totp(idp.totp_secret))).status_code == 303
        silent = await c.get(f"/authorize?{authorize_query(challenge, prompt='none')}")
        assert silent.status_code == 302 and "code=" in silent.headers["location"]
        forced = await c.get(f"/authorize?{authorize_query(challenge, prompt='login')}")
        assert forced.status_code == 200 and "Mot de passe" in forced.text
        # the form resumes the request without prompt=login (no loop after logging in)
        assert "prompt" not in csrf_query(forced.text)


async def test_tampered_resume_query_cannot_inject_headers(idp: RunningIdp) -> None:
    _, challenge = pkce()
    q = authorize_query(challenge)
    async with idp.http() as c:
        page = await c.get(f"/authorize?{q}")
        resp = await c.post(
            "/login/password",
            data={
                "csrf": csrf_of(page.text),
                "query": q + "&x=\r\nSet-Cookie: evil=1",
                "username": "jdupont",
                "password": PASSWORD,
                "totp": totp(idp.totp_secret),
            },
        )
    assert resp.status_code == 303
    assert resp.headers["location"].startswith("/authorize?")
    assert "\r" not in resp.headers["location"] and "evil" not in resp.headers.get("set-cookie", "")


def csrf_query(html: str) -> str:
    import html as html_mod
    import re

    m = re.search(r'name="query" value="([^"]*)"', html)
    assert m
    return html_mod.unescape(m.group(1))
