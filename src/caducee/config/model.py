"""One TOML file per node, validated by typed models.

Every error is reported at once, each with its key. Secrets come only from files or the
environment (``*_file`` / ``*_env`` keys), never inline. Defaults are secure: TLS required,
strict certificate checks, no default credentials.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from caducee.core.errors import ConfigError

__all__ = [
    "AuthConfig",
    "CryptoConfig",
    "ImapConfig",
    "NodeConfig",
    "SmtpConfig",
    "StorageConfig",
    "TlsConfig",
    "TrustConfig",
    "WebConfig",
    "load_config",
    "read_secret",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(_Strict):
    engine: Literal["sqlite", "postgres"] = "sqlite"
    # PostgreSQL DSN without password; the password comes from dsn_password_file / _env.
    dsn: str | None = None
    dsn_password_file: Path | None = None
    dsn_password_env: str | None = None
    pool_size: int = Field(default=10, ge=1, le=200)

    @model_validator(mode="after")
    def _dsn_for_postgres(self) -> StorageConfig:
        if self.engine == "postgres" and not self.dsn:
            raise ValueError("storage.dsn is required when engine = 'postgres'")
        return self


class CryptoConfig(_Strict):
    # Key ring file: one "key_id:base64(32 bytes)" per line; the last line encrypts new blobs.
    keyring_file: Path


class TlsConfig(_Strict):
    cert_file: Path  # server certificate chain (PEM), also presented as client cert outbound
    key_file: Path
    ca_bundle: Path  # trust-space CA bundle (IGC-Santé-shaped roots and intermediates)
    crl_dir: Path | None = None  # CRLs from the trust authority (PEM or DER, refreshed)
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    # OCSP (RFC 6960), in addition to CRLs, when a responder is named (caducee.trust.ocsp):
    # "revoked" always refuses; "unknown" or an unreachable responder refuses only if strict.
    ocsp_url: str | None = None
    ocsp_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    ocsp_strict: bool = False


class TrustConfig(_Strict):
    liste_blanche: str  # a file path or an https:// URL
    checksum_url: str | None = None
    signature_url: str | None = None
    refresh_seconds: int = Field(default=3600, ge=10)
    max_age_seconds: int = Field(default=7 * 86400, ge=60)
    # Sandbox only: domain -> "host:port" instead of MX lookups.
    routes: dict[str, str] = Field(default_factory=dict)
    # CA bundle verifying the authority's HTTPS server and the list's CMS signer (None: system
    # CAs for HTTPS; a signature_url then requires it).
    ca_bundle: Path | None = None
    # Last good copy of a fetched list (default: <data_dir>/trust/liste-blanche.xml).
    cache_file: Path | None = None
    # CRLs fetched on each refresh into tls.crl_dir (https:// or http:// URLs, like IGC-Santé).
    crl_urls: list[str] = Field(default_factory=list)


class SmtpConfig(_Strict):
    hostname: str  # the MX / certificate CN of this operator
    relay_listen: str | None = "0.0.0.0:25"
    submission_listen: str | None = "0.0.0.0:587"
    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    queue_lifetime_seconds: int = Field(default=5 * 86400, ge=60)
    retry_base_seconds: float = Field(default=60.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)


class ImapConfig(_Strict):
    listen: str | None = "0.0.0.0:143"
    listen_tls: str | None = "0.0.0.0:993"


class WebConfig(_Strict):
    """The webmail (``caducee.web``): HTTPS, login through the OpenID Connect issuer of
    ``[auth]`` (authorization code + PKCE), this operator's storage used directly."""

    listen: str | None = None
    public_url: str | None = None  # https://host:port as users reach it (default: from listen)
    client_id: str | None = None  # the webmail's client at the issuer (default: "<name>-webmail")
    client_secret_file: Path | None = None  # only for a confidential client
    cert_file: Path | None = None  # HTTPS certificate chain (default: tls.cert_file)
    key_file: Path | None = None
    directory_db: Path | None = None  # the national directory (SQLite) for search/autocomplete
    admins: list[str] = Field(default_factory=list)  # logins allowed on /admin
    session_idle_seconds: int = Field(default=1800, ge=60)
    session_max_seconds: int = Field(default=8 * 3600, ge=300)
    login_rate_limit: int = Field(default=20, ge=1)  # login attempts per address per minute


