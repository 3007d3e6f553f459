"""What every webmail route shares: configuration, storage, sessions, templates, the checks.

The one authorisation rule (docs/webmail.md): a session sees a BAL only when its account holds
it or is delegated on it (``AccountStore.mailboxes_of``, the same table IMAP and SMTP
submission use), with the RFC 4314 rights given there (``r`` to read, ``p``/``i`` to send
from it, ``s``/``w``/``t`` to change flags).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from caducee.auth.client import OidcClient
from caducee.auth.tokens import TokenValidator
from caducee.config.model import NodeConfig
from caducee.core.errors import AuthenticationFailed, CaduceeError
from caducee.core.model import AuditEvent, Mailbox
from caducee.directory.store import DirectoryStore
from caducee.storage.interfaces import Storage
from caducee.trust.listeblanche import ListeBlanche
from caducee.web.sessions import LoginThrottle, SessionStore, WebSession

__all__ = ["COOKIE", "PENDING_COOKIE", "Forbidden", "NotLoggedIn", "WebContext"]

COOKIE = "__Host-caducee"
PENDING_COOKIE = "__Host-caducee-login"
TEMPLATES = Path(__file__).parent / "templates"


class Forbidden(CaduceeError):
    """The session may not see or do this (HTTP 403)."""


class NotLoggedIn(CaduceeError):
    """No valid session (redirect to the login page)."""


def _date_fr(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.strftime("%d/%m/%Y %H:%M")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} o"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} Kio"
    return f"{n / 1024 / 1024:.1f} Mio"


@dataclass
class WebContext:
    cfg: NodeConfig
    storage: Storage
    is_listed: Callable[[str], bool]
    liste: Callable[[], ListeBlanche | None]
    public_url: str
    issuer: str | None
    client_id: str
    client_secret: str | None = None
    idp_verify: ssl.SSLContext | bool = True
    wake: Callable[[], None] | None = None
    directory: DirectoryStore | None = None
    sessions: SessionStore = field(init=False)
    throttle: LoginThrottle = field(init=False)
    env: jinja2.Environment = field(init=False)
    _oidc: OidcClient | None = None
    _validator: TokenValidator | None = None
    trust_loaded: datetime | None = None

    def __post_init__(self) -> None:
        web = self.cfg.web
        self.sessions = SessionStore(web.session_idle_seconds, web.session_max_seconds)
        self.throttle = LoginThrottle(web.login_rate_limit)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["date_fr"] = _date_fr
        self.env.filters["taille"] = _size

    @property
    def max_upload(self) -> int:
        # base64 grows attachments by 4/3: what fits in one message once encoded
        return self.cfg.smtp.max_message_bytes * 3 // 4 - 64 * 1024

    def oidc(self) -> OidcClient:
        if self.issuer is None:
            raise AuthenticationFailed("no identity provider configured ([auth] oidc_issuer)")
        if self._oidc is None:
            self._oidc = OidcClient(
                self.issuer,
                self.client_id,
                f"{self.public_url}/auth/callback",
                client_secret=self.client_secret,
                verify=self.idp_verify,
            )
        return self._oidc

    async def validator(self) -> TokenValidator:
        if self.issuer is None or self.cfg.auth.audience is None:
            raise AuthenticationFailed("no identity provider configured ([auth] oidc_issuer)")
        if self._validator is None:
            self._validator = await TokenValidator.from_discovery(
                self.issuer,
                audience=self.cfg.auth.audience,
                verify=self.idp_verify,
                leeway=self.cfg.auth.leeway_seconds,
            )
        return self._validator

    def render(
        self,
        request: Request,
        name: str,
        values: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
        session: WebSession | None = None,
    ) -> HTMLResponse:
        tpl = self.env.get_template(name)
        page = tpl.render(
            session=session,
            csrf=session.csrf if session else "",
            operator=self.cfg.name,
            is_admin=bool(session and session.login in self.cfg.web.admins),
            max_upload=self.max_upload,
            **(values or {}),
        )
        return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})

    def session_of(self, request: Request) -> WebSession:
        s = self.sessions.get(request.cookies.get(COOKIE))
        if s is None:
            raise NotLoggedIn("not logged in")
        return s

    async def mailboxes(self, session: WebSession) -> list[tuple[Mailbox, str]]:
        return sorted(
            await self.storage.accounts.mailboxes_of(session.login),
            key=lambda mr: (mr[0].type != "PER", mr[0].address),
        )

    async def mailbox(self, session: WebSession, address: str, need: str = "r") -> Mailbox:
        """The BAL ``address`` if the session's account holds it or is delegated on it with
        every right in ``need``; else ``Forbidden`` (audited)."""
        for mb, rights in await self.storage.accounts.mailboxes_of(session.login):
            if mb.address.lower() == address.lower():
                if all(r in rights for r in need):
                    return mb
                break
        await self.audit(session, "web.access.refused", address, outcome="refused", need=need)
        raise Forbidden("Vous n'avez pas accès à cette boîte aux lettres.")

    async def audit(
        self,
        session: WebSession | None,
        kind: str,
        target: str,
        *,
        outcome: str = "ok",
        **details: str,
    ) -> None:
        await self.storage.audit.record(
            AuditEvent(kind, outcome, session.login if session else "anonymous", target, details)
        )

    def is_admin(self, session: WebSession) -> bool:
        return session.login in self.cfg.web.admins
