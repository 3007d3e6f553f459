"""The relying-party side: what a practice software (or the webmail) needs to get and keep a
token, following Ref#2 ECO.1.2.x.

- ``OidcClient.start()`` prepares an authorization request with PKCE S256, ``state`` and
  ``nonce`` (RFC 7636, OpenID Connect Core §3.1.2.1); ``finish(callback_url)`` checks the
  state and exchanges the code (RFC 6749 §4.1.3).
- ``TokenSet`` lives in memory only: tokens are never written anywhere (ECO.1.2.5).
- ``OidcClient.access_token(tokens)`` returns a valid access token, refreshing it shortly
  before expiry with the rotated refresh token (ECO.1.2.7); when the refresh is refused it
  raises ``AuthenticationFailed`` and the caller ends its mail session (ECO.1.2.6).
- ``xoauth2_response`` / ``oauthbearer_response`` build the SASL client responses.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from caducee.core.errors import AuthenticationFailed, InvalidInput

__all__ = [
    "AuthorizationRequest",
    "OidcClient",
    "TokenSet",
    "headless_login",
    "oauthbearer_response",
    "xoauth2_response",
]


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str  # where to send the user's browser
    state: str = field(repr=False)
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)


@dataclass
class TokenSet:
    """Tokens of one login, in memory only. ``repr`` shows no secret."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float
    id_token: str | None = field(default=None, repr=False)
    scope: str = ""


def xoauth2_response(user: str, access_token: str) -> bytes:
    """The SASL XOAUTH2 client response (before base64)."""
    return f"user={user}\x01auth=Bearer {access_token}\x01\x01".encode()


def oauthbearer_response(
    authzid: str, access_token: str, host: str | None = None, port: int | None = None
) -> bytes:
    """The RFC 7628 §3.1 client response (before base64), ``a=`` escaped per RFC 5801."""
    a = authzid.replace("=", "=3D").replace(",", "=2C")
    extra = (f"host={host}\x01" if host else "") + (f"port={port}\x01" if port else "")
    return f"n,a={a},\x01{extra}auth=Bearer {access_token}\x01\x01".encode()


class OidcClient:
    """A public client (PKCE) or a confidential one (``client_secret``) of one issuer."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        redirect_uri: str,
        *,
        client_secret: str | None = None,
        scope: str = "openid scope_all",
        verify: ssl.SSLContext | bool = True,
        refresh_margin: float = 30.0,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self._secret = client_secret
        self.scope = scope
        self._verify = verify
        self.refresh_margin = refresh_margin
        self._meta: dict[str, Any] | None = None

    async def _metadata(self) -> dict[str, Any]:
        if self._meta is None:
            async with httpx.AsyncClient(verify=self._verify, timeout=10) as c:
                resp = await c.get(f"{self.issuer}/.well-known/openid-configuration")
            resp.raise_for_status()
            meta = resp.json()
            if meta.get("issuer", "").rstrip("/") != self.issuer:
                raise AuthenticationFailed("discovery document names another issuer")
            self._meta = meta
        return self._meta

    async def start(self, **extra: str) -> AuthorizationRequest:
        meta = await self._metadata()
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
            **extra,
        }
        url = f"{meta['authorization_endpoint']}?{urlencode(params)}"
        return AuthorizationRequest(url, state, nonce, verifier)

    async def finish(self, request: AuthorizationRequest, callback_url: str) -> TokenSet:
        """Checks the callback (state, error) and exchanges the code."""
        query = parse_qs(urlsplit(callback_url).query)
        if query.get("state") != [request.state]:
            raise InvalidInput("authorization response with a wrong state")
        if "error" in query:
            raise AuthenticationFailed(f"authorization refused: {query['error'][0]}")
        codes = query.get("code")
        if not codes:
            raise InvalidInput("authorization response without a code")
        return await self._token(
            {
                "grant_type": "authorization_code",
                "code": codes[0],
                "redirect_uri": self.redirect_uri,
                "code_verifier": request.code_verifier,
            }
        )

    async def refresh(self, tokens: TokenSet) -> TokenSet:
        if not tokens.refresh_token:
            raise AuthenticationFailed("no refresh token: log in again")
        return await self._token(
            {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
        )

    async def access_token(self, tokens: TokenSet) -> tuple[str, TokenSet]:
        """A usable access token and the (possibly refreshed) token set to keep."""
        if tokens.expires_at - self.refresh_margin > time.time():
            return tokens.access_token, tokens
        fresh = await self.refresh(tokens)
        return fresh.access_token, fresh

    async def _token(self, form: dict[str, str]) -> TokenSet:
        meta = await self._metadata()
        async with httpx.AsyncClient(verify=self._verify, timeout=10) as c:
            if self._secret is None:
                form = {**form, "client_id": self.client_id}
                resp = await c.post(meta["token_endpoint"], data=form)
            else:
                secret_auth = httpx.BasicAuth(self.client_id, self._secret)
                resp = await c.post(meta["token_endpoint"], data=form, auth=secret_auth)
        if resp.status_code != 200:
            try:
                error = str(resp.json().get("error", resp.status_code))
            except ValueError:
                error = str(resp.status_code)
            raise AuthenticationFailed(f"token endpoint refused: {error}")
        body = resp.json()
        return TokenSet(
            access_token=str(body["access_token"]),
            refresh_token=body.get("refresh_token"),
            expires_at=time.time() + float(body.get("expires_in", 300)),
            id_token=body.get("id_token"),
            scope=str(body.get("scope", "")),
        )


_HIDDEN = re.compile(r'<input type="hidden" name="(csrf|query)" value="([^"]*)"')


async def headless_login(
    client: OidcClient, username: str, password: str, totp_code: str = ""
) -> TokenSet:
    """Sandbox and test convenience: drives the sandbox IdP's own login form without a
    browser (password + one-time code) and returns the tokens. Only for ``caducee idp``:
    a real Pro Santé Connect login happens in the professional's browser or wallet."""
    req = await client.start()
    base = client.issuer
    async with httpx.AsyncClient(verify=client._verify, timeout=10) as browser:
        page = await browser.get(req.url)
        fields = {k: html.unescape(v) for k, v in _HIDDEN.findall(page.text)}
        if page.status_code != 200 or set(fields) != {"csrf", "query"}:
            raise AuthenticationFailed(f"no login form (HTTP {page.status_code})")
        resp = await browser.post(
            f"{base}/login/password",
            data={**fields, "username": username, "password": password, "totp": totp_code},
        )
        if resp.status_code != 303:
            raise AuthenticationFailed(f"login refused (HTTP {resp.status_code})")
        resp = await browser.get(f"{base}{resp.headers['location']}")
        if resp.status_code != 302:
            raise AuthenticationFailed(f"authorization refused (HTTP {resp.status_code})")
        callback = resp.headers["location"]
    return await client.finish(req, callback)
