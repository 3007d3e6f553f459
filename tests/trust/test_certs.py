"""The certificate factory (caducee.testing.certs) used by every TLS test."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from caducee.testing.certs import TrustSpaceCA


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TrustSpaceCA:
    return TrustSpaceCA.create(tmp_path_factory.mktemp("ca"))


def test_hierarchy_is_shaped_like_igc_sante(ca: TrustSpaceCA) -> None:
    root_cn = ca.root.cert.subject.rfc4514_string()
    inter_cn = ca.intermediate.cert.subject.rfc4514_string()
    assert "CN=AC RACINE SANDBOX IGC-SANTE ELEMENTAIRE" in root_cn
    assert "CN=AC SANDBOX IGC-SANTE ELEMENTAIRE ORGANISATIONS" in inter_cn
    assert ca.intermediate.cert.issuer == ca.root.cert.subject
    ca.intermediate.cert.verify_directly_issued_by(ca.root.cert)
    bundle = x509.load_pem_x509_certificates(ca.ca_bundle.read_bytes())
    assert [c.subject for c in bundle] == [ca.root.cert.subject, ca.intermediate.cert.subject]


def test_server_cert_subject_in_liste_blanche_form(ca: TrustSpaceCA) -> None:
    cert = ca.issue_server("mx.ch-exemple.mssante.test", "1750000000", "CH EXEMPLE", "Paris (75)")
    assert (
        cert.subject_dn
        == "CN=mx.ch-exemple.mssante.test,OU=1750000000,O=CH EXEMPLE,ST=Paris (75),C=FR"
    )
    # same string as cryptography's own RFC 4514 rendering for this plain subject
    assert cert.cert.subject.rfc4514_string() == cert.subject_dn
    eku = cert.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert isinstance(cert.key, ec.EllipticCurvePrivateKey)
    cert.cert.verify_directly_issued_by(ca.intermediate.cert)
    chain = x509.load_pem_x509_certificates(cert.chain_path.read_bytes())
    assert chain == [cert.cert, ca.intermediate.cert]
    assert stat.S_IMODE(cert.key_path.stat().st_mode) == 0o600


def test_client_cert_is_client_auth_only_and_rsa_optional(ca: TrustSpaceCA) -> None:
    cert = ca.issue_client("lps.cabinet.test", key_type="rsa")
    eku = cert.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert isinstance(cert.key, rsa.RSAPrivateKey)
    assert cert.key.key_size == 2048


def test_expired_and_not_yet_valid(ca: TrustSpaceCA) -> None:
    now = dt.datetime.now(dt.UTC)
    old = ca.issue_server("old.test", expired=True)
    assert old.cert.not_valid_after_utc < now
    future = ca.issue_server("future.test", not_yet_valid=True)
    assert future.cert.not_valid_before_utc > now


def test_revoke_and_crl_pem_and_der(ca: TrustSpaceCA, tmp_path: Path) -> None:
    victim = ca.issue_server("victim.test")
    other = ca.issue_server("other.test")
    ca.revoke(victim)
    pem = x509.load_pem_x509_crl(ca.write_crl(tmp_path / "ac.crl.pem").read_bytes())
    der = x509.load_der_x509_crl(ca.write_crl(tmp_path / "ac.crl", der=True).read_bytes())
    for crl in (pem, der):
        assert crl.issuer == ca.intermediate.cert.subject
        assert crl.is_signature_valid(ca.intermediate.key.public_key())  # type: ignore[arg-type]
        assert crl.get_revoked_certificate_by_serial_number(victim.serial) is not None
        assert crl.get_revoked_certificate_by_serial_number(other.serial) is None


def test_other_ca_is_unrelated(ca: TrustSpaceCA, tmp_path: Path) -> None:
    other = TrustSpaceCA.create_other(tmp_path / "other")
    assert other.root.cert.subject != ca.root.cert.subject
    cert = other.issue_server("mx.intrus.test")
    with pytest.raises(ValueError):
        cert.cert.verify_directly_issued_by(ca.intermediate.cert)


def test_real_tls_handshake_with_factory_certs(ca: TrustSpaceCA) -> None:
    server_cert = ca.issue_server("mx.a.test")
    client_cert = ca.issue_server("mx.b.test")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(server_cert.chain_path, server_cert.key_path)
    sctx.load_verify_locations(ca.ca_bundle)
    sctx.verify_mode = ssl.CERT_REQUIRED
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(ca.ca_bundle)
    cctx.load_cert_chain(client_cert.chain_path, client_cert.key_path)
    cctx.check_hostname = False
    seen: list[bytes | None] = []
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        port = lsock.getsockname()[1]

        def serve() -> None:
            conn, _ = lsock.accept()
            with sctx.wrap_socket(conn, server_side=True) as tls:
                seen.append(tls.getpeercert(binary_form=True))
                tls.sendall(b"ok")

        t = threading.Thread(target=serve)
        t.start()
        with socket.create_connection(("127.0.0.1", port)) as raw, cctx.wrap_socket(raw) as tls:
            assert tls.recv(2) == b"ok"
            peer = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
        t.join(10)
    assert peer == server_cert.cert
    assert seen == [client_cert.der]
