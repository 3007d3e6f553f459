"""The IdP's HTTP interface (Starlette): OpenID Connect discovery, authorize + login pages,
token, JWKS, userinfo, introspection, revocation.

Paths follow OpenID Connect Discovery 1.0 §4 (``/.well-known/openid-configuration``); the
others are announced there, so clients never hard-code them. Every response carries
``Cache-Control: no-store`` where tokens or pages with forms are involved (RFC 6749 §5.1).
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from caducee.auth.idp.keys import ALG
from caducee.auth.idp.login import LoginService, RateLimited
from caducee.auth.idp.models import GrantUser
from caducee.auth.idp.oauth import HttpData, OAuthCore, user_claims
from caducee.auth.idp.store import Session
from caducee.core.errors import AuthenticationFailed

__all__ = ["SESSION_COOKIE", "build_app"]

SESSION_COOKIE = "__Host-caducee-idp"
CSRF_COOKIE = "__Host-caducee-idp-csrf"
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    # No form-action: Chromium applies it to the redirects that follow a submission, and the
    # login form ends in a redirect to the client's redirect URI (another origin).
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Strict-Transport-Security": "max-age=31536000",
}

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def _page(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(**ctx)
    return HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    hdrs = {"Cache-Control": "no-store", **(headers or {})}
    return JSONResponse(body, status_code=status, headers=hdrs)


def _authlib_response(result: tuple[int, Any, list[tuple[str, str]]]) -> Response:
    status, body, headers = result
    hdrs = {k: v for k, v in headers}
    hdrs.setdefault("Cache-Control", "no-store")
    if isinstance(body, dict):
        return JSONResponse(body, status_code=status, headers=hdrs)
    return Response(body or "", status_code=status, headers=hdrs)


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "-"


def _peer_cert(request: Request) -> bytes | None:
    tls = (request.scope.get("extensions") or {}).get("tls") or {}
    cert = tls.get("client_cert_der")
    return cert if isinstance(cert, bytes) else None


def build_app(core: OAuthCore, login: LoginService) -> Starlette:
    """The ASGI application. ``core.settings.issuer`` must be the public https URL."""
    store = core.store
    issuer = core.settings.issuer.rstrip("/")

    def discovery(request: Request) -> Response:
        """OpenID Connect Discovery 1.0 §3 / RFC 8414 §2."""
        return JSONResponse(
            {
                "issuer": core.settings.issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "userinfo_endpoint": f"{issuer}/userinfo",
                "jwks_uri": f"{issuer}/jwks",
                "introspection_endpoint": f"{issuer}/introspect",
                "revocation_endpoint": f"{issuer}/revoke",
                "end_session_endpoint": f"{issuer}/logout",
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": [ALG],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                    "none",
                ],
                "introspection_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "profile", "email", "scope_all"],
                "acr_values_supported": ["eidas1"],
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "auth_time",
                    "acr",
                    "amr",
                    "SubjectNameID",
                    "preferred_username",
                    "given_name",
                    "family_name",
                    "SubjectRefPro",
                    "email",
                ],
                "ui_locales_supported": ["fr"],
            },
            headers={"Cache-Control": "public, max-age=300"},
        )

    def jwks(request: Request) -> Response:
        return JSONResponse(core.keys.public_jwks(), headers={"Cache-Control": "max-age=60"})

    def _session(request: Request) -> tuple[str, Session] | None:
        sid = request.cookies.get(SESSION_COOKIE)
        if not sid:
            return None
        sess = store.get_session(sid)
        return None if sess is None else (sid, sess)

    def _login_page(
        request: Request, query: str, error: str = "", status: int = 200
    ) -> HTMLResponse:
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        resp = _page(
            "login.html",
            status,
            query=query,
            csrf=csrf,
            error=error,
            card_available=_peer_cert(request) is not None,
        )
        resp.set_cookie(CSRF_COOKIE, csrf, secure=True, httponly=True, samesite="strict", path="/")
        return resp

    async def authorize(request: Request) -> Response:
        """RFC 6749 §4.1.1 + RFC 7636 §4.3: validate, authenticate, redirect with a code.

        OpenID Connect Core §3.1.2.1 ``prompt``: ``none`` without a session is an error
        redirect (login_required); ``login`` shows the login page even with a session."""
        data = HttpData("GET", str(request.url), request.headers, dict(request.query_params))
        data.datalist = {k: request.query_params.getlist(k) for k in request.query_params}
        grant_user: GrantUser | None = None
        found = _session(request)
        if found is not None:
            _, sess = found
            user = await run_in_threadpool(store.get_user, user_id=sess.user_id)
            if user is not None and not user.disabled:
                grant_user = GrantUser(user, sess.auth_time, sess.amr)
        try:
            grant = await run_in_threadpool(core.server.get_consent_grant, data, grant_user)
        except Exception as exc:  # authlib's OAuth2Error and friends
            return _oauth_error_page(exc)
        if grant_user is None or getattr(grant, "prompt", None) == "login":
            return _login_page(request, _after_login_query(request.url.query))
        result = await run_in_threadpool(
            core.server.create_authorization_response, grant.request, grant_user, grant
        )
        await run_in_threadpool(
            store.audit,
            "idp.authorize",
            "ok",
            grant_user.user.username,
            grant.request.payload.client_id or "",
        )
        return _authlib_response(result)

    async def _finish_login(
        request: Request, query: str, user_id: str, amr: tuple[str, ...]
    ) -> Response:
        sid = await run_in_threadpool(
            store.create_session, user_id, amr, core.settings.session_lifetime
        )
        resp = RedirectResponse(f"/authorize?{_after_login_query(query)}", status_code=303)
        resp.set_cookie(
            SESSION_COOKIE,
            sid,
            max_age=core.settings.session_lifetime,
            secure=True,
            httponly=True,
            samesite="lax",
            path="/",
        )
        return resp

    async def _read_login_form(request: Request) -> tuple[dict[str, str], str] | Response:
        form = await request.form()
        fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        query = fields.get("query", "")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie or not hmac.compare_digest(cookie, fields.get("csrf", "")):
            return _page("error.html", 403, message="Session de connexion expirée ou invalide.")
        return fields, query

    async def login_password(request: Request) -> Response:
        read = await _read_login_form(request)
        if isinstance(read, Response):
            return read
        fields, query = read
        try:
            user, amr = await run_in_threadpool(
                login.password_login,
                fields.get("username", "")[:128],
                fields.get("password", "")[:1024],
                fields.get("totp", "")[:16],
                _client_ip(request),
            )
        except RateLimited:
            return _login_page(
                request, query, "Trop de tentatives. Réessayez dans quelques minutes.", 429
            )
        except AuthenticationFailed:
            return _login_page(request, query, "Identifiant, mot de passe ou code incorrect.", 401)
        return await _finish_login(request, query, user.user_id, amr)

    async def login_card(request: Request) -> Response:
        read = await _read_login_form(request)
        if isinstance(read, Response):
            return read
        _, query = read
        try:
            user, amr = await run_in_threadpool(
                login.certificate_login, _peer_cert(request), _client_ip(request)
            )
        except RateLimited:
            return _login_page(
                request, query, "Trop de tentatives. Réessayez dans quelques minutes.", 429
            )
        except AuthenticationFailed:
            return _login_page(request, query, "Carte non reconnue.", 401)
        return await _finish_login(request, query, user.user_id, amr)

    async def logout(request: Request) -> Response:
        found = _session(request)
        if found is not None:
            await run_in_threadpool(store.delete_session, found[0])
        resp = _page("error.html", 200, message="Vous êtes déconnecté.")
        resp.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True)
        return resp

    async def token(request: Request) -> Response:
        """RFC 6749 §3.2 (codes with PKCE, refresh tokens with rotation)."""
        data = await _form_data(request)
        result = await run_in_threadpool(core.server.create_token_response, data)
        return _authlib_response(result)

    async def introspect(request: Request) -> Response:
        """RFC 7662 §2, client-authenticated."""
        data = await _form_data(request)
        result = await run_in_threadpool(
            core.server.create_endpoint_response, "introspection", data
        )
        return _authlib_response(result)

    async def revoke(request: Request) -> Response:
        """RFC 7009 §2."""
        data = await _form_data(request)
        result = await run_in_threadpool(core.server.create_endpoint_response, "revocation", data)
        return _authlib_response(result)

    async def userinfo(request: Request) -> Response:
        """OpenID Connect Core §5.3, bearer token per RFC 6750 §2.1."""
        auth = request.headers.get("authorization", "")
        scheme, _, tok = auth.partition(" ")
        challenge = 'Bearer error="invalid_token"'
        if scheme.lower() != "bearer" or not tok:
            return _json({"error": "invalid_token"}, 401, {"WWW-Authenticate": "Bearer"})
        claims = await run_in_threadpool(core.decode_access_token, tok.strip())
        if claims is None or not await run_in_threadpool(core.access_token_active, claims):
            return _json({"error": "invalid_token"}, 401, {"WWW-Authenticate": challenge})
        user = await run_in_threadpool(store.get_user, user_id=str(claims.get("sub")))
        if user is None or user.disabled:
            return _json({"error": "invalid_token"}, 401, {"WWW-Authenticate": challenge})
        return _json({"sub": user.user_id, **user_claims(user)})

    def style(request: Request) -> Response:
        css = (Path(__file__).parent / "templates" / "idp.css").read_text(encoding="utf-8")
        return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/jwks", jwks),
            Route("/authorize", authorize, methods=["GET"]),
            Route("/login/password", login_password, methods=["POST"]),
            Route("/login/card", login_card, methods=["POST"]),
            Route("/logout", logout, methods=["GET", "POST"]),
            Route("/token", token, methods=["POST"]),
            Route("/introspect", introspect, methods=["POST"]),
            Route("/revoke", revoke, methods=["POST"]),
            Route("/userinfo", userinfo, methods=["GET", "POST"]),
            Route("/idp.css", style),
        ]
    )


async def _form_data(request: Request) -> HttpData:
    form = await request.form()
    data = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    datalist = {k: [str(v) for v in form.getlist(k)] for k in form}
    return HttpData(request.method, str(request.url), request.headers, data, datalist)


def _after_login_query(query: str) -> str:
    """The authorization request to resume after the login form: re-encoded (the form field
    comes back from the browser) and without ``prompt``, which the login just satisfied."""
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "prompt"]
    return urlencode(pairs)


def _oauth_error_page(exc: Exception) -> Response:
    """Errors before the redirect URI is trusted are shown, never redirected (RFC 6749
    §4.1.2.1). The description is authlib's fixed text, not user input."""
    error = getattr(exc, "error", None)
    if error is None:
        raise exc
    desc = getattr(exc, "description", "") or ""
    redirect = getattr(exc, "redirect_uri", None)
    if redirect and getattr(exc, "redirect_fragment", False) is False and error != "invalid_client":
        params = {"error": error}
        if desc:
            params["error_description"] = desc
        state = getattr(exc, "state", None)
        if state:
            params["state"] = state
        sep = "&" if "?" in redirect else "?"
        return RedirectResponse(f"{redirect}{sep}{urlencode(params)}", status_code=302)
    message = f"Requête d'autorisation invalide ({error})."
    return _page("error.html", 400, message=message, detail=desc)
