"""Fixtures: a PKI per session, an IMAP server on SQLite per test (PostgreSQL on request)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from imap_harness import Pki, ServerThread, Transcript, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine_dsn(request: pytest.FixtureRequest) -> str | None:
    """Runs a test on both engines: None for SQLite, a fresh database's DSN for PostgreSQL."""
    return str(request.getfixturevalue("pg_dsn")) if request.param == "postgres" else None


@pytest.fixture
def server(tmp_path: Path, pki: Pki) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path, pki).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: ServerThread, pki: Pki) -> Iterator[Transcript]:
    """Connected over implicit TLS and logged in as alice."""
    t = Transcript.connect(server.tls_port, pki)
    t.readline()
    assert b"OK" in t.login()
    try:
        yield t
    finally:
        t.close()
