"""Storage of an operator node, behind the typed interfaces of ``storage.interfaces``.

Two engines: SQLite (embedded default: WAL, one writer thread with group commit, blobs inline
or in files) and PostgreSQL (several stateless nodes share one database: pooled psycopg 3
connections, ``FOR UPDATE SKIP LOCKED`` queue claims, LISTEN/NOTIFY change fan-out). Blobs are
AES-256-GCM encrypted on both (``storage.blobcrypto``), keys in ``storage.keyring``.
"""

from __future__ import annotations

from pathlib import Path

from caducee.config.model import NodeConfig, read_secret
from caducee.storage.interfaces import Storage
from caducee.storage.keyring import load_keyring
from caducee.storage.passwords import PasswordHasher

__all__ = ["open_postgres", "open_sqlite", "open_storage"]


async def open_sqlite(
    data_dir: Path,
    keyring: Path,
    *,
    node: str = "",
    migrate: bool = True,
    hasher: PasswordHasher | None = None,
) -> Storage:
    """Opens (creating if needed) the SQLite storage under ``data_dir``; runs migrations."""
    from caducee.storage.sqlite.engine import SqliteStorage

    storage = SqliteStorage(data_dir, load_keyring(keyring), node=node, hasher=hasher)
    if migrate:
        try:
            await storage.migrate()
        except BaseException:
            await storage.close()
            raise
    return storage


async def open_postgres(
    dsn: str,
    keyring: Path,
    *,
    node: str = "",
    pool_size: int = 10,
    password: str | None = None,
    migrate: bool = True,
    hasher: PasswordHasher | None = None,
    connect_timeout: float = 15.0,
) -> Storage:
    """Connects to PostgreSQL (psycopg 3 async pool); runs migrations (safe with several nodes).
    Raises ``StorageError`` when no connection is made within ``connect_timeout`` seconds."""
    from caducee.storage.postgres.engine import PostgresStorage

    storage = PostgresStorage(
        dsn, load_keyring(keyring), node=node, pool_size=pool_size, password=password,
        hasher=hasher,
    )  # fmt: skip
    try:
        await storage.open(connect_timeout)
        if migrate:
            await storage.migrate()
    except BaseException:
        await storage.close()
        raise
    return storage


async def open_storage(cfg: NodeConfig) -> Storage:
    """The node's storage as its configuration says; migrations applied."""
    keyring = cfg.crypto.keyring_file
    if cfg.storage.engine == "postgres":
        assert cfg.storage.dsn is not None  # noqa: S101 - checked by the config model
        password = read_secret(cfg.storage.dsn_password_file, cfg.storage.dsn_password_env)
        return await open_postgres(
            cfg.storage.dsn,
            keyring,
            node=cfg.name,
            pool_size=cfg.storage.pool_size,
            password=password,
        )
    return await open_sqlite(cfg.data_dir, keyring, node=cfg.name)
