"""Running the IdP: ``IdpServer(data_dir, tls, ...)`` with ``start()`` / ``stop()``.

HTTPS only (OAuth 2.0 requires TLS, RFC 6749 §1.6). With ``port=0`` the kernel picks a port;
the issuer defaults to ``https://<host>:<port>`` once it is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from caducee.embedded_http import EmbeddedHttp

__all__ = ["IdpServer", "IdpTls"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdpTls:
    cert_file: Path
    key_file: Path
    client_ca: Path | None = None  # CA bundle of the cards; None: no certificate login
    crl_file: Path | None = None


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
        self._http: EmbeddedHttp | None = None
        self._purger: asyncio.Task[None] | None = None

    @property
    def issuer(self) -> str:
        if self.core is None:
            raise ConfigError(["the IdP is not started"])
        return self.core.settings.issuer

    async def start(self) -> tuple[str, int]:
        """Binds, starts serving, returns the bound (host, port)."""
        http = self._http = EmbeddedHttp(self.host, self.port)
        default_issuer = http.base_url
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
        await http.serve(config)
        self._purger = asyncio.create_task(self._purge_loop())
        log.info("IdP listening on %s:%d, issuer %s", http.host, http.port, settings.issuer)
        return http.host, http.port

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
        if self._http is not None:
            await self._http.stop()
        self.store.close()

    async def serve_forever(self) -> None:
        await self.start()
        assert self._http is not None and self._http.task is not None  # noqa: S101 - by start()
        await self._http.task
