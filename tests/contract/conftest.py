"""The storage contract suite runs every test on both engines (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from caducee.core.model import Mailbox, MailboxType
from caducee.storage import open_postgres, open_sqlite
from caducee.storage.interfaces import Storage
from caducee.storage.keyring import create_keyring

Opener = Callable[[], Awaitable[Storage]]


@pytest.fixture
def keyring(tmp_path: Path) -> Path:
    path = tmp_path / "keyring"
    create_keyring(path)
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def opener(engine: str, request: pytest.FixtureRequest, tmp_path: Path, keyring: Path) -> Opener:
    """Opens (again) the same store: the same data directory or the same database."""
    if engine == "postgres":
        dsn: str = request.getfixturevalue("pg_dsn")

        async def open_pg() -> Storage:
            return await open_postgres(dsn, keyring, node="test", pool_size=4)

        return open_pg

    async def open_lite() -> Storage:
        return await open_sqlite(tmp_path / "data", keyring, node="test")

    return open_lite


@pytest.fixture
async def storage(opener: Opener) -> AsyncIterator[Storage]:
    st = await opener()
    try:
        yield st
    finally:
        await st.close()


@pytest.fixture
async def mailbox(storage: Storage) -> Mailbox:
    await storage.accounts.create_account("alice", None)
    return await storage.accounts.create_mailbox(
        "Alice.Martin@ch-exemple.mssante.test", MailboxType.PER, "810001234567", owner="alice"
    )
