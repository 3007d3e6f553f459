"""Fixtures of the directory tests: a small synthetic population, loaded into each engine."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from caducee.directory.importer import import_extract
from caducee.directory.store import DirectoryStore
from caducee.directory.synth import ExtraPerson, SynthResult, generate

PERSONS = 1500
EXTRA = (
    ExtraPerson("Lefèvre-Dupont", "Hélène", profession="10", rpps="10000000017",
                specialty="SM04", postal_code="69003", city="LYON 3E",
                mailbox="helene.lefevre-dupont@medecin.mssante.fr", civ_ex="DR"),
    ExtraPerson("de La Fontaine", "Jean-Marie", profession="60", rpps="10000000025",
                postal_code="20000", city="AJACCIO",
                mailbox="jean-marie.delafontaine@infirmier.mssante.fr"),
    ExtraPerson("N'Diaye", "Aïssatou", profession="21", rpps="10000000033",
                postal_code="97400", city="SAINT-DENIS", structure="Pharmacie du Lagon"),
)  # fmt: skip


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    return generate(tmp_path_factory.mktemp("synth"), PERSONS, seed=7, extra=EXTRA)


def _open(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> DirectoryStore:
    if kind == "sqlite":
        from caducee.directory.store_sqlite import SqliteDirectoryStore

        return SqliteDirectoryStore(tmp_path / "directory.db")
    from caducee.directory.store_postgres import PostgresDirectoryStore

    return PostgresDirectoryStore(request.getfixturevalue("pg_dsn"), max_size=4)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DirectoryStore]:
    store = _open(request.param, request, tmp_path)
    yield store
    store.close()


@pytest.fixture
def store(empty_store: DirectoryStore, synth: SynthResult) -> DirectoryStore:
    import_extract(empty_store, synth.ps_path)
    import_extract(empty_store, synth.mss_path)
    return empty_store


@pytest.fixture(scope="module")
def module_pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """Like ``pg_dsn`` but shared by a module's read-only tests (one import per module)."""
    import psycopg

    name = f"caducee_test_{secrets.token_hex(6)}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg_admin_dsn.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def ro_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, synth: SynthResult
) -> Iterator[DirectoryStore]:
    """A loaded store that tests must not modify."""
    store: DirectoryStore
    if request.param == "sqlite":
        from caducee.directory.store_sqlite import SqliteDirectoryStore

        store = SqliteDirectoryStore(tmp_path_factory.mktemp("ro") / "directory.db")
    else:
        from caducee.directory.store_postgres import PostgresDirectoryStore

        store = PostgresDirectoryStore(request.getfixturevalue("module_pg_dsn"), max_size=8)
    import_extract(store, synth.ps_path)
    import_extract(store, synth.mss_path)
    yield store
    store.close()


class ServerThread:
    """A real uvicorn server on 127.0.0.1, ephemeral port, in a thread."""

    def __init__(self, config: Any) -> None:
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        tick = threading.Event()
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            tick.wait(0.01)  # poll the condition, bounded by the deadline
        assert self.server.started, "server did not start"
        return self

    @property
    def port(self) -> int:
        sock = self.server.servers[0].sockets[0]
        return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
