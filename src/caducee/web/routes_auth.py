"""Logging in through the identity provider (OpenID Connect authorization code + PKCE S256).

``/auth/login`` starts an authorization request (state, nonce, PKCE verifier kept server-side,
keyed by a short-lived ``__Host-`` cookie) and sends the browser to the issuer;
``/auth/callback`` checks the state, exchanges the code, validates the access token like SASL
XOAUTH2 does (signature, issuer, audience, expiry) and maps its IDNPS to the account. Each client
address is rate-limited and locked out after repeated failures; every outcome is audited
(never with the code or a token).
"""

from __future__ import annotations

import logging

import httpx
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from caducee.core.errors import AuthenticationFailed, InvalidInput
from caducee.web.context import COOKIE, PENDING_COOKIE, WebContext

__all__ = ["callback", "login_page", "logout", "start_login"]

log = logging.getLogger("caducee.web.auth")

_MESSAGES = {
    "echec": "La connexion a échoué. Réessayez.",
    "inconnu": "Aucune boîte aux lettres de cet opérateur n'est associée à votre identité.",
    "trop": "Trop de tentatives de connexion. Réessayez dans quelques minutes.",
    "expire": "Votre session a expiré. Reconnectez-vous.",
    "fin": "Vous êtes déconnecté.",
    "idp": "Le fournisseur d'identité est injoignable.",
}


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _cookie(resp: Response, name: str, value: str, max_age: int) -> None:
    resp.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax"
    )


async def login_page(ctx: WebContext, request: Request) -> Response:
    code = request.query_params.get("m", "")
    status = 429 if code == "trop" else 200
    return ctx.render(
        request,
        "login.html",
        {"message": _MESSAGES.get(code, ""), "issuer": ctx.issuer or ""},
        status=status,
    )


async def start_login(ctx: WebContext, request: Request) -> Response:
    client = _client(request)
    if not ctx.throttle.allow(client):
        await ctx.audit(None, "web.login.throttled", client, outcome="refused")
        return RedirectResponse("/connexion?m=trop", status_code=303)
    try:
        auth = await ctx.oidc().start()
    except (httpx.HTTPError, AuthenticationFailed, OSError) as exc:
        log.warning("identity provider unreachable: %s", type(exc).__name__)
        return RedirectResponse("/connexion?m=idp", status_code=303)
    key = ctx.sessions.add_pending(auth)
    resp = RedirectResponse(auth.url, status_code=302)
    _cookie(resp, PENDING_COOKIE, key, 600)
    return resp


async def callback(ctx: WebContext, request: Request) -> Response:
    client = _client(request)
    if ctx.throttle.locked(client):
        return RedirectResponse("/connexion?m=trop", status_code=303)
    pending = ctx.sessions.take_pending(request.cookies.get(PENDING_COOKIE))
    if pending is None:
        ctx.throttle.failed(client)
        await ctx.audit(None, "web.login", client, outcome="refused", reason="no pending login")
        return RedirectResponse("/connexion?m=echec", status_code=303)
    try:
        tokens = await ctx.oidc().finish(pending.request, str(request.url))
        validator = await ctx.validator()
        account = await validator.authenticate(tokens.access_token, ctx.storage.accounts)
    except AuthenticationFailed as exc:
        ctx.throttle.failed(client)
        reason = str(exc)
        await ctx.audit(None, "web.login", client, outcome="refused", reason=reason[:200])
        m = "inconnu" if "no account" in reason else "echec"
        return RedirectResponse(f"/connexion?m={m}", status_code=303)
    except (InvalidInput, httpx.HTTPError, OSError) as exc:
        ctx.throttle.failed(client)
        await ctx.audit(None, "web.login", client, outcome="refused", reason=type(exc).__name__)
        return RedirectResponse("/connexion?m=echec", status_code=303)
    ctx.throttle.succeeded(client)
    session = ctx.sessions.create(account.login, account.display_name or account.login, tokens)
    boxes = await ctx.mailboxes(session)
    session.current = boxes[0][0].address if boxes else ""
    await ctx.audit(session, "web.login", account.login, client=client)
    resp = RedirectResponse("/courrier", status_code=303)
    _cookie(resp, COOKIE, session.sid, ctx.cfg.web.session_max_seconds)
    resp.delete_cookie(PENDING_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return resp


async def logout(ctx: WebContext, request: Request) -> Response:
    session = ctx.session_of(request)
    form = await request.form()
    if not session.check_csrf(str(form.get("csrf", ""))):
        return Response("CSRF", status_code=403)
    ctx.sessions.end(session.sid)
    await ctx.audit(session, "web.logout", session.login)
    target = "/connexion?m=fin"
    if ctx.issuer is not None:
        if session.tokens is not None and session.tokens.refresh_token:
            await _revoke(ctx, session.tokens.refresh_token)
        # end the identity provider's browser session too (a shared workstation must not log
        # the next person in as this one)
        target = f"{ctx.issuer.rstrip('/')}/logout"
    resp = RedirectResponse(target, status_code=303)
    resp.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return resp


async def _revoke(ctx: WebContext, refresh_token: str) -> None:
    """RFC 7009: the grant dies with the webmail session (best effort)."""
    try:
        meta = await ctx.oidc()._metadata()
        endpoint = meta.get("revocation_endpoint")
        if not endpoint:
            return
        async with httpx.AsyncClient(verify=ctx.idp_verify, timeout=5) as client:
            await client.post(
                str(endpoint),
                data={
                    "token": refresh_token,
                    "token_type_hint": "refresh_token",
                    "client_id": ctx.client_id,
                },
            )
    except (httpx.HTTPError, OSError, AuthenticationFailed):
        log.warning("token revocation at logout failed")


async def refresh_tokens(ctx: WebContext, request: Request) -> bool:
    """Keeps the session's tokens fresh; False (and the session ended) when the identity
    provider refuses the refresh (ECO.1.2.6)."""
    session = ctx.session_of(request)
    if session.tokens is None or ctx.issuer is None:
        return True
    try:
        _, session.tokens = await ctx.oidc().access_token(session.tokens)
    except AuthenticationFailed:
        ctx.sessions.end(session.sid)
        await ctx.audit(session, "web.session.ended", session.login, reason="refresh refused")
        return False
    except (httpx.HTTPError, OSError):
        return True  # IdP briefly unreachable: keep the session until its own expiry
    return True
