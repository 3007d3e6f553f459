"""The OAuth 2.0 / OpenID Connect protocol core, on authlib's server components.

authlib does the protocol work (RFC 6749 authorization code and refresh grants, RFC 7636 PKCE,
OpenID Connect Core §3.1 ID tokens, RFC 7662 introspection, RFC 7009 revocation); this module
gives it our store, our keys and our token format (RFC 9068 JWT access tokens, ES256, with the
professional's IDNPS as PSC's ``SubjectNameID``). Everything here is synchronous: the ASGI layer
runs it in a thread pool.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Payload, grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import OpenIDCode
from joserfc import jwt
from joserfc.errors import JoseError

from caducee.auth.idp.keys import ALG, SigningKeys
from caducee.auth.idp.models import (
    ACR,
    AccessTokenView,
    ClientModel,
    CodeModel,
    GrantUser,
    RefreshModel,
)
from caducee.auth.idp.store import CodeRecord, IdpStore, RefreshRecord, User

__all__ = ["HttpData", "IdpSettings", "OAuthCore", "user_claims"]


class _NoTokenRecords(logging.Filter):
    """authlib's grants log the whole token response at DEBUG ("Issue token {...}"): drop
    those records, whatever the logging configuration (tokens are never logged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Issue token", "Grant token"))


_NO_TOKENS = _NoTokenRecords()
for _name in (
    "authlib.oauth2.rfc6749.grants.authorization_code",
    "authlib.oauth2.rfc6749.grants.refresh_token",
    "authlib.oauth2.rfc6749.grants.implicit",
    "authlib.oauth2.rfc6749.grants.client_credentials",
    "authlib.oauth2.rfc6749.grants.resource_owner_password_credentials",
):
    logging.getLogger(_name).addFilter(_NO_TOKENS)


@dataclass(frozen=True)
class IdpSettings:
    """Lifetimes in seconds. PSC access tokens live about five minutes (notes §2.2)."""

    issuer: str
    access_token_lifetime: int = 300
    refresh_token_lifetime: int = 8 * 3600
    code_lifetime: int = 60
    session_lifetime: int = 8 * 3600
    max_failures: int = 5
    lockout_seconds: float = 900.0
    rate_limit: int = 20  # login attempts per client IP ...
    rate_window: float = 60.0  # ... per this many seconds
    totp_window: int = 1  # accepted clock drift, in 30-second steps either side
    id_token_lifetime: int = 300


@dataclass
class HttpData:
    """What authlib needs of an HTTP request, read up front (authlib is synchronous)."""

    method: str
    url: str
    headers: Mapping[str, str]  # case-insensitive (Starlette's Headers)
    data: dict[str, str]
    datalist: dict[str, list[str]] = field(default_factory=dict)


def user_claims(user: User) -> dict[str, Any]:
    """The professional's identity claims, named as Pro Santé Connect names them.

    ``SubjectNameID`` and ``preferred_username``: the IDNPS (type digit + RPPS/ADELI);
    ``SubjectRefPro.exercices[0].codeProfession``: the TRE_G15 profession code."""
    claims: dict[str, Any] = {
        "SubjectNameID": user.idnps,
        "preferred_username": user.idnps,
        "given_name": user.given_name,
        "family_name": user.family_name,
    }
    if user.profession:
        claims["SubjectRefPro"] = {"exercices": [{"codeProfession": user.profession}]}
    if user.email:
        claims["email"] = user.email
    return claims


class _Payload(OAuth2Payload):  # type: ignore[misc]  # authlib is untyped
    def __init__(self, data: HttpData) -> None:
        self._d = data

    @property
    def data(self) -> dict[str, str]:
        return self._d.data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        out: defaultdict[str, list[str]] = defaultdict(list)
        for k, v in (self._d.datalist or {k: [v] for k, v in self._d.data.items()}).items():
            out[k].extend(v)
        return out


class _Request(OAuth2Request):  # type: ignore[misc]  # authlib is untyped
    def __init__(self, data: HttpData) -> None:
        super().__init__(method=data.method, uri=data.url, headers=data.headers)
        self.payload = _Payload(data)
        self._http = data

    @property
    def args(self) -> dict[str, str]:
        return self._http.data

    @property
    def form(self) -> dict[str, str]:
        return self._http.data


class _S256Only(CodeChallenge):  # type: ignore[misc]  # authlib is untyped
    """RFC 7636 with S256 only and a challenge required from every client (RFC 9700 §2.1.1)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 - authlib's class attribute

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge' (PKCE S256 is required)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256")
        super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge(self, authorization_code: CodeModel) -> str | None:
        return authorization_code.rec.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: CodeModel) -> str | None:
        return authorization_code.rec.code_challenge_method


class OAuthCore:
    """The authorization server: authlib's engine wired to the store and the signing keys."""

    def __init__(self, store: IdpStore, keys: SigningKeys, settings: IdpSettings) -> None:
        self.store = store
        self.keys = keys
        self.settings = settings
        self.server = self._build()

    # -- token format ----------------------------------------------------------------------
    def sign(self, claims: dict[str, Any], typ: str = "at+jwt") -> str:
        key = self.keys.current
        return jwt.encode({"alg": ALG, "kid": key.kid, "typ": typ}, claims, key, [ALG])

    def _access_token(
        self, client: ClientModel, grant_type: str, user: GrantUser | None, scope: str
    ) -> str:
        """RFC 9068 §2.2 claims plus PSC's identity claims."""
        assert user is not None  # noqa: S101 - both our grants have a resource owner
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": user.user.user_id,
            "aud": list(client.client.audience) or [client.get_client_id()],
            "exp": now + self.settings.access_token_lifetime,
            "iat": now,
            "nbf": now,
            "jti": secrets.token_urlsafe(16),
            "client_id": client.get_client_id(),
            "azp": client.get_client_id(),
            "scope": scope,
            "sid": user.family,
            "auth_time": user.auth_time,
            "acr": ACR,
            "amr": list(user.amr),
            **user_claims(user.user),
        }
        return self.sign(claims)

    def decode_access_token(self, token: str) -> dict[str, Any] | None:
        """Claims of a token we signed (signature and issuer checked, not expiry), or None."""
        try:
            decoded = jwt.decode(token, self.keys.public_keyset(), [ALG])
        except (JoseError, ValueError):
            return None
        if decoded.header.get("typ") != "at+jwt" or decoded.claims.get("iss") != (
            self.settings.issuer
        ):
            return None
        return dict(decoded.claims)

    def access_token_active(self, claims: dict[str, Any]) -> bool:
        return (
            int(claims.get("exp", 0)) >= time.time()
            and not self.store.jti_revoked(str(claims.get("jti", "")))
            and not self.store.family_revoked(str(claims.get("sid", "")))
        )

    # -- authlib wiring ----------------------------------------------------------------------
    def _build(self) -> AuthorizationServer:
        core = self
        store = self.store
        settings = self.settings

        class Server(AuthorizationServer):  # type: ignore[misc]  # authlib is untyped
            def query_client(self, client_id: str) -> ClientModel | None:
                client = store.get_client(client_id)
                return None if client is None else ClientModel(client)

            def save_token(self, token: dict[str, Any], request: _Request) -> None:
                user: GrantUser = request.user
                store.audit(
                    "idp.token.issued",
                    "ok",
                    user.user.username,
                    f"{request.client.get_client_id()} {request.payload.grant_type}",
                )
                refresh = token.get("refresh_token")
                if not refresh:
                    return
                now = time.time()
                store.save_refresh(
                    refresh,
                    RefreshRecord(
                        family=user.family,
                        client_id=request.client.get_client_id(),
                        user_id=user.user.user_id,
                        scope=str(token.get("scope", "")),
                        auth_time=user.auth_time,
                        amr=user.amr,
                        issued=now,
                        expires=now + settings.refresh_token_lifetime,
                        rotated=False,
                    ),
                )

            def create_oauth2_request(self, request: HttpData | _Request) -> _Request:
                return request if isinstance(request, _Request) else _Request(request)

            def handle_response(
                self, status: int, body: Any, headers: list[tuple[str, str]]
            ) -> tuple[int, Any, list[tuple[str, str]]]:
                return status, body, list(headers)

            def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
                return None

        class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]  # untyped
            TOKEN_ENDPOINT_AUTH_METHODS = [  # noqa: RUF012 - authlib's class attribute
                "client_secret_basic",
                "client_secret_post",
                "none",
            ]

            def save_authorization_code(self, code: str, request: _Request) -> None:
                data = request.payload.data
                user: GrantUser = request.user
                store.save_code(
                    code,
                    CodeRecord(
                        client_id=request.client.get_client_id(),
                        user_id=user.user.user_id,
                        redirect_uri=data.get("redirect_uri") or "",
                        scope=request.client.get_allowed_scope(data.get("scope")),
                        nonce=data.get("nonce"),
                        code_challenge=data.get("code_challenge"),
                        code_challenge_method=data.get("code_challenge_method"),
                        auth_time=user.auth_time,
                        amr=user.amr,
                        expires=time.time() + settings.code_lifetime,
                        family=user.family,
                    ),
                )

            def query_authorization_code(self, code: str, client: ClientModel) -> CodeModel | None:
                rec = store.take_code(code)  # single use, even when the exchange then fails
                if rec is None or rec.client_id != client.get_client_id():
                    return None
                model = CodeModel(rec)
                return None if model.is_expired() else model

            def delete_authorization_code(self, authorization_code: CodeModel) -> None:
                return None  # already deleted by query_authorization_code

            def authenticate_user(self, authorization_code: CodeModel) -> GrantUser | None:
                user = store.get_user(user_id=authorization_code.rec.user_id)
                if user is None or user.disabled:
                    return None
                rec = authorization_code.rec
                return GrantUser(user, rec.auth_time, rec.amr, family=rec.family)

        class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]  # untyped
            INCLUDE_NEW_REFRESH_TOKEN = True  # rotation (RFC 9700 §4.14.2)
            TOKEN_ENDPOINT_AUTH_METHODS = [  # noqa: RUF012 - authlib's class attribute
                "client_secret_basic",
                "client_secret_post",
                "none",
            ]

            def authenticate_refresh_token(self, refresh_token: str) -> RefreshModel | None:
                rec = store.get_refresh(refresh_token)
                if rec is None or rec.expires < time.time():
                    return None
                if store.family_revoked(rec.family):
                    return None
                if rec.rotated:
                    # A used refresh token presented again: stolen, or replayed. Revoke the
                    # whole grant, the legitimate holder logs in again (RFC 9700 §4.14.2).
                    store.revoke_family(rec.family, rec.expires)
                    store.audit("idp.refresh.replay", "refused", rec.user_id, rec.client_id)
                    return None
                return RefreshModel(refresh_token, rec, revoked=False)

            def authenticate_user(self, refresh_token: RefreshModel) -> GrantUser | None:
                user = store.get_user(user_id=refresh_token.rec.user_id)
                if user is None or user.disabled:
                    return None
                rec = refresh_token.rec
                return GrantUser(user, rec.auth_time, rec.amr, family=rec.family)

            def revoke_old_credential(self, refresh_token: RefreshModel) -> None:
                if not store.mark_rotated(refresh_token.token):
                    store.revoke_family(refresh_token.rec.family, refresh_token.rec.expires)

        class IdToken(OpenIDCode):  # type: ignore[misc]  # authlib is untyped
            def exists_nonce(self, nonce: str, request: _Request) -> bool:
                return False  # codes are single use; a replayed nonce cannot mint a token

            def resolve_client_private_key(self, client: ClientModel) -> Any:
                return core.keys.current

            def get_client_algorithm(self, client: ClientModel) -> str:
                return ALG

            def get_encode_header(self, client: ClientModel) -> dict[str, str]:
                return {"alg": ALG, "kid": str(core.keys.current.kid)}

            def get_client_claims(self, client: ClientModel) -> dict[str, Any]:
                now = int(time.time())
                return {
                    "iss": settings.issuer,
                    "aud": [client.get_client_id()],
                    "iat": now,
                    "exp": now + settings.id_token_lifetime,
                }

            def generate_user_info(self, user: GrantUser, scope: str) -> dict[str, Any]:
                return {"sub": user.user.user_id, **user_claims(user.user)}

        class Introspection(IntrospectionEndpoint):  # type: ignore[misc]  # untyped
            def query_token(
                self, token_string: str, token_type_hint: str | None
            ) -> AccessTokenView | RefreshModel | None:
                return core.query_token(token_string, token_type_hint)

            def check_permission(self, token: Any, client: ClientModel, request: Any) -> bool:
                # The client the token was issued to, or a resource server in its audience.
                if isinstance(token, AccessTokenView):
                    aud = token.claims.get("aud", [])
                    aud = [aud] if isinstance(aud, str) else list(aud)
                    return token.check_client(client) or client.get_client_id() in aud
                return bool(token.check_client(client))

            def introspect_token(self, token: AccessTokenView | RefreshModel) -> dict[str, Any]:
                if isinstance(token, AccessTokenView):
                    out = dict(token.claims)
                    out["token_type"] = "Bearer"  # noqa: S105 - a type name
                    out["username"] = token.claims.get("SubjectNameID")
                    return out
                return {
                    "client_id": token.rec.client_id,
                    "token_type": "refresh_token",
                    "scope": token.rec.scope,
                    "sub": token.rec.user_id,
                    "exp": int(token.rec.expires),
                    "iat": int(token.rec.issued),
                    "iss": settings.issuer,
                }

        class Revocation(RevocationEndpoint):  # type: ignore[misc]  # untyped
            CLIENT_AUTH_METHODS = [  # noqa: RUF012 - authlib's class attribute
                "client_secret_basic",
                "client_secret_post",
                "none",
            ]

            def query_token(
                self, token_string: str, token_type_hint: str | None
            ) -> AccessTokenView | RefreshModel | None:
                return core.query_token(token_string, token_type_hint)

            def revoke_token(self, token: AccessTokenView | RefreshModel, request: Any) -> None:
                if isinstance(token, AccessTokenView):
                    store.revoke_jti(str(token.claims.get("jti")), float(token.claims["exp"]))
                else:
                    # RFC 7009 §2.1: revoking a refresh token revokes the whole grant.
                    store.revoke_family(token.rec.family, token.rec.expires)
                store.audit("idp.token.revoked", "ok", request.client.get_client_id())

        server = Server(scopes_supported=["openid", "profile", "email", "scope_all"])
        server.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=self._access_token,
                refresh_token_generator=lambda **_: secrets.token_urlsafe(32),
                expires_generator=settings.access_token_lifetime,
            ),
        )
        server.register_grant(CodeGrant, [_S256Only(required=True), IdToken(require_nonce=False)])
        server.register_grant(RefreshGrant)
        server.register_endpoint(Introspection)
        server.register_endpoint(Revocation)
        return server

    def query_token(
        self, token_string: str, hint: str | None
    ) -> AccessTokenView | RefreshModel | None:
        if hint != "refresh_token":
            claims = self.decode_access_token(token_string)
            if claims is not None:
                return AccessTokenView(claims, revoked=not self.access_token_active(claims))
        rec = self.store.get_refresh(token_string)
        if rec is not None:
            return RefreshModel(token_string, rec, revoked=self.store.family_revoked(rec.family))
        return None
