"""The IMAP server: listeners for STARTTLS (143) and implicit TLS (993), one session each.

``ImapServer(cfg, storage, ssl_context, authenticator)`` then ``await start()`` (bound
addresses; port 0 allowed) and ``await stop()``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from caducee.config.model import NodeConfig
from caducee.imap.cache import MessageCache, SharedReads
from caducee.imap.connection import Connection
from caducee.imap.session import Session
from caducee.smtp.sasl import (
    Authenticator,
    PlainMechanism,
    SaslMechanism,
    mechanisms_by_name,
)
from caducee.storage.interfaces import Storage

__all__ = ["ImapServer", "ImapSettings", "ServerContext"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ImapSettings:
    """Limits and timeouts (docs/imap.md lists them)."""

    max_line: int = 65536  # octets per command line (excluding literals)
    max_literal: int = 25 * 1024 * 1024  # = APPENDLIMIT
    inline_literal: int = 256 * 1024  # bigger literals stream to blob storage
    stream_above: int = 1024 * 1024  # bigger messages stream from blob storage on FETCH
    preauth_timeout: float = 60.0
    idle_timeout: float = 30 * 60.0  # RFC 9051 §5.4: at least 30 minutes
    auth_failure_delay: float = 1.0
    greeting: str = "Caducee IMAP4rev2 server ready"


@dataclass(slots=True)
class ServerContext:
    storage: Storage
    ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext]
    authenticator: Authenticator
    mechanisms: dict[str, SaslMechanism]
    settings: ImapSettings
    cache: MessageCache
    shared: SharedReads = field(default_factory=SharedReads)

    def tls_context(self) -> ssl.SSLContext:
        """The context for a new TLS connection: a callable (``TrustPolicy``'s, rebuilt when
        CRLs are reloaded) is asked each time."""
        ctx = self.ssl_context
        return ctx if isinstance(ctx, ssl.SSLContext) else ctx()


def _split_hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 -- configured listen address


class ImapServer:
    """IMAP4rev2/IMAP4rev1 front-end on the operator's storage."""

    def __init__(
        self,
        cfg: NodeConfig | None,
        storage: Storage,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext],
        authenticator: Authenticator,
        *,
        listen: str | None = None,
        listen_tls: str | None = None,
        settings: ImapSettings | None = None,
        mechanisms: Sequence[SaslMechanism] | None = None,
    ) -> None:
        if cfg is not None:
            listen = listen if listen is not None else cfg.imap.listen
            listen_tls = listen_tls if listen_tls is not None else cfg.imap.listen_tls
            if settings is None:
                settings = ImapSettings(max_literal=cfg.smtp.max_message_bytes)
        mechs: list[SaslMechanism] = (
            list(mechanisms) if mechanisms is not None else [PlainMechanism(authenticator)]
        )
        self.ctx = ServerContext(
            storage,
            ssl_context,
            authenticator,
            mechanisms_by_name(mechs),
            settings or ImapSettings(),
            MessageCache(),
        )
        self._listen = listen
        self._listen_tls = listen_tls
        self._servers: list[asyncio.Server] = []
        self._sessions: dict[asyncio.Task[None], Connection] = {}
        self._conns: set[Connection] = set()

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def start(self) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        bound: list[tuple[str, int]] = []
        for spec, implicit in ((self._listen, False), (self._listen_tls, True)):
            if not spec:
                continue
            host, port = _split_hostport(spec)
            server = await loop.create_server(
                lambda implicit=implicit: Connection(self._connected(implicit)),  # type: ignore[misc]
                host,
                port,
                backlog=1024,
            )
            self._servers.append(server)
            for sock in server.sockets:
                name = sock.getsockname()
                bound.append((str(name[0]), int(name[1])))
        return bound

    def _connected(self, implicit: bool) -> object:
        def on_connect(conn: Connection) -> None:
            self._conns.add(conn)
            conn.on_lost = self._conns.discard
            session = Session(self.ctx, conn, implicit)
            task = asyncio.get_running_loop().create_task(session.run())
            self._sessions[task] = conn
            task.add_done_callback(self._forget)

        return on_connect

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._sessions.pop(task, None)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for _ in range(3):
            # connections accepted just before close get their connection_made now
            await asyncio.sleep(0)
            sessions = dict(self._sessions)
            for task in sessions:
                task.cancel()
            if sessions:
                await asyncio.gather(*sessions, return_exceptions=True)
            for conn in [*sessions.values(), *self._conns]:
                conn.abort()  # no transport left half-closed
            await asyncio.sleep(0)
