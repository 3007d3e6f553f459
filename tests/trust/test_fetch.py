"""Operator-side refresh over real HTTPS: checksum, CMS signature, last good copy, max age."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import logging
import os
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from caducee.config.model import TrustConfig
from caducee.core.errors import TrustError
from caducee.testing.certs import TrustSpaceCA
from caducee.trust.cms import sign_detached
from caducee.trust.fetch import fetch_liste_blanche, verify_checksum
from caducee.trust.listeblanche import DomainEntry, ListeBlanche, serialise_liste_blanche

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


class _Handler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def ca(tmp_path: Path) -> TrustSpaceCA:
    return TrustSpaceCA.create(tmp_path / "ca")


@pytest.fixture
def server(ca: TrustSpaceCA) -> Iterator[tuple[str, dict[str, bytes]]]:
    cert = ca.issue_server("127.0.0.1", dns_names=["127.0.0.1"])
    files: ClassVar[dict[str, bytes]] = {}
    handler = type("H", (_Handler,), {"files": files})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.chain_path, cert.key_path)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", files
    finally:
        httpd.shutdown()
        httpd.server_close()


def _list(n: int) -> bytes:
    entries = [
        DomainEntry(f"d{i}.mssante.test", f"CN=mx{i}.test,O=X,C=FR", updated=NOW) for i in range(n)
    ]
    return serialise_liste_blanche(ListeBlanche(NOW, entries))


def _publish(ca: TrustSpaceCA, files: dict[str, bytes], data: bytes) -> None:
    signer = ca.issue_server("authority.sandbox.test")
    files["/lb.xml"] = data
    files["/checksum"] = hashlib.sha256(data).hexdigest().encode() + b"  lb.xml\n"
    files["/lb.xml.p7s"] = sign_detached(data, signer.cert, signer.key)


def _trust(base: str, ca: TrustSpaceCA, tmp_path: Path, **kw: object) -> TrustConfig:
    return TrustConfig(
        liste_blanche=f"{base}/lb.xml",
        checksum_url=f"{base}/checksum",
        signature_url=f"{base}/lb.xml.p7s",
        ca_bundle=ca.ca_bundle,
        cache_file=tmp_path / "cache" / "lb.xml",
        **kw,  # type: ignore[arg-type]
    )


def test_fetch_verifies_and_keeps_last_good_copy(
    ca: TrustSpaceCA,
    server: tuple[str, dict[str, bytes]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, files = server
    _publish(ca, files, _list(3))
    trust = _trust(base, ca, tmp_path)
    liste = fetch_liste_blanche(trust)
    assert len(liste.entries) == 3
    assert (tmp_path / "cache" / "lb.xml").read_bytes() == files["/lb.xml"]

    # a tampered list (checksum and signature of the old one) never replaces the good copy
    files["/lb.xml"] = _list(1)
    with caplog.at_level(logging.WARNING):
        kept = fetch_liste_blanche(trust)
    assert len(kept.entries) == 3
    assert "checksum mismatch" in caplog.text
    assert "last good liste blanche" in caplog.text


def test_wrong_signature_is_refused(
    ca: TrustSpaceCA, server: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    base, files = server
    data = _list(2)
    _publish(ca, files, data)
    other = TrustSpaceCA.create_other(tmp_path / "other").issue_server("evil.test")
    files["/lb.xml.p7s"] = sign_detached(data, other.cert, other.key)
    with pytest.raises(TrustError, match="no last good copy"):
        fetch_liste_blanche(_trust(base, ca, tmp_path))
    assert not (tmp_path / "cache" / "lb.xml").exists()


def test_truncated_list_is_refused_and_last_good_stays(
    ca: TrustSpaceCA, server: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    base, files = server
    _publish(ca, files, _list(4))
    trust = _trust(base, ca, tmp_path)
    fetch_liste_blanche(trust)
    cut = _list(5)[:-60]
    _publish(ca, files, cut)  # correctly checksummed and signed, but cut inside an entry
    assert len(fetch_liste_blanche(trust).entries) == 4


def test_unreachable_authority_and_max_age(
    ca: TrustSpaceCA, server: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    base, files = server
    _publish(ca, files, _list(2))
    trust = _trust(base, ca, tmp_path, max_age_seconds=3600)
    fetch_liste_blanche(trust)
    files.clear()  # authority answers 404 from now on
    assert len(fetch_liste_blanche(trust).entries) == 2
    cache = tmp_path / "cache" / "lb.xml"
    old = cache.stat().st_mtime - 7200
    os.utime(cache, (old, old))
    with pytest.raises(TrustError, match=r"beyond trust\.max_age_seconds"):
        fetch_liste_blanche(trust)


def test_plain_http_list_url_is_refused(ca: TrustSpaceCA, tmp_path: Path) -> None:
    trust = TrustConfig(liste_blanche="http://127.0.0.1:1/lb.xml", cache_file=tmp_path / "x.xml")
    with pytest.raises(TrustError, match="no last good copy"):
        fetch_liste_blanche(trust)


def test_checksum_file_forms() -> None:
    data = b"abc"
    digest = hashlib.sha256(data).hexdigest()
    verify_checksum(data, digest.encode())
    verify_checksum(data, f"{digest.upper()}  listeblanchemssante.xml\n".encode())
    with pytest.raises(TrustError, match="mismatch"):
        verify_checksum(b"abd", digest.encode())
    with pytest.raises(TrustError, match="no SHA-256"):
        verify_checksum(data, b"nothing here")
