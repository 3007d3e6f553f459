"""Access-token validation for the operators (resource servers), RFC 9068 §4 / RFC 7519 §7.2.

``TokenValidator`` checks the signature against the issuer's JWKS (cached; fetched again when
a token names an unknown ``kid``, at most once per ``refresh_interval``), the ``iss``, ``aud``,
``exp`` / ``nbf`` (with a small leeway) and ``sub``, then maps the professional's IDNPS
(``SubjectNameID``, as Pro Santé Connect sends it) to an ``Account`` through the
``AccountStore``. Tokens are never stored and never logged: errors name the failed check only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from caducee.core.errors import AuthenticationFailed
from caducee.core.model import Account

__all__ = ["IdnpsLookup", "TokenClaims", "TokenValidator", "idnps_of"]

log = logging.getLogger(__name__)

_ALGORITHMS = ("ES256", "RS256", "PS256")
_MAX_TOKEN = 16 * 1024


class IdnpsLookup(Protocol):
    """The part of ``AccountStore`` that token logins use."""

    async def get_account_by_idnps(self, idnps: str) -> Account | None: ...


@dataclass(frozen=True)
class TokenClaims:
    """The checked claims of one access token."""

    subject: str
    idnps: str | None
    client_id: str | None
    scope: frozenset[str]
    expires: int
    claims: Mapping[str, Any] = field(repr=False)


def idnps_of(claims: Mapping[str, Any]) -> str | None:
    """The IDNPS of a PSC-style token: ``SubjectNameID``, else ``preferred_username`` when it
    has the IDNPS form (digits: type digit + RPPS/ADELI)."""
    for key in ("SubjectNameID", "preferred_username"):
        value = claims.get(key)
        if isinstance(value, str) and value.isdigit() and 9 <= len(value) <= 20:
            return value
    return None


def _header(token: str) -> dict[str, Any]:
    try:
        part = token.split(".", 1)[0]
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise AuthenticationFailed("token is not a JWT") from exc
    if not isinstance(header, dict):
        raise AuthenticationFailed("token is not a JWT")
    return header


class TokenValidator:
    """Validates bearer access tokens of one issuer for one audience.

    Give ``jwks_url`` (fetched over HTTPS with ``verify``), or a static ``jwks`` document, or
    neither: the JWKS URL is then read from the issuer's discovery document on first use.
    """

    def __init__(
        self,
        issuer: str,
        *,
        audience: str,
        jwks_url: str | None = None,
        jwks: Mapping[str, Any] | None = None,
        leeway: int = 30,
        algorithms: tuple[str, ...] = _ALGORITHMS,
        verify: ssl.SSLContext | str | bool = True,  # str: a CA bundle file
        refresh_interval: float = 10.0,
        timeout: float = 5.0,
    ) -> None:
        if jwks_url is not None and jwks is not None:
            raise ValueError("give jwks_url or jwks, not both")
        self._static = jwks is not None
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.leeway = leeway
        self.algorithms = algorithms
        self._verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(verify)) if isinstance(verify, str) else verify
        )
        self._timeout = timeout
        self._refresh_interval = refresh_interval
        self._keys: KeySet | None = None
        self._kids: set[str] = set()
        self._fetched_at = -1e9
        self._lock = asyncio.Lock()
        self.fetch_count = 0
        if jwks is not None:
            self._set_keys(jwks)

    @classmethod
    async def from_discovery(
        cls,
        issuer: str,
        *,
        audience: str,
        verify: ssl.SSLContext | str | bool = True,
        **kwargs: Any,
    ) -> TokenValidator:
        """Reads ``<issuer>/.well-known/openid-configuration`` (OpenID Connect Discovery §4)
        and checks that it names the same issuer (§4.3)."""
        validator = cls(issuer, audience=audience, verify=verify, **kwargs)
        await validator._discover()
        return validator

    async def _discover(self) -> None:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            async with httpx.AsyncClient(verify=self._verify, timeout=self._timeout) as client:
                resp = await client.get(url)
            resp.raise_for_status()
            doc = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise AuthenticationFailed(f"issuer discovery failed: {type(exc).__name__}") from exc
        if not isinstance(doc, dict) or doc.get("issuer") != self.issuer:
            raise AuthenticationFailed("discovery document names another issuer")
        jwks_uri = doc.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
            raise AuthenticationFailed("discovery document has no https jwks_uri")
        self.jwks_url = jwks_uri

    def _set_keys(self, jwks: Mapping[str, Any]) -> None:
        keys = [k for k in jwks.get("keys", []) if isinstance(k, dict) and "kid" in k]
        if not keys:
            self._keys, self._kids = None, set()
            return
        try:
            self._keys = KeySet.import_key_set({"keys": keys})
        except (JoseError, ValueError) as exc:
            raise AuthenticationFailed("issuer keys unusable") from exc
        self._kids = {str(k["kid"]) for k in keys}

    async def _refresh(self, force: bool) -> None:
        if self._static:
            return
        async with self._lock:
            now = time.monotonic()
            if now - self._fetched_at < self._refresh_interval:
                return  # at most one fetch per interval, whatever the tokens say
            if self._keys is not None and not force:
                return
            try:
                if self.jwks_url is None:
                    await self._discover()
                assert self.jwks_url is not None  # noqa: S101 - set by _discover
                async with httpx.AsyncClient(verify=self._verify, timeout=self._timeout) as c:
                    resp = await c.get(self.jwks_url)
                resp.raise_for_status()
                doc = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("JWKS fetch from %s failed: %s", self.jwks_url, type(exc).__name__)
                if self._keys is None:
                    raise AuthenticationFailed("issuer keys unavailable") from exc
                return
            finally:
                self._fetched_at = now
            self.fetch_count += 1
            if isinstance(doc, dict):
                self._set_keys(doc)

    async def validate(self, token: str) -> TokenClaims:
        """The checked claims, or ``AuthenticationFailed`` naming the failed check."""
        token = token.strip()
        if not token or len(token) > _MAX_TOKEN or token.count(".") != 2:
            raise AuthenticationFailed("token is not a JWT")
        header = _header(token)
        if header.get("alg") not in self.algorithms:
            raise AuthenticationFailed("token algorithm not accepted")
        typ = header.get("typ", "JWT")
        if not isinstance(typ, str) or typ.lower() not in ("at+jwt", "application/at+jwt", "jwt"):
            raise AuthenticationFailed("not an access token")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise AuthenticationFailed("token has no key id")
        if self._keys is None:
            await self._refresh(force=False)
        if kid not in self._kids or self._keys is None:
            await self._refresh(force=True)  # the issuer may have rotated its key
            if kid not in self._kids or self._keys is None:
                raise AuthenticationFailed("token signed by an unknown key")
        try:
            decoded = jwt.decode(token, self._keys, list(self.algorithms))
        except (JoseError, ValueError) as exc:
            raise AuthenticationFailed("token signature invalid") from exc
        claims = decoded.claims
        # An ID token is not an access token (OpenID Connect Core §3.1.3.6 at_hash; Keycloak,
        # hence Pro Santé Connect, marks its token kinds with a "typ" claim).
        if "at_hash" in claims or claims.get("typ", "Bearer") != "Bearer":
            raise AuthenticationFailed("not an access token")
        registry = JWTClaimsRegistry(
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            claim = getattr(exc, "claim", None)
            what = f"{exc.error} ({claim})" if claim else exc.error
            raise AuthenticationFailed(f"token rejected: {what}") from exc
        scope = claims.get("scope", "")
        return TokenClaims(
            subject=str(claims["sub"]),
            idnps=idnps_of(claims),
            client_id=str(claims["client_id"]) if "client_id" in claims else None,
            scope=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            expires=int(claims["exp"]),
            claims=claims,
        )

    async def authenticate(self, token: str, accounts: IdnpsLookup) -> Account:
        """Validates the token and returns the account of the professional it names."""
        checked = await self.validate(token)
        if checked.idnps is None:
            raise AuthenticationFailed("token carries no IDNPS")
        account = await accounts.get_account_by_idnps(checked.idnps)
        if account is None or account.disabled:
            raise AuthenticationFailed("no account for this professional")
        return account
