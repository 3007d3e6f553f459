"""Pluggable SASL (RFC 4422) for SMTP AUTH (RFC 4954) and IMAP AUTHENTICATE (RFC 9051 §6.2.2).

A front-end owns the framing (``334``/``+`` lines, base64, cancellation with ``*``); a
:class:`SaslMechanism` owns the exchange and returns the authenticated :class:`Account`.
Mechanisms get credentials checked by an :class:`Authenticator` (``AccountStore`` satisfies it:
it verifies passwords off the event loop). New mechanisms (XOAUTH2, OAUTHBEARER, EXTERNAL) plug
in by implementing :class:`SaslMechanism`. A mechanism that needs the connection's verified TLS
client certificate (EXTERNAL, RFC 4422 Appendix A) implements :class:`TlsBoundMechanism`; a
front-end binds its list per connection with :func:`for_connection` after the handshake.
Nothing here logs credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from caducee.core.errors import AuthenticationFailed, InvalidInput
from caducee.core.model import Account

__all__ = [
    "Authenticator",
    "Challenge",
    "PlainMechanism",
    "SaslCancelled",
    "SaslMechanism",
    "TlsBoundMechanism",
    "for_connection",
    "mechanisms_by_name",
]

Challenge = Callable[[bytes], Awaitable[bytes]]
"""Sends a server challenge (raw bytes; the front-end encodes it) and returns the client's
decoded response. Raises :class:`SaslCancelled` when the client sends ``*``."""


class SaslCancelled(AuthenticationFailed):
    """The client cancelled the exchange (RFC 4954 §4: ``*``; reply 501 5.0.0)."""


class Authenticator(Protocol):
    """Checks a password for a login; returns the account or None. Must not block the loop."""

    async def verify_password(self, login: str, password: str) -> Account | None: ...


class SaslMechanism(Protocol):
    """One SASL mechanism (RFC 4422 §5)."""

    @property
    def name(self) -> str:
        """The registered name, upper case (``PLAIN``)."""
        ...

    @property
    def needs_tls(self) -> bool:
        """Plain-text credentials: offered only on a TLS-protected session."""
        ...

    async def authenticate(self, initial: bytes | None, challenge: Challenge) -> Account:
        """Runs the exchange. ``initial`` is the decoded initial response (None when absent,
        b"" for ``=``). Raises ``AuthenticationFailed`` (or ``InvalidInput`` for malformed
        client data)."""
        ...


class PlainMechanism:
    """SASL PLAIN (RFC 4616): ``[authzid] NUL authcid NUL passwd``, UTF-8.

    An authorisation identity different from the authentication identity is refused (no proxy
    authorisation); delegation is modelled by mailbox rights, not by SASL authzid.
    """

    name = "PLAIN"
    needs_tls = True

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def authenticate(self, initial: bytes | None, challenge: Challenge) -> Account:
        response = initial if initial is not None else await challenge(b"")
        parts = response.split(b"\x00")
        if len(parts) != 3:
            raise InvalidInput("PLAIN response must be authzid NUL authcid NUL passwd")
        try:
            authzid, authcid, passwd = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError as exc:
            raise InvalidInput("PLAIN response is not UTF-8") from exc
        if not authcid or not passwd or len(authcid) > 255 or len(passwd) > 1024:
            raise AuthenticationFailed("authentication failed")
        if authzid and authzid != authcid:
            raise AuthenticationFailed("authorization identity not allowed")
        account = await self._auth.verify_password(authcid, passwd)
        if account is None or account.disabled:
            raise AuthenticationFailed("authentication failed")
        return account


def mechanisms_by_name(mechs: list[SaslMechanism]) -> dict[str, SaslMechanism]:
    """Index mechanisms by upper-case name (first one wins)."""
    out: dict[str, SaslMechanism] = {}
    for m in mechs:
        out.setdefault(m.name.upper(), m)
    return out


@runtime_checkable
class TlsBoundMechanism(Protocol):
    """A mechanism that authenticates with the connection's TLS client certificate."""

    def for_connection(self, peer_cert_der: bytes) -> SaslMechanism:
        """The mechanism bound to one connection's verified peer certificate (DER)."""
        ...


def for_connection(
    mechs: dict[str, SaslMechanism], peer_cert_der: bytes | None
) -> dict[str, SaslMechanism]:
    """The mechanisms one connection offers: certificate-bound ones are bound to the verified
    client certificate, and left out (neither advertised nor accepted) without one."""
    out: dict[str, SaslMechanism] = {}
    for name, mech in mechs.items():
        if isinstance(mech, TlsBoundMechanism):
            if peer_cert_der:
                out[name] = mech.for_connection(peer_cert_der)
        else:
            out[name] = mech
    return out
