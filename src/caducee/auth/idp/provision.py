"""Idempotent provisioning of the IdP for a sandbox (users and clients from a description).

The sandbox builder describes who exists (the demo professionals with their IDNPS, the
operators as token audiences, the practice software and webmails as clients); this module
makes the IdP store match, creating what is missing and leaving what exists. Secrets it
creates (TOTP secrets, client secrets) are returned once, for the sandbox's own records.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from caducee.auth.idp.store import IdpStore
from caducee.auth.totp import generate_secret

__all__ = ["ClientSpec", "Provisioned", "UserSpec", "provision"]


@dataclass(frozen=True)
class UserSpec:
    login: str
    idnps: str
    password: str | None = None
    totp: bool = True
    given_name: str = ""
    family_name: str = ""
    profession: str = ""
    email: str = ""
    cert_subject: str | None = None


@dataclass(frozen=True)
class ClientSpec:
    client_id: str
    audience: tuple[str, ...]
    redirect_uris: tuple[str, ...] = ()
    confidential: bool = False
    name: str = ""


@dataclass
class Provisioned:
    """What was created now: TOTP secrets per login, client secrets per client id."""

    totp_secrets: dict[str, str] = field(default_factory=dict)
    client_secrets: dict[str, str] = field(default_factory=dict)


def provision(
    store: IdpStore, users: Iterable[UserSpec], clients: Iterable[ClientSpec] = ()
) -> Provisioned:
    """Creates the missing users and clients; existing ones are left as they are."""
    out = Provisioned()
    for u in users:
        if store.get_user(username=u.login) is not None:
            continue
        totp = generate_secret() if (u.totp and u.password is not None) else None
        store.add_user(
            u.login,
            u.idnps,
            password=u.password,
            totp_secret=totp,
            given_name=u.given_name,
            family_name=u.family_name,
            profession=u.profession,
            email=u.email,
            cert_subject=u.cert_subject,
        )
        if totp is not None:
            out.totp_secrets[u.login] = totp
    for c in clients:
        if store.get_client(c.client_id) is not None:
            continue
        secret = secrets.token_urlsafe(32) if c.confidential else None
        store.add_client(
            c.client_id,
            list(c.redirect_uris),
            audience=list(c.audience),
            secret=secret,
            name=c.name,
        )
        if secret is not None:
            out.client_secrets[c.client_id] = secret
    return out
