"""The SQLite ``Storage``: one database file ``data_dir/caducee.db`` (WAL) and ``blobs/``."""

from __future__ import annotations

from pathlib import Path

from caducee.storage.interfaces import (
    AccountStore,
    AuditStore,
    BlobStore,
    ChangeNotifier,
    MessageStore,
    QueueStore,
)
from caducee.storage.keyring import Keyring
from caducee.storage.notify import LocalNotifier
from caducee.storage.passwords import PasswordHasher
from caducee.storage.sql.accounts import SqlAccountStore
from caducee.storage.sql.audit import SqlAuditStore
from caducee.storage.sql.message_store import SqlMessageStore
from caducee.storage.sql.queue import SqlQueueStore
from caducee.storage.sqlite.blobs import SqliteBlobStore
from caducee.storage.sqlite.runner import SqliteRunner, migrate_sync

__all__ = ["DB_NAME", "SqliteStorage"]

DB_NAME = "caducee.db"


class SqliteStorage:
    """All stores of one node on SQLite."""

    engine = "sqlite"

    def __init__(
        self,
        data_dir: Path,
        keyring: Keyring,
        *,
        node: str = "",
        hasher: PasswordHasher | None = None,
        readers: int = 4,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir = data_dir
        self.runner = SqliteRunner(data_dir / DB_NAME, readers=readers)
        self.local = LocalNotifier()
        self.notifier: ChangeNotifier = self.local
        self.blob_store = SqliteBlobStore(self.runner, keyring, data_dir)
        self.blobs: BlobStore = self.blob_store
        self.accounts: AccountStore = SqlAccountStore(
            self.runner, hasher or PasswordHasher(), self.blob_store.remove_files
        )
        self.messages: MessageStore = SqlMessageStore(
            self.runner, self.notifier, self.blob_store.remove_files, node
        )
        self.queue: QueueStore = SqlQueueStore(self.runner, self.blob_store.remove_files, node)
        self.audit: AuditStore = SqlAuditStore(self.runner, node)

    async def migrate(self) -> None:
        await self.runner.exclusive(migrate_sync)

    async def close(self) -> None:
        await self.runner.close()
