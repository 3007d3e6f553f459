"""TLS for the IdP's HTTPS listener, with optional client certificates (e-CPS-like cards).

The handshake asks for a client certificate (CERT_OPTIONAL): a card holder presents one, a
browser without a card does not and logs in by password + TOTP. A presented certificate that
does not chain to the configured CA fails the handshake. uvicorn does not put the peer
certificate into the ASGI scope, so a small protocol subclass adds it as
``scope["extensions"]["tls"]["client_cert_der"]`` for each connection.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["PeerCertProtocol", "server_context"]


def server_context(
    cert_file: Path, key_file: Path, client_ca: Path | None = None, crl_file: Path | None = None
) -> ssl.SSLContext:
    """TLS >= 1.2; requests (never requires) a client certificate when ``client_ca`` is set."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cafile=client_ca)
        if crl_file is not None:
            ctx.load_verify_locations(cafile=crl_file)
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


class _WithPeerCert:
    def __init__(self, app: Any, cert_der: bytes | None) -> None:
        self.app = app
        self.cert_der = cert_der

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            ext = dict(scope.get("extensions") or {})
            ext["tls"] = {"client_cert_der": self.cert_der}
            scope = {**scope, "extensions": ext}
        await self.app(scope, receive, send)


class PeerCertProtocol(H11Protocol):
    """H11Protocol that exposes the verified peer certificate to the application."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.app = _WithPeerCert(self.app, cert)
