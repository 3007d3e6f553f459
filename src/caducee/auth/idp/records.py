"""Plain records of the identity provider's store (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Client", "CodeRecord", "RefreshRecord", "Session", "User"]


@dataclass(frozen=True, slots=True)
class User:
    user_id: str  # the OIDC ``sub``: a stable random UUID, never the IDNPS
    username: str
    idnps: str
    given_name: str = ""
    family_name: str = ""
    profession: str = ""  # TRE_G15 profession code, e.g. "10" (médecin), "60" (infirmier)
    email: str = ""
    cert_subject: str | None = None
    has_password: bool = False
    has_totp: bool = False
    failures: int = 0
    locked_until: float = 0.0
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    secret_hash: str | None  # None: a public client (PKCE only)
    name: str
    redirect_uris: tuple[str, ...]
    audience: tuple[str, ...]
    scope: str


@dataclass(frozen=True, slots=True)
class CodeRecord:
    client_id: str
    user_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    amr: tuple[str, ...]
    expires: float
    family: str  # the grant the tokens made from this code will belong to


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    family: str
    client_id: str
    user_id: str
    scope: str
    auth_time: int
    amr: tuple[str, ...]
    issued: float
    expires: float
    rotated: bool


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    auth_time: int
    amr: tuple[str, ...]
    expires: float
