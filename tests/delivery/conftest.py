from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from caducee.testing.certs import IssuedCert, TrustSpaceCA

from .peer import Peer


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TrustSpaceCA:
    return TrustSpaceCA.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def our_cert(ca: TrustSpaceCA) -> IssuedCert:
    return ca.issue_server("mx.ch-a.mssante.test", "26750045200011", "CH A", "Paris (75)")


@pytest.fixture(scope="session")
def peer_cert(ca: TrustSpaceCA) -> IssuedCert:
    return ca.issue_server("mx.ch-b.mssante.test", "750712184", "CH B", "Paris (75)")


def client_context(ca: TrustSpaceCA, cert: IssuedCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca.ca_bundle))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(cert.chain_path), str(cert.key_path))
    return ctx


@pytest.fixture
async def peer(ca: TrustSpaceCA, peer_cert: IssuedCert, tmp_path: Path) -> AsyncIterator[Peer]:
    p = Peer(peer_cert.chain_path, peer_cert.key_path, ca.ca_bundle)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
