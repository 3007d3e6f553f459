"""The PostgreSQL ``Storage``: several stateless nodes share one database."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from caducee.core.errors import StorageError
from caducee.storage.interfaces import (
    AccountStore,
    AuditStore,
    BlobStore,
    ChangeNotifier,
    MessageStore,
    QueueStore,
)
from caducee.storage.keyring import Keyring
from caducee.storage.passwords import PasswordHasher
from caducee.storage.postgres.blobs import PgBlobStore
from caducee.storage.postgres.notify import PgNotifier
from caducee.storage.postgres.runner import PgRunner, migrate
from caducee.storage.sql.accounts import SqlAccountStore
from caducee.storage.sql.audit import SqlAuditStore
from caducee.storage.sql.message_store import SqlMessageStore
from caducee.storage.sql.queue import SqlQueueStore

__all__ = ["PostgresStorage"]


class PostgresStorage:
    engine = "postgres"

    def __init__(
        self,
        dsn: str,
        keyring: Keyring,
        *,
        node: str = "",
        pool_size: int = 10,
        password: str | None = None,
        hasher: PasswordHasher | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"application_name": f"caducee {node}".strip()[:60]}
        if password is not None:
            kwargs["password"] = password
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            kwargs={**kwargs, "autocommit": True},
            open=False,
            name=f"caducee-{node}",
        )
        self.runner = PgRunner(self.pool)
        self.pg_notifier = PgNotifier(self.pool, dsn, kwargs)
        self.notifier: ChangeNotifier = self.pg_notifier
        self.blob_store = PgBlobStore(self.runner, keyring)
        self.blobs: BlobStore = self.blob_store
        freed = self.blob_store.remove_chunks
        self.accounts: AccountStore = SqlAccountStore(
            self.runner, hasher or PasswordHasher(), freed
        )
        self.messages: MessageStore = SqlMessageStore(self.runner, self.notifier, freed, node)
        self.queue: QueueStore = SqlQueueStore(self.runner, freed, node)
        self.audit: AuditStore = SqlAuditStore(self.runner, node)
        self._opened = False

    async def open(self, connect_timeout: float = 15.0) -> None:
        try:
            await self.pool.open(wait=True, timeout=connect_timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {type(exc).__name__}") from exc
        self._opened = True
        await self.pg_notifier.start()

    async def migrate(self) -> None:
        await migrate(self.pool)

    async def close(self) -> None:
        await self.pg_notifier.close()
        await self.pool.close()
