"""SASL mechanisms for bearer tokens and TLS client certificates, on ``caducee.smtp.sasl``.

- ``XOAUTH2`` (Google's format, required by MSSanté Ref#2 ECO.1.2.1 with a Pro Santé Connect
  token): ``user=<u>^Aauth=Bearer <token>^A^A``. On failure the server sends one challenge, a
  JSON error, the client answers with an empty response, then the server fails.
- ``OAUTHBEARER`` (RFC 7628 §3.1): GS2 header ``n,a=<authzid>,`` then ``^A``-separated
  ``key=value`` pairs with ``auth=Bearer <token>``; the failure dance is the same (§3.2.3),
  the client's answer to the error challenge being a lone ``^A``.
- ``EXTERNAL`` (RFC 4422 Appendix A): the TLS client certificate authenticates (an
  IGC-Santé organisation certificate for an APP mailbox); the response is an optional
  authorization identity.

An authorization identity (``user=``, ``a=``, EXTERNAL's response) must be the account's login
or the address of a mailbox the account holds or is delegated on; anything else is refused
(no proxy authorisation). Tokens are never logged; errors name the failed check only.
The parsers are pure functions over bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from caducee.auth.certs import normalise_dn, subject_dn
from caducee.auth.tokens import TokenValidator
from caducee.core.errors import AuthenticationFailed, InvalidInput
from caducee.core.model import Account, Mailbox
from caducee.smtp.sasl import Challenge

__all__ = [
    "BearerCredentials",
    "ExternalMechanism",
    "OAuthBearerMechanism",
    "SaslAccounts",
    "XOAuth2Mechanism",
    "bearer_error_challenge",
    "parse_oauthbearer",
    "parse_xoauth2",
]

_KVSEP = b"\x01"
_MAX_RESPONSE = 16 * 1024
# RFC 6750 §2.1 b64token
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_KEY = re.compile(rb"[A-Za-z]+")


class SaslAccounts(Protocol):
    """What the mechanisms need of the ``AccountStore``."""

    async def get_account(self, login: str) -> Account | None: ...

    async def get_account_by_idnps(self, idnps: str) -> Account | None: ...

    async def mailboxes_of(self, login: str) -> list[tuple[Mailbox, str]]: ...


@dataclass(frozen=True)
class BearerCredentials:
    """A parsed client response: the authorization identity (may be empty) and the token.
    ``fields`` holds the other key/value pairs (OAUTHBEARER ``host``, ``port``)."""

    authzid: str
    token: str = field(repr=False)
    fields: Mapping[str, str] = field(default_factory=dict)


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    token = token.strip(" ")
    if scheme.lower() != "bearer" or not _B64TOKEN.fullmatch(token):
        raise InvalidInput("auth value must be 'Bearer <token>'")
    return token


def _pairs(data: bytes) -> dict[str, str]:
    """``key=value^A`` pairs (RFC 7628 §3.1 kvpair); the data ends with the pairs' last ^A."""
    out: dict[str, str] = {}
    for item in data.split(_KVSEP):
        if not item:
            continue
        key, sep, value = item.partition(b"=")
        if not sep or not _KEY.fullmatch(key):
            raise InvalidInput("malformed key=value pair")
        name = key.decode("ascii").lower()
        if name in out:
            raise InvalidInput(f"duplicate {name!r}")
        try:
            out[name] = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput("value is not UTF-8") from exc
    return out


def parse_xoauth2(response: bytes) -> BearerCredentials:
    """``user=<u>^Aauth=Bearer <token>^A^A`` (Google's XOAUTH2 SASL format)."""
    if len(response) > _MAX_RESPONSE:
        raise InvalidInput("response too long")
    if not response.endswith(_KVSEP + _KVSEP):
        raise InvalidInput("XOAUTH2 response must end with ^A^A")
    pairs = _pairs(response[:-2])
    if "user" not in pairs or "auth" not in pairs:
        raise InvalidInput("XOAUTH2 response needs user= and auth=")
    return BearerCredentials(pairs["user"], _bearer(pairs["auth"]))


def _saslname(text: str) -> str:
    """RFC 5801 §4 saslname: ``=2C`` is ``,`` and ``=3D`` is ``=``; any other ``=`` is an
    error."""
    if re.search(r"=(?!2C|3D)", text):
        raise InvalidInput("bad escape in authorization identity")
    return text.replace("=2C", ",").replace("=3D", "=")


