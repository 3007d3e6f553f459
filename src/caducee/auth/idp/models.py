"""Adapters between the IdP store records and authlib's model mixins (RFC 6749 §2, §4.1)."""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin
from authlib.oidc.core import AuthorizationCodeMixin

from caducee.auth.idp.store import Client, CodeRecord, RefreshRecord, User, digest

__all__ = ["AccessTokenView", "ClientModel", "CodeModel", "GrantUser", "RefreshModel"]

ACR = "eidas1"  # PSC's eIDAS assurance level


@dataclass
class GrantUser:
    """The resource owner of one grant: the user plus how and when they authenticated, and the
    grant ``family`` (shared by the refresh tokens and the access tokens' ``sid`` of one login)."""

    user: User
    auth_time: int
    amr: tuple[str, ...]
    family: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_user_id(self) -> str:
        return self.user.user_id


class ClientModel(ClientMixin):  # type: ignore[misc]  # authlib is untyped
    """A registered client. Public clients (no secret) may only use ``none`` at the token
    endpoint, with PKCE; confidential clients use client_secret_basic or _post."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def is_public(self) -> bool:
        return self.client.secret_hash is None

    def get_client_id(self) -> str:
        return self.client.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.client.redirect_uris[0] if self.client.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = set(self.client.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string comparison (RFC 9700 §4.1.3): no prefix or pattern matching.
        return redirect_uri in self.client.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.client.secret_hash is None:
            return False
        return hmac.compare_digest(digest(client_secret), self.client.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.is_public:
            # RFC 7009 §2.1: a public client identifies itself to revoke its own tokens.
            return endpoint in ("token", "revocation") and method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


class CodeModel(AuthorizationCodeMixin):  # type: ignore[misc]  # authlib is untyped
    def __init__(self, rec: CodeRecord) -> None:
        self.rec = rec

    def get_redirect_uri(self) -> str:
        return self.rec.redirect_uri

    def get_scope(self) -> str:
        return self.rec.scope

    def get_nonce(self) -> str | None:
        return self.rec.nonce

    def get_auth_time(self) -> int:
        return self.rec.auth_time

    def get_acr(self) -> str:
        return ACR

    def get_amr(self) -> list[str]:
        return list(self.rec.amr)

    def is_expired(self) -> bool:
        return self.rec.expires < time.time()


class RefreshModel(TokenMixin):  # type: ignore[misc]  # authlib is untyped
    def __init__(self, token: str, rec: RefreshRecord, revoked: bool) -> None:
        self.token = token
        self.rec = rec
        self.revoked = revoked

    def check_client(self, client: ClientModel) -> bool:
        return client.get_client_id() == self.rec.client_id

    def get_scope(self) -> str:
        return self.rec.scope

    def get_expires_in(self) -> int:
        return max(0, int(self.rec.expires - time.time()))

    def is_expired(self) -> bool:
        return self.rec.expires < time.time()

    def is_revoked(self) -> bool:
        return self.revoked or self.rec.rotated


class AccessTokenView(TokenMixin):  # type: ignore[misc]  # authlib is untyped
    """A JWT access token whose signature we checked (introspection, revocation)."""

    def __init__(self, claims: dict[str, Any], revoked: bool) -> None:
        self.claims = claims
        self.revoked = revoked

    def check_client(self, client: ClientModel) -> bool:
        return client.get_client_id() == self.claims.get("client_id")

    def get_scope(self) -> str:
        return str(self.claims.get("scope", ""))

    def get_expires_in(self) -> int:
        return max(0, int(self.claims.get("exp", 0)) - int(time.time()))

    def is_expired(self) -> bool:
        return int(self.claims.get("exp", 0)) < time.time()

    def is_revoked(self) -> bool:
        return self.revoked
