"""Webmail security over real HTTPS: headers, cookies, CSRF, login failures and throttling,
and the one authorisation rule checked the same way on the web, IMAP and SMTP submission."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import smtplib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from caducee.auth.client import OidcClient, headless_login, xoauth2_response
from caducee.auth.sasl_mechs import XOAuth2Mechanism
from caducee.auth.tokens import TokenValidator
from caducee.imap.server import ImapServer
from caducee.smtp.submission import SubmissionServer

from .harness import ORG_BOX, PASSWORD, World, csrf_of, web_login, world

NURSE = "ines.moreau@ch-exemple.mssante.test"
PAUL = "paul.martin@ch-exemple.mssante.test"


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as ww:
        yield ww


async def _send(c: httpx.AsyncClient, sender: str, to: str, subject: str) -> None:
    form = await c.get("/ecrire")
    resp = await c.post(
        "/ecrire", data={"csrf": csrf_of(form.text), "bal": sender, "to": to, "subject": subject}
    )
    assert resp.status_code == 303, resp.text


async def test_headers_and_cookie_flags(w: World) -> None:
    async with w.client("chu") as c:
        page = await c.get("/connexion")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "max-age" in page.headers["strict-transport-security"]
        resp = await web_login(w, c, "infirmiere")
        cookie = resp.headers["set-cookie"]
        assert cookie.startswith("__Host-caducee=")
        for flag in ("Secure", "HttpOnly", "SameSite=lax", "Path=/"):
            assert flag.lower() in cookie.lower()


async def test_not_logged_in_goes_to_login(w: World) -> None:
    async with w.client("chu") as c:
        for path in ("/courrier", "/message?bal=x&uid=1", "/ecrire", "/annuaire", "/admin"):
            resp = await c.get(path)
            assert resp.status_code == 303 and resp.headers["location"].startswith("/connexion")
        assert (await c.get("/annuaire/suggestions?q=lefev")).status_code == 401


async def test_csrf_and_cross_origin_posts_refused(w: World) -> None:
    async with w.client("chu") as c:
        await web_login(w, c, "infirmiere")
        data = {"bal": NURSE, "to": PAUL, "subject": "x"}
        assert (await c.post("/ecrire", data=data)).status_code == 403
        assert (await c.post("/ecrire", data={**data, "csrf": "faux"})).status_code == 403
        form = await c.get("/ecrire")
        evil = {"Origin": "https://evil.example"}
        resp = await c.post("/ecrire", data={**data, "csrf": csrf_of(form.text)}, headers=evil)
        assert resp.status_code == 403
        storage = w.ops["chu"].storage
        assert storage is not None
        events = await storage.audit.query(kind_prefix="web.csrf")
        assert len(events) == 2


async def test_unknown_professional_is_refused(w: World) -> None:
    # the dermatologist exists at the IdP but holds no mailbox at this operator
    async with w.client("chu") as c:
        resp = await web_login(w, c, "dermato")
        assert resp.status_code == 303 and resp.headers["location"] == "/connexion?m=inconnu"
        page = await c.get("/connexion?m=inconnu")
        assert "Aucune boîte aux lettres" in page.text
        assert (await c.get("/courrier")).status_code == 303


async def test_wrong_password_stays_at_the_idp(w: World) -> None:
    async with w.client("chu") as c:
        resp = await web_login(w, c, "infirmiere", password="faux")
        assert resp.status_code != 303
        assert (await c.get("/courrier")).status_code == 303


async def test_forged_callbacks_lock_the_client_out(w: World) -> None:
    async with w.client("chu") as c:
        for _ in range(5):
            resp = await c.get("/auth/callback?code=abc&state=def")
            assert resp.headers["location"] == "/connexion?m=echec"
        resp = await c.get("/auth/callback?code=abc&state=def")
        assert resp.headers["location"] == "/connexion?m=trop"
        assert (await c.get("/auth/login")).headers["location"] == "/connexion?m=trop"
        assert (await c.get("/connexion?m=trop")).status_code == 429


async def test_login_rate_limit(w: World) -> None:
    async with w.client("chu") as c:
        codes = [(await c.get("/auth/login")).status_code for _ in range(21)]
    assert codes[:20] == [302] * 20 and codes[20] == 303


async def test_web_sees_only_held_or_delegated_mailboxes(w: World) -> None:
    async with w.client("chu") as c:
        assert (await web_login(w, c, "autre")).status_code == 303  # a TOTP code is good once
        await _send(c, PAUL, NURSE, "Pour Inès")
        assert (await c.get("/courrier", params={"bal": NURSE})).status_code == 403
        msg = {"bal": NURSE, "dossier": "INBOX", "uid": "1"}
        assert (await c.get("/message", params=msg)).status_code == 403
        assert (await c.get("/piece", params={**msg, "n": "0"})).status_code == 403
        assert (await c.get("/courrier", params={"bal": ORG_BOX})).status_code == 403
        form = await c.get("/ecrire")
        assert NURSE not in form.text and ORG_BOX not in form.text
        resp = await c.post(
            "/ecrire", data={"csrf": csrf_of(form.text), "bal": NURSE, "to": PAUL, "subject": "x"}
        )
        assert resp.status_code == 403, resp.headers.get("location")
        assert (await c.get("/admin")).status_code == 403
    async with w.client("chu") as c:
        await web_login(w, c, "infirmiere")
        assert (await c.get("/message", params=msg)).status_code == 200
        org = await c.get("/courrier", params={"bal": ORG_BOX})
        assert org.status_code == 200  # delegated
    storage = w.ops["chu"].storage
    assert storage is not None
    refused = await storage.audit.query(kind_prefix="web.access.refused")
    assert {e.actor for e in refused} == {PAUL}
    reads = await storage.audit.query(kind_prefix="web.message.read")
    assert [e.actor for e in reads] == [NURSE]


async def _token(w: World, user: str) -> str:
    client = OidcClient(
        w.idp.issuer, "chu-webmail", f"{w.urls['chu']}/auth/callback", verify=w.ssl_context()
    )
    tokens = await headless_login(client, user, PASSWORD, w.code(user))
    return tokens.access_token


async def test_imap_and_submission_apply_the_same_rule(w: World) -> None:
    op = w.ops["chu"]
    assert op.storage is not None and op.policy is not None
    validator = TokenValidator(
        w.idp.issuer, audience="mssante-chu", jwks_url=f"{w.idp.issuer}/jwks",
        verify=w.ssl_context(),
    )  # fmt: skip
    mech = XOAuth2Mechanism(validator, op.storage.accounts)
    tls = op.policy.submission_server_context()
    imap = ImapServer(None, op.storage, tls, op.storage.accounts, listen="127.0.0.1:0",
                      mechanisms=[mech])  # fmt: skip
    sub = SubmissionServer(op.cfg, op.storage, op.policy, listen="127.0.0.1:0", mechanisms=[mech])
    (iaddr,) = await imap.start()
    (saddr,) = await sub.start()
    token = await _token(w, "autre")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # a test certificate; the trust checks are tested elsewhere

    def imap_login(user: str) -> str:
        c = imaplib.IMAP4(*iaddr, timeout=20)
        try:
            c.starttls(ssl_context=ctx)
            try:
                c.authenticate("XOAUTH2", lambda _: xoauth2_response(user, token))
            except imaplib.IMAP4.error:
                return "refused"
            return c.select("INBOX")[0]
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                c.logout()

    def smtp_from(sender: str) -> int:
        with smtplib.SMTP(*saddr, timeout=20) as s:
            s.starttls(context=ctx)
            s.ehlo()
            code, _ = s.docmd(
                "AUTH", "XOAUTH2 " + __import__("base64").b64encode(
                    xoauth2_response(PAUL, token)).decode()
            )  # fmt: skip
            assert code == 235
            return int(s.docmd("MAIL", f"FROM:<{sender}>")[0])

    try:
        assert await asyncio.to_thread(imap_login, PAUL) == "OK"
        assert await asyncio.to_thread(imap_login, NURSE) == "refused"
        assert await asyncio.to_thread(imap_login, ORG_BOX) == "refused"
        assert await asyncio.to_thread(smtp_from, PAUL) == 250
        assert await asyncio.to_thread(smtp_from, NURSE) == 550
        assert await asyncio.to_thread(smtp_from, ORG_BOX) == 550
    finally:
        await imap.stop()
        await sub.stop()


async def test_refused_refresh_ends_the_session(w: World) -> None:
    """ECO.1.2.6: when the identity provider no longer refreshes the tokens (grant revoked),
    the webmail session ends."""
    web = w.ops["chu"].servers["web"]
    async with w.client("chu") as c:
        assert (await web_login(w, c, "infirmiere")).status_code == 303
        assert (await c.get("/courrier")).status_code == 200
        (session,) = web.ctx.sessions._sessions.values()  # type: ignore[attr-defined]
        tokens = session.tokens
        async with httpx.AsyncClient(verify=w.ssl_context(), timeout=20) as idp:
            resp = await idp.post(
                f"{w.idp.issuer}/revoke",
                data={"token": tokens.refresh_token, "client_id": "chu-webmail"},
            )
            assert resp.status_code == 200
        tokens.expires_at = 0  # the access token is due for a refresh
        resp = await c.get("/courrier")
        assert resp.status_code == 303 and resp.headers["location"] == "/connexion?m=expire"
        assert (await c.get("/courrier")).status_code == 303


async def test_logout_ends_the_session_the_grant_and_the_idp_session(w: World) -> None:
    web = w.ops["chu"].servers["web"]
    async with w.client("chu") as c:
        assert (await web_login(w, c, "infirmiere")).status_code == 303
        page = await c.get("/courrier")
        (session,) = web.ctx.sessions._sessions.values()  # type: ignore[attr-defined]
        refresh = session.tokens.refresh_token
        resp = await c.post("/deconnexion", data={"csrf": csrf_of(page.text)})
        assert resp.status_code == 303 and resp.headers["location"] == f"{w.idp.issuer}/logout"
        assert f"form-action 'self' {w.idp.issuer}" in resp.headers["content-security-policy"]
        assert (await c.get("/courrier")).status_code == 303
        async with httpx.AsyncClient(verify=w.ssl_context(), timeout=20) as idp:
            again = await idp.post(
                f"{w.idp.issuer}/token",
                data={"grant_type": "refresh_token", "refresh_token": refresh,
                      "client_id": "chu-webmail"},
            )  # fmt: skip
        assert again.status_code == 400  # the grant was revoked at logout