def parse_oauthbearer(response: bytes) -> BearerCredentials:
    """RFC 7628 §3.1 client response: ``gs2-header kvsep *kvpair kvsep``.

    Channel binding (``p=``) is refused: we never advertise a -PLUS mechanism, so a client
    asking for it is confused or under attack (RFC 5801 §4)."""
    if len(response) > _MAX_RESPONSE:
        raise InvalidInput("response too long")
    head, sep, rest = response.partition(_KVSEP)
    if not sep or not (rest == _KVSEP or rest.endswith(_KVSEP + _KVSEP)):
        raise InvalidInput("OAUTHBEARER response must be gs2-header ^A pairs ^A")
    try:
        gs2 = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("GS2 header is not UTF-8") from exc
    parts = gs2.split(",")
    if len(parts) != 3 or parts[2] != "":
        raise InvalidInput("malformed GS2 header")
    cbind, authz = parts[0], parts[1]
    if cbind.startswith("p="):
        raise AuthenticationFailed("channel binding not supported")
    if cbind not in ("n", "y"):
        raise InvalidInput("malformed GS2 channel-binding flag")
    authzid = ""
    if authz:
        if not authz.startswith("a="):
            raise InvalidInput("malformed GS2 authzid")
        authzid = _saslname(authz[2:])
    pairs = _pairs(rest[:-1])
    if "auth" not in pairs:
        raise InvalidInput("OAUTHBEARER response needs auth=")
    token = _bearer(pairs.pop("auth"))
    return BearerCredentials(authzid, token, pairs)


def bearer_error_challenge(
    status: str, *, scope: str = "openid scope_all", openid_configuration: str | None = None
) -> bytes:
    """The server's JSON error (RFC 7628 §3.2.2; XOAUTH2 uses the same shape with an HTTP-like
    ``status``), sent as a challenge before the failure."""
    body: dict[str, str] = {"status": status, "schemes": "bearer", "scope": scope}
    if openid_configuration:
        body["openid-configuration"] = openid_configuration
    return json.dumps(body, separators=(",", ":")).encode("ascii")


async def _authorize(accounts: SaslAccounts, account: Account, authzid: str) -> Account:
    """The account, when ``authzid`` is empty, its login or one of its mailboxes."""
    if account.disabled:
        raise AuthenticationFailed("account disabled")
    if not authzid or authzid.lower() == account.login.lower():
        return account
    for mailbox, rights in await accounts.mailboxes_of(account.login):
        if mailbox.address.lower() == authzid.lower() and rights:
            return account
    raise AuthenticationFailed("authorization identity not allowed for this account")


class _BearerMechanism:
    needs_tls = True  # a bearer token is a password for five minutes: only over TLS
    _error_status = "invalid_token"

    def __init__(
        self,
        validator: TokenValidator,
        accounts: SaslAccounts,
        *,
        openid_configuration: str | None = None,
    ) -> None:
        self._validator = validator
        self._accounts = accounts
        self._discovery = openid_configuration or (
            validator.issuer.rstrip("/") + "/.well-known/openid-configuration"
        )

    def _parse(self, response: bytes) -> BearerCredentials:
        raise NotImplementedError

    async def authenticate(self, initial: bytes | None, challenge: Challenge) -> Account:
        response = initial if initial is not None else await challenge(b"")
        creds = self._parse(response)
        try:
            account = await self._validator.authenticate(creds.token, self._accounts)
            return await _authorize(self._accounts, account, creds.authzid)
        except AuthenticationFailed:
            # RFC 7628 §3.2.2 / XOAUTH2: one error challenge, the client acknowledges, fail.
            await challenge(
                bearer_error_challenge(self._error_status, openid_configuration=self._discovery)
            )
            raise


class XOAuth2Mechanism(_BearerMechanism):
    """SASL XOAUTH2 with Pro Santé Connect-style access tokens (Ref#2 ECO.1.2.1)."""

    name = "XOAUTH2"
    _error_status = "401"

    def _parse(self, response: bytes) -> BearerCredentials:
        return parse_xoauth2(response)


class OAuthBearerMechanism(_BearerMechanism):
    """SASL OAUTHBEARER (RFC 7628)."""

    name = "OAUTHBEARER"

    def _parse(self, response: bytes) -> BearerCredentials:
        return parse_oauthbearer(response)


class ExternalMechanism:
    """SASL EXTERNAL (RFC 4422 Appendix A) for APP mailboxes: the TLS client certificate's
    subject DN names an account through ``cert_logins`` (DN -> login, configured per
    operator). Built once per TLS connection with the peer certificate the handshake
    verified (``for_connection``)."""

    name = "EXTERNAL"
    needs_tls = True

    def __init__(
        self,
        cert_logins: Mapping[str, str],
        accounts: SaslAccounts,
        peer_cert_der: bytes | None = None,
    ) -> None:
        self._logins = {normalise_dn(dn): login for dn, login in cert_logins.items()}
        self._accounts = accounts
        self._peer = peer_cert_der

    def for_connection(self, peer_cert_der: bytes | None) -> ExternalMechanism:
        mech = ExternalMechanism({}, self._accounts, peer_cert_der)
        mech._logins = self._logins
        return mech

    async def authenticate(self, initial: bytes | None, challenge: Challenge) -> Account:
        response = initial if initial is not None else await challenge(b"")
        if len(response) > 1024:
            raise InvalidInput("authorization identity too long")
        try:
            authzid = response.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput("authorization identity is not UTF-8") from exc
        if self._peer is None:
            raise AuthenticationFailed("no client certificate")
        login = self._logins.get(subject_dn(self._peer))
        if login is None:
            raise AuthenticationFailed("certificate not mapped to an account")
        account = await self._accounts.get_account(login)
        if account is None:
            raise AuthenticationFailed("certificate not mapped to an account")
        return await _authorize(self._accounts, account, authzid)
