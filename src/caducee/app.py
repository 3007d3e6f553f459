"""The composition root: the one place that builds config -> storage -> trust -> servers -> worker.

``Operator(cfg)`` is one operator node. ``await op.start()`` opens the storage (running
migrations), loads the liste blanche, builds the trust policy, starts the relay-in (MX) and
submission servers, the outbound delivery worker, the IMAP server when that part is installed,
and the periodic refresh of the liste blanche and CRLs. ``await op.stop()`` undoes it in the
reverse order. Front-ends never build their own dependencies; they get them here.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from caducee.config.model import NodeConfig
from caducee.core.errors import CaduceeError
from caducee.smtp.receipts import delivery_receipt
from caducee.smtp.relay import DeliveredMessage
from caducee.smtp.worker import OutboundWorker, WorkerSettings
from caducee.storage import open_storage
from caducee.storage.interfaces import Storage
from caducee.trust.fetch import fetch_liste_blanche
from caducee.trust.listeblanche import ListeBlanche
from caducee.trust.policy import TrustPolicy

__all__ = ["Operator", "load_liste"]

log = logging.getLogger(__name__)


class _Server(Protocol):
    async def start(self) -> list[tuple[str, int]]: ...

    async def stop(self) -> None: ...


def load_liste(cfg: NodeConfig) -> ListeBlanche:
    """The liste blanche in force (``trust.fetch``): the file, or fetched and verified from its
    URL with the last good copy kept on failure; the CRLs of ``trust.crl_urls`` refreshed too.
    Blocking: call it off the event loop."""
    return fetch_liste_blanche(cfg)


def _optional(module: str, name: str) -> Any:
    """An attribute of a module that may not be installed yet (parts arrive independently)."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None
        raise
    return getattr(mod, name, None)


class Operator:
    """One operator node, built from its configuration."""

    def __init__(
        self,
        cfg: NodeConfig,
        *,
        worker_settings: WorkerSettings | None = None,
        storage_factory: Callable[[NodeConfig], Awaitable[Storage]] | None = None,
    ) -> None:
        self.cfg = cfg
        self._worker_settings = worker_settings
        self._storage_factory = storage_factory or open_storage
        self.storage: Storage | None = None
        self.policy: TrustPolicy | None = None
        self.worker: OutboundWorker | None = None
        self.servers: dict[str, _Server] = {}
        self.addresses: dict[str, list[tuple[str, int]]] = {}
        self._refresh: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.cfg.name

    async def start(self) -> None:
        """Starts everything; on failure, stops what was started and re-raises."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        cfg = self.cfg
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.storage = await self._storage_factory(cfg)
        self.policy = TrustPolicy(cfg.tls, await asyncio.to_thread(load_liste, cfg))
        self.worker = OutboundWorker(cfg, self.storage, self.policy, settings=self._worker_settings)
        from caducee.auth.mechanisms import external_mechanism, sasl_mechanisms
        from caducee.smtp.relay import RelayServer
        from caducee.smtp.submission import SubmissionServer

        # Submission and IMAP offer the same SASL mechanisms (from [auth]); EXTERNAL only on
        # connections that presented a verified client certificate (certificate_logins).
        mechs = sasl_mechanisms(cfg, self.storage.accounts)
        external = external_mechanism(cfg, self.storage.accounts)
        if external is not None:
            mechs.append(external)

        if cfg.smtp.relay_listen:
            self.servers["relay"] = RelayServer(
                cfg, self.storage, self.policy, on_delivered=self._receipt
            )
        if cfg.smtp.submission_listen:
            self.servers["submission"] = SubmissionServer(
                cfg,
                self.storage,
                self.policy,
                mechanisms=mechs,
                on_queued=self.worker.wake,
                on_delivered=self._receipt,
            )
        imap_cls = _optional("caducee.imap.server", "ImapServer")
        if imap_cls is not None and (cfg.imap.listen or cfg.imap.listen_tls):
            self.servers["imap"] = imap_cls(
                cfg,
                self.storage,
                self.policy.submission_server_context,  # asked per connection (CRL reloads)
                self.storage.accounts,
                mechanisms=mechs,
            )
        if cfg.web.listen:
            from caducee.web.server import WebServer

            policy = self.policy
            self.servers["web"] = WebServer(
                cfg,
                self.storage,
                is_listed=policy.is_listed,
                liste=lambda: policy.liste,
                wake=self.worker.wake,
            )
        await self.worker.start()
        for name, server in self.servers.items():
            self.addresses[name] = await server.start()
            log.info("%s: %s listening on %s", cfg.name, name, self.addresses[name])
        self._refresh = asyncio.create_task(self._refresh_loop(), name=f"refresh-{cfg.name}")

    def add_route(self, domain: str, hostport: str) -> None:
        """Routes ``domain`` to ``host:port`` (sandbox and tests, where ports are bound late)."""
        if self.worker is None:
            raise RuntimeError("operator not started")
        self.worker.router.set_route(domain, hostport)

    async def _receipt(self, msg: DeliveredMessage) -> None:
        """NOTIFY=SUCCESS on a local delivery: the "accusé de réception" (RFC 3461 §5.2.2)."""
        if self.storage is None:
            return
        await delivery_receipt(
            self.cfg,
            self.storage,
            queue_id=f"{self.cfg.name}:{msg.queue_id}",
            sender=msg.sender,
            recipients=[(r.address, r.notify, r.orcpt) for r in msg.recipients],
            blob=msg.blob,
            envid=msg.envid,
            on_queued=self.worker.wake if self.worker is not None else None,
        )

    async def stop(self) -> None:
        """Graceful: stop accepting, let the worker park its items, close the storage."""
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
            self._refresh = None
        for name in reversed(list(self.servers)):
            try:
                await self.servers[name].stop()
            except Exception:
                log.exception("%s: stopping %s failed", self.cfg.name, name)
        self.servers.clear()
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        if self.storage is not None:
            await self.storage.close()
            self.storage = None

    async def refresh_trust(self) -> None:
        """Reloads the liste blanche and the CRLs without a restart."""
        if self.policy is None:
            return
        liste = await asyncio.to_thread(load_liste, self.cfg)
        self.policy.replace_list(liste)
        self.policy.reload_crls()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.trust.refresh_seconds)
            try:
                await self.refresh_trust()
            except (CaduceeError, OSError) as exc:
                # Keep the last good list (mssante-notes §1.3: fetch regularly, cache).
                log.warning("%s: trust refresh failed, keeping the last list: %s", self.name, exc)
