"""Running the webmail inside an operator: ``WebServer(cfg, storage, ...)`` with
``start()`` / ``stop()`` like the SMTP and IMAP servers (``app.Operator`` wires it).

HTTPS only (the session cookie is ``Secure`` and ``__Host-``): the certificate is
``[web] cert_file``/``key_file``, else the operator's own (``[tls]``). The identity provider is
``[auth] oidc_issuer`` (reached with ``[auth] ca_file``); the webmail is its client
``[web] client_id`` (default ``<operator>-webmail``) with redirect URI
``<public_url>/auth/callback``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime

import uvicorn

from caducee.config.model import NodeConfig, read_secret
from caducee.directory.store import DirectoryStore
from caducee.embedded_http import EmbeddedHttp
from caducee.storage.interfaces import Storage
from caducee.trust.listeblanche import ListeBlanche
from caducee.web.app import build_app
from caducee.web.context import WebContext

__all__ = ["WebServer"]

log = logging.getLogger("caducee.web")


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class WebServer:
    def __init__(
        self,
        cfg: NodeConfig,
        storage: Storage,
        *,
        is_listed: Callable[[str], bool],
        liste: Callable[[], ListeBlanche | None] = lambda: None,
        wake: Callable[[], None] | None = None,
        listen: str | None = None,
        directory: DirectoryStore | None = None,
    ) -> None:
        addr = listen or cfg.web.listen
        if addr is None:
            raise ValueError("the webmail has no listen address ([web] listen)")
        self.cfg = cfg
        self.host, self.port = _split(addr)
        self.storage = storage
        self._is_listed = is_listed
        self._liste = liste
        self._wake = wake
        self._directory = directory
        self.ctx: WebContext | None = None
        self._http: EmbeddedHttp | None = None

    async def start(self) -> list[tuple[str, int]]:
        cfg = self.cfg
        http = self._http = EmbeddedHttp(self.host, self.port)
        public = cfg.web.public_url or http.base_url
        directory = self._directory
        if directory is None and cfg.web.directory_db is not None and cfg.web.directory_db.exists():
            from caducee.directory.open import open_store

            directory = await asyncio.to_thread(open_store, cfg.web.directory_db)
            self._directory = directory
        verify: ssl.SSLContext | bool = True
        if cfg.auth.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(cfg.auth.ca_file))
        secret = read_secret(cfg.web.client_secret_file, None)
        self.ctx = WebContext(
            cfg=cfg,
            storage=self.storage,
            is_listed=self._is_listed,
            liste=self._liste,
            public_url=public.rstrip("/"),
            issuer=cfg.auth.oidc_issuer,
            client_id=cfg.web.client_id or f"{cfg.name}-webmail",
            client_secret=secret,
            idp_verify=verify,
            wake=self._wake,
            directory=directory,
        )
        self.ctx.trust_loaded = datetime.now(UTC)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(
            cfg.web.cert_file or cfg.tls.cert_file, cfg.web.key_file or cfg.tls.key_file
        )
        config = uvicorn.Config(
            build_app(self.ctx),
            ws="none",
            lifespan="off",
            log_level="warning",
            access_log=False,  # the callback's query string holds an authorization code
            ssl_certfile=str(cfg.web.cert_file or cfg.tls.cert_file),
            ssl_context_factory=lambda _cfg, _default: ctx,
            server_header=False,
            proxy_headers=False,  # we terminate TLS: X-Forwarded-For must not dodge the limits
            limit_concurrency=500,
            timeout_keep_alive=30,
            h11_max_incomplete_event_size=64 * 1024,
        )
        await http.serve(config)
        log.info("%s: webmail on %s", cfg.name, public)
        return [(http.host, http.port)]

    @property
    def public_url(self) -> str:
        if self.ctx is None:
            raise RuntimeError("webmail not started")
        return self.ctx.public_url

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.stop()
            self._http = None
