"""Serving the directory API with uvicorn, optionally over TLS with client certificates.

Operators authenticate with their client certificate (mutual TLS, notes §5.3). uvicorn does not
put the peer certificate in the ASGI scope, so :class:`ClientCertH11Protocol` adds the verified
subject DN (RFC 4514 string) as ``scope["caducee.client_dn"]``. :class:`StaticAuthenticator`
maps that DN to the domains an operator may touch (a configurable table until the trust list
module provides it) and bearer tokens to authenticated professionals.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from starlette.requests import Request
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from caducee.core.errors import ConfigError
from caducee.directory.api import Principal

__all__ = [
    "ClientCertH11Protocol",
    "ClientCertHttpToolsProtocol",
    "StaticAuthenticator",
    "create_app",
    "load_auth_table",
    "uvicorn_config",
]

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def _client_dn(transport: asyncio.Transport) -> str | None:
    ssl_obj = transport.get_extra_info("ssl_object")
    der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
    if not der:
        return None
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def _with_dn(inner: ASGIApp, dn: str) -> ASGIApp:
    async def with_dn(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await inner({**scope, "caducee.client_dn": dn}, receive, send)

    return with_dn


class ClientCertH11Protocol(H11Protocol):
    """h11 protocol that exposes the verified TLS client certificate's subject DN."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        dn = _client_dn(transport)
        if dn is not None:
            self.app = _with_dn(self.app, dn)


class ClientCertHttpToolsProtocol(HttpToolsProtocol):
    """The same over httptools (the C HTTP/1.1 parser, used when installed)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        dn = _client_dn(transport)
        if dn is not None:
            self.app = _with_dn(self.app, dn)


class StaticAuthenticator:
    """Who calls, from a table: client-certificate DN -> operator domains, bearer token ->
    professional. Anything else is anonymous (public view)."""

    def __init__(
        self,
        operators: Mapping[str, list[str]] | None = None,
        tokens: Mapping[str, str] | None = None,
        professionals_dn: Mapping[str, str] | None = None,
    ) -> None:
        self.operators = {k: tuple(d.lower() for d in v) for k, v in (operators or {}).items()}
        self.tokens = dict(tokens or {})
        self.professionals_dn = dict(professionals_dn or {})

    async def __call__(self, request: Request) -> Principal | None:
        dn = request.scope.get("caducee.client_dn")
        if isinstance(dn, str):
            if dn in self.operators:
                return Principal(dn, "operator", self.operators[dn])
            if dn in self.professionals_dn:
                return Principal(self.professionals_dn[dn])
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            name = self.tokens.get(auth[7:].strip())
            if name is not None:
                return Principal(name)
        return None


def load_auth_table(path: Path | None) -> StaticAuthenticator:
    """``{"operators": {"<DN>": ["domain", ...]}, "tokens": {"<token>": "<name>"}}`` (JSON)."""
    if path is None:
        return StaticAuthenticator()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return StaticAuthenticator(data.get("operators"), data.get("tokens"),
                                   data.get("professionals"))  # fmt: skip
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError([f"directory auth table {path}: {exc}"]) from exc


def uvicorn_config(
    app: Any,
    host: str,
    port: int,
    *,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    client_ca: Path | None = None,
    require_client_cert: bool = False,
    workers: int = 1,
) -> Any:
    """A uvicorn ``Config`` for the directory; TLS when ``certfile`` is given, client
    certificates verified against ``client_ca`` (optional unless ``require_client_cert``)."""
    import uvicorn

    kwargs: dict[str, Any] = {"log_level": "warning", "access_log": False, "lifespan": "off"}
    if certfile is not None:
        kwargs.update(ssl_certfile=str(certfile), ssl_keyfile=str(keyfile) if keyfile else None)
        if client_ca is not None:
            kwargs.update(
                ssl_ca_certs=str(client_ca),
                ssl_cert_reqs=ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL,
            )
    if workers > 1:
        kwargs.update(workers=workers, factory=True)
    # httptools (C parser) and uvloop: about twice the requests per CPU second of h11 and the
    # default asyncio loop (docs/performance.md, directory).
    return uvicorn.Config(
        app, host=host, port=port, http=ClientCertHttpToolsProtocol, loop="uvloop", **kwargs
    )


def create_app() -> Any:
    """App factory for multi-process serving (``uvicorn --factory``): configuration from
    ``CADUCEE_DIRECTORY_DB`` / ``CADUCEE_DIRECTORY_DSN``, ``CADUCEE_DIRECTORY_AUTH`` (JSON
    table) and ``CADUCEE_DIRECTORY_BASE_URL``."""
    import os

    from caducee.directory.api import build_app
    from caducee.directory.open import open_store
    from caducee.directory.publication import PatchHandler

    store = open_store()
    auth_path = os.environ.get("CADUCEE_DIRECTORY_AUTH")
    auth = load_auth_table(Path(auth_path) if auth_path else None)
    base = os.environ.get("CADUCEE_DIRECTORY_BASE_URL", "")
    return build_app(store, auth=auth, base_url=base, publisher=PatchHandler(store, auth))
