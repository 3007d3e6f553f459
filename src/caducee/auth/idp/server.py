"""Running the IdP: ``IdpServer(data_dir, tls, ...)`` with ``start()`` / ``stop()``.

HTTPS only (OAuth 2.0 requires TLS, RFC 6749 §1.6). With ``port=0`` the kernel picks a port;
the issuer defaults to ``https://<host>:<port>`` once it is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import uvicorn

from caducee.auth.idp.app import build_app
from caducee.auth.idp.keys import SigningKeys
from caducee.auth.idp.login import LoginService
from caducee.auth.idp.oauth import IdpSettings, OAuthCore
from caducee.auth.idp.store import IdpStore
from caducee.auth.idp.tls import PeerCertProtocol, server_context
from caducee.core.errors import ConfigError

__all__ = ["IdpServer", "IdpTls"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdpTls:
    cert_file: Path
    key_file: Path
    client_ca: Path | None = None  # CA bundle of the cards; None: no certificate login
    crl_file: Path | None = None


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the process that embeds the IdP owns them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class IdpServer:
    def __init__(
        self,
        data_dir: Path,
        tls: IdpTls,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: IdpSettings | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.tls = tls
        self.host = host
        self.port = port
        self._settings = settings
        self.store = IdpStore(data_dir)
        self.keys = SigningKeys(data_dir / "signing-keys.json")
        self.core: OAuthCore | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self._purger: asyncio.Task[None] | None = None

    @property
    def issuer(self) -> str:
        if self.core is None:
            raise ConfigError(["the IdP is not started"])
        return self.core.settings.issuer

    async def start(self) -> tuple[str, int]:
        """Binds, starts serving, returns the bound (host, port)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock
        host, port = sock.getsockname()[:2]
        default_issuer = f"https://{host if family == socket.AF_INET else f'[{host}]'}:{port}"
        settings = self._settings or IdpSettings(issuer=default_issuer)
        if not settings.issuer:
            settings = replace(settings, issuer=default_issuer)
        self.core = OAuthCore(self.store, self.keys, settings)
        app = build_app(self.core, LoginService(self.store, settings))
        ctx = server_context(
            self.tls.cert_file, self.tls.key_file, self.tls.client_ca, self.tls.crl_file
        )
        config = uvicorn.Config(
            app,
            http=PeerCertProtocol,
            ws="none",
            lifespan="off",
            log_level="warning",
            access_log=False,  # query strings hold codes: no access log
            ssl_certfile=str(self.tls.cert_file),
            ssl_context_factory=lambda _cfg, _default: ctx,
            server_header=False,
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        self._purger = asyncio.create_task(self._purge_loop())
        log.info("IdP listening on %s:%d, issuer %s", host, port, settings.issuer)
        return str(host), int(port)

    async def _purge_loop(self, every: float = 600.0) -> None:
        """Drops expired codes, refresh tokens, sessions and revocation marks."""
        while True:
            await asyncio.to_thread(self.store.purge_expired)
            await asyncio.sleep(every)

    async def stop(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=10)
        if self._sock is not None:
            self._sock.close()
        self.store.close()

    async def serve_forever(self) -> None:
        await self.start()
        assert self._task is not None  # noqa: S101 - set by start()
        await self._task