class AuthConfig(_Strict):
    """How clients log in to IMAP and SMTP submission (besides PLAIN passwords).

    Bearer tokens (SASL XOAUTH2 / OAUTHBEARER, Ref#2 ECO.1.2.1) from an OpenID Connect issuer:
    Pro Santé Connect, or the sandbox IdP (``caducee idp``). SASL EXTERNAL: a TLS client
    certificate subject DN -> the login of an account (APP mailboxes)."""

    oidc_issuer: str | None = None
    audience: str | None = None  # this operator's name in the tokens' ``aud``
    jwks_url: str | None = None  # default: from the issuer's discovery document
    ca_file: Path | None = None  # CA bundle to reach the issuer (default: the system's)
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    password_login: bool = True  # SASL PLAIN (and IMAP LOGIN)
    certificate_logins: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _audience_with_issuer(self) -> AuthConfig:
        if self.oidc_issuer and not self.audience:
            raise ValueError("auth.audience is required with auth.oidc_issuer")
        if self.oidc_issuer and not self.oidc_issuer.startswith("https://"):
            raise ValueError("auth.oidc_issuer must be an https:// URL")
        return self


class NodeConfig(_Strict):
    name: str
    data_dir: Path
    domains: list[str] = Field(min_length=1)
    storage: StorageConfig = StorageConfig()
    crypto: CryptoConfig
    tls: TlsConfig
    trust: TrustConfig
    smtp: SmtpConfig
    imap: ImapConfig = ImapConfig()
    web: WebConfig = WebConfig()
    auth: AuthConfig = AuthConfig()


def _format_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(root)"


def load_config(path: Path) -> NodeConfig:
    """Reads and validates a node's TOML file; relative paths are relative to the file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError([f"{path}: no such file"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    try:
        cfg = NodeConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{path}: {_format_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(problems) from exc
    return _resolve_paths(cfg, path.parent)


def _resolve_paths(cfg: NodeConfig, base: Path) -> NodeConfig:
    def fix(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else (base / p).resolve())

    tls = cfg.tls.model_copy(
        update={
            "cert_file": fix(cfg.tls.cert_file),
            "key_file": fix(cfg.tls.key_file),
            "ca_bundle": fix(cfg.tls.ca_bundle),
            "crl_dir": fix(cfg.tls.crl_dir),
        }
    )
    crypto = cfg.crypto.model_copy(update={"keyring_file": fix(cfg.crypto.keyring_file)})
    storage = cfg.storage.model_copy(
        update={"dsn_password_file": fix(cfg.storage.dsn_password_file)}
    )
    auth = cfg.auth.model_copy(update={"ca_file": fix(cfg.auth.ca_file)})
    web = cfg.web.model_copy(
        update={
            "cert_file": fix(cfg.web.cert_file),
            "key_file": fix(cfg.web.key_file),
            "client_secret_file": fix(cfg.web.client_secret_file),
            "directory_db": fix(cfg.web.directory_db),
        }
    )
    trust = cfg.trust.model_copy(
        update={"ca_bundle": fix(cfg.trust.ca_bundle), "cache_file": fix(cfg.trust.cache_file)}
    )
    if "://" not in trust.liste_blanche:
        trust = trust.model_copy(update={"liste_blanche": str(fix(Path(trust.liste_blanche)))})
    return cfg.model_copy(
        update={
            "data_dir": fix(cfg.data_dir),
            "tls": tls,
            "crypto": crypto,
            "storage": storage,
            "trust": trust,
            "auth": auth,
            "web": web,
        }
    )


def read_secret(file: Path | None, env: str | None) -> str | None:
    """A secret from a file (first line) or an environment variable; None if neither is set."""
    if file is not None:
        return file.read_text(encoding="utf-8").splitlines()[0].strip()
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError([f"environment variable {env} is not set"])
        return value
    return None
