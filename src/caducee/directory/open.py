"""Opening the directory store: a SQLite file (embedded default) or a PostgreSQL DSN."""

from __future__ import annotations

import os
from pathlib import Path

from caducee.directory.store import DirectoryStore

__all__ = ["DEFAULT_DB", "open_store"]

DEFAULT_DB = "directory.db"


def open_store(db: str | Path | None = None, dsn: str | None = None) -> DirectoryStore:
    """PostgreSQL when ``dsn`` (or ``CADUCEE_DIRECTORY_DSN``) is set, else SQLite at ``db``
    (or ``CADUCEE_DIRECTORY_DB``, default ``directory.db``)."""
    dsn = dsn or os.environ.get("CADUCEE_DIRECTORY_DSN")
    if dsn:
        from caducee.directory.store_postgres import PostgresDirectoryStore

        return PostgresDirectoryStore(dsn)
    from caducee.directory.store_sqlite import SqliteDirectoryStore

    return SqliteDirectoryStore(db or os.environ.get("CADUCEE_DIRECTORY_DB", DEFAULT_DB))
