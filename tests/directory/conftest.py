"""Fixtures of the directory tests: a small synthetic population, loaded into each engine."""

from __future__ import annotations

import datetime
import ipaddress
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
    ExtraPerson(
        "Lefèvre-Dupont",
        "Hélène",
        profession="10",
        rpps="10000000017",
        specialty="SM04",
        postal_code="69003",
        city="LYON 3E",
        mailbox="helene.lefevre-dupont@medecin.mssante.fr",
        civ_ex="DR",
    ),
    ExtraPerson(
        "de La Fontaine",
        "Jean-Marie",
        profession="60",
        rpps="10000000025",
        postal_code="20000",
        city="AJACCIO",
        mailbox="jean-marie.delafontaine@infirmier.mssante.fr",
    ),
    ExtraPerson(
        "N'Diaye",
        "Aïssatou",
        profession="21",
        rpps="10000000033",
        postal_code="97400",
        city="SAINT-DENIS",
        structure="Pharmacie du Lagon",
    ),
)


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
def module_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, synth: SynthResult
) -> Iterator[DirectoryStore]:
    """A loaded store shared by a module: its tests must not depend on each other's changes."""
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


@pytest.fixture(scope="session")
def server_thread() -> type[ServerThread]:
    """``with server_thread(uvicorn_config(...)) as srv: srv.port``."""
    return ServerThread


class Pki:
    """A throwaway CA, a server certificate for 127.0.0.1 and client certificates."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca_key, self.ca_cert = self._make("Caducee Test CA", None, ca=True)
        self.ca_path = self._write("ca", self.ca_key, self.ca_cert)[0]

    def _make(self, cn: str, issuer: Any, *, ca: bool = False, server: bool = False) -> Any:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Caducee Tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )
        now = datetime.datetime.now(datetime.UTC)
        issuer_key, issuer_cert = issuer if issuer else (key, None)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer_cert.subject if issuer_cert else name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        elif not ca:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False
            )
        cert = builder.sign(issuer_key, hashes.SHA256())
        return key, cert

    def _write(self, stem: str, key: Any, cert: Any) -> tuple[Path, Path]:
        from cryptography.hazmat.primitives import serialization

        cert_path, key_path = self.root / f"{stem}.crt", self.root / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path

    def issue(
        self, cn: str, *, server: bool = False, other_ca: bool = False
    ) -> tuple[Path, Path, str]:
        issuer = (self.ca_key, self.ca_cert)
        if other_ca:
            issuer = self._make("Rogue CA", None, ca=True)
        key, cert = self._make(cn, issuer, server=server)
        cert_path, key_path = self._write(cn.replace(" ", "_"), key, cert)
        return cert_path, key_path, cert.subject.rfc4514_string()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))
