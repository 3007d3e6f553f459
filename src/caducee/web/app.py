"""The webmail's ASGI application (Starlette): routes, security headers, error pages.

Security headers on every response: a strict Content-Security-Policy (scripts and styles only
from our own origin, no inline code, images only from ourselves, no framing, forms only to
ourselves), ``Strict-Transport-Security``, ``X-Content-Type-Options: nosniff``,
``Referrer-Policy: same-origin`` (no referrer leaves the site, and same-origin POSTs keep
their ``Origin``), ``X-Frame-Options: DENY``. Every state-changing request is a
POST carrying the session's CSRF token, and its ``Origin`` (when sent) must be ours.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from caducee.web import routes_admin, routes_auth, routes_directory, routes_mail
from caducee.web.context import Forbidden, NotLoggedIn, WebContext

__all__ = ["CSP", "build_app"]

log = logging.getLogger("caducee.web")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'; manifest-src 'self'"
)
_HEADERS = [
    (b"strict-transport-security", b"max-age=31536000"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"geolocation=(), microphone=(), camera=()"),
]
STATIC = Path(__file__).parent / "static"


class SecurityHeaders:
    """Adds the security headers; refuses a cross-origin POST (``Origin`` not ours)."""

    def __init__(self, app: ASGIApp, public_url: str, issuer: str | None = None) -> None:
        self.app = app
        self.origin = public_url.rstrip("/").encode()
        csp = CSP
        if issuer:  # logout redirects to the issuer's end-session endpoint after a form POST
            csp = csp.replace("form-action 'self'", f"form-action 'self' {_origin(issuer)}")
        self.csp = csp.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST":
            origin = dict(scope["headers"]).get(b"origin")
            if origin is not None and origin != self.origin:
                resp = PlainTextResponse("Origine refusée", status_code=403)
                await resp(scope, receive, self._wrap(send))
                return

        await self.app(scope, receive, self._wrap(send))

    def _wrap(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", self.csp))
                headers += [h for h in _HEADERS if h[0] not in names]
                message = {**message, "headers": headers}
            await send(message)

        return wrapped


Handler = Callable[[WebContext, Request], Awaitable[Response]]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def build_app(ctx: WebContext) -> Starlette:
    def bind(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                if handler not in _PUBLIC:
                    ctx.session_of(request)
                    if not await routes_auth.refresh_tokens(ctx, request):
                        return RedirectResponse("/connexion?m=expire", status_code=303)
                return await handler(ctx, request)
            except NotLoggedIn:
                if request.url.path.startswith("/annuaire/suggestions"):
                    return PlainTextResponse("Non connecté", status_code=401)
                return RedirectResponse("/connexion?m=expire", status_code=303)
            except Forbidden as exc:
                try:
                    session = ctx.session_of(request)
                except NotLoggedIn:
                    session = None
                return ctx.render(
                    request, "error.html", {"message": str(exc), "boxes": [], "current": ""},
                    status=403, session=session,
                )  # fmt: skip

        return endpoint

    async def home(_ctx: WebContext, _request: Request) -> Response:
        return RedirectResponse("/courrier", status_code=303)

    async def health(_ctx: WebContext, _request: Request) -> Response:
        return PlainTextResponse("ok")

    _PUBLIC = {routes_auth.login_page, routes_auth.start_login, routes_auth.callback, health}
    routes = [
        Route("/", bind(home)),
        Route("/sante", bind(health)),
        Route("/connexion", bind(routes_auth.login_page)),
        Route("/auth/login", bind(routes_auth.start_login)),
        Route("/auth/callback", bind(routes_auth.callback)),
        Route("/deconnexion", bind(routes_auth.logout), methods=["POST"]),
        Route("/courrier", bind(routes_mail.message_list)),
        Route("/bal", bind(routes_mail.switch)),
        Route("/message", bind(routes_mail.message_page)),
        Route("/piece", bind(routes_mail.attachment)),
        Route("/message/drapeaux", bind(routes_mail.flags), methods=["POST"]),
        Route("/message/accuse-lecture", bind(routes_mail.read_receipt), methods=["POST"]),
        Route("/ecrire", bind(routes_mail.compose_page), methods=["GET"]),
        Route("/ecrire", bind(routes_mail.compose_send), methods=["POST"]),
        Route("/annuaire", bind(routes_directory.directory_page)),
        Route("/annuaire/suggestions", bind(routes_directory.suggest)),
        Route("/admin", bind(routes_admin.admin_page)),
        Route("/admin/delegations", bind(routes_admin.delegation), methods=["POST"]),
        Route("/admin/file", bind(routes_admin.queue_retry), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(SecurityHeaders, public_url=ctx.public_url, issuer=ctx.issuer)
    return app
