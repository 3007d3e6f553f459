"""The trust authority: CSR issuing, revocation, publication, OCSP, serving over real sockets."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from caducee.cli.main import main
from caducee.config.model import TrustConfig
from caducee.core.errors import InvalidInput, TrustError
from caducee.trust.authority import LIST_NAME, Authority, new_key_and_csr
from caducee.trust.authority.server import serve_authority
from caducee.trust.cms import verify_detached
from caducee.trust.fetch import fetch_liste_blanche
from caducee.trust.listeblanche import parse_liste_blanche

PW = b"correct horse battery staple"


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    a = Authority.init(tmp_path_factory.mktemp("authority"), PW, label="TEST", author="alice")
    a.add_operator(
        "ch-exemple",
        organisation="CH EXEMPLE",
        structure_id="1750000001",
        state="Paris (75)",
        domains=["ch-exemple.mssante.test"],
        author="alice",
    )
    return a


def _bundle(auth: Authority) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates((auth.directory / "public/ca-bundle.pem").read_bytes())


def test_keys_encrypted_at_rest_and_passphrase_checked(auth: Authority) -> None:
    for key in (auth.directory / "ca/private").iterdir():
        assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes(), key
    with pytest.raises(TrustError, match="passphrase"):
        Authority.open(auth.directory, b"wrong passphrase!!")
    assert Authority.open(auth.directory, PW).operators().keys() == {"ch-exemple"}


def test_issue_from_csr_lists_the_domain_and_publishes_signed_list(auth: Authority) -> None:
    _, csr = new_key_and_csr("mx.ch-exemple.mssante.test")
    cert = auth.issue_from_csr("ch-exemple", csr, "server", author="alice")
    cert.verify_directly_issued_by(auth.intermediate.cert)
    dn = "CN=mx.ch-exemple.mssante.test,OU=1750000001,O=CH EXEMPLE,ST=Paris (75),C=FR"
    assert cert.subject.rfc4514_string() == dn
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    pub = auth.directory / "public"
    data = (pub / LIST_NAME).read_bytes()
    assert parse_liste_blanche(data).dns_for("ch-exemple.mssante.test") == {dn}
    assert (pub / "checksum").read_text().split()[0] == hashlib.sha256(data).hexdigest()
    signer = verify_detached(data, (pub / f"{LIST_NAME}.p7s").read_bytes(), _bundle(auth))
    assert "publication" in signer.subject.rfc4514_string()
    events = [(e["author"], e["action"]) for e in auth.state["audit"]]
    assert ("alice", "certificate.issued") in events and ("alice", "operator.added") in events


def _csr(builder: x509.CertificateSigningRequestBuilder, key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.x.test")])
    return (
        builder.subject_name(name)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def test_bad_csrs_are_refused(auth: Authority) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505  # on purpose
    with pytest.raises(InvalidInput, match="weak key: RSA 1024"):
        auth.issue_from_csr(
            "ch-exemple", _csr(x509.CertificateSigningRequestBuilder(), weak), "server"
        )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_csr = x509.CertificateSigningRequestBuilder().add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True
    )
    with pytest.raises(InvalidInput, match="wrong key usage"):
        auth.issue_from_csr("ch-exemple", _csr(ca_csr, key), "server")
    eku_csr = x509.CertificateSigningRequestBuilder().add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
    )
    with pytest.raises(InvalidInput, match="wrong extended key usage"):
        auth.issue_from_csr("ch-exemple", _csr(eku_csr, key), "client")
    with pytest.raises(InvalidInput, match="not a PEM CSR"):
        auth.issue_from_csr("ch-exemple", b"garbage", "server")


def _ocsp_status(auth: Authority, cert: x509.Certificate) -> ocsp.OCSPCertStatus:
    req = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, auth.intermediate.cert, hashes.SHA256())
        .build()
    )
    resp = ocsp.load_der_ocsp_response(
        auth.ocsp_response(req.public_bytes(serialization.Encoding.DER))
    )
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    issuer_key = auth.intermediate.cert.public_key()
    assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
    issuer_key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    return resp.certificate_status


def test_revoke_delists_and_updates_crl_and_ocsp(tmp_path: Path) -> None:
    auth = Authority.init(tmp_path / "a", PW, author="bob")
    for name, dom in (("a", "a.mssante.test"), ("b", "b.mssante.test")):
        auth.add_operator(
            name,
            organisation=name.upper(),
            structure_id="3" + "1" * 14,
            state="Nord (59)",
            domains=[dom],
            author="bob",
        )
    ca_ = auth.issue_from_csr("a", new_key_and_csr("mx.a.test")[1], "server")
    cb = auth.issue_from_csr("b", new_key_and_csr("mx.b.test")[1], "server")
    assert _ocsp_status(auth, ca_) == ocsp.OCSPCertStatus.GOOD
    auth.revoke_operator("a", author="bob", reason="contract ended")
    liste = parse_liste_blanche((auth.directory / "public" / LIST_NAME).read_bytes())
    assert not liste.is_listed("a.mssante.test") and liste.is_listed("b.mssante.test")
    crl = x509.load_pem_x509_crl((auth.directory / "public/aci.crl").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(ca_.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(cb.serial_number) is None
    assert _ocsp_status(auth, ca_) == ocsp.OCSPCertStatus.REVOKED
    assert _ocsp_status(Authority.open(auth.directory, PW), cb) == ocsp.OCSPCertStatus.GOOD
    bad = ocsp.load_der_ocsp_response(auth.ocsp_response(b"junk"))
    assert bad.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


async def test_serve_over_real_sockets(auth: Authority, tmp_path: Path) -> None:
    _, csr = new_key_and_csr("mx2.ch-exemple.mssante.test")
    cert = auth.issue_from_csr("ch-exemple", csr, "server")
    bound: dict[str, tuple[str, int]] = {}
    ready = asyncio.Event()

    def on_ready(b: dict[str, tuple[str, int]]) -> None:
        bound.update(b)
        ready.set()

    task = asyncio.create_task(
        serve_authority(
            auth, PW, https_listen="127.0.0.1:0", http_listen="127.0.0.1:0", on_ready=on_ready
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 20)
        https = f"https://localhost:{bound['https'][1]}"
        http = f"http://127.0.0.1:{bound['http'][1]}"
        trust = TrustConfig(
            liste_blanche=f"{https}/{LIST_NAME}",
            checksum_url=f"{https}/checksum",
            signature_url=f"{https}/{LIST_NAME}.p7s",
            ca_bundle=auth.directory / "public/ca-bundle.pem",
            cache_file=tmp_path / "lb.xml",
        )
        liste = await asyncio.to_thread(fetch_liste_blanche, trust)
        assert liste.is_listed("ch-exemple.mssante.test")
        bundle = str(auth.directory / "public/ca-bundle.pem")
        args = ["trust", "inspect", "--json", "--ca-bundle", bundle, f"{https}/{LIST_NAME}"]
        assert await asyncio.to_thread(main, args) == 0
        async with httpx.AsyncClient() as client:
            crl = (await client.get(f"{http}/crl/aci.crl")).content
            assert x509.load_pem_x509_crl(crl).issuer == auth.intermediate.cert.subject
            req = (
                ocsp.OCSPRequestBuilder()
                .add_certificate(cert, auth.intermediate.cert, hashes.SHA256())
                .build()
            )
            resp = await client.post(
                f"{http}/ocsp",
                content=req.public_bytes(serialization.Encoding.DER),
                headers={"Content-Type": "application/ocsp-request"},
            )
            parsed = ocsp.load_der_ocsp_response(resp.content)
            assert parsed.certificate_status == ocsp.OCSPCertStatus.GOOD
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_cli_onboarding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CADUCEE_AUTHORITY_PASSPHRASE", PW.decode())
    d = str(tmp_path / "auth")
    assert main(["authority", "init", "--dir", d, "--author", "carol"]) == 0
    key, csr = new_key_and_csr("mx.labo.mssante.test")
    (tmp_path / "srv.csr").write_bytes(csr)
    args = [
        "authority",
        "operator",
        "add",
        "--dir",
        d,
        "--name",
        "labo",
        "--organisation",
        "LABO",
        "--structure-id",
        "31234567890123",
        "--state",
        "Rhône (69)",
        "--domain",
        "labo.mssante.test",
        "--csr",
        str(tmp_path / "srv.csr"),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    chain = x509.load_pem_x509_certificates((tmp_path / "out/labo-server.pem").read_bytes())
    assert chain[0].public_key() == key.public_key()
    capsys.readouterr()
    assert main(["authority", "operator", "list", "--dir", d, "--json"]) == 0
    ops = json.loads(capsys.readouterr().out)
    assert ops["labo"]["domains"] == ["labo.mssante.test"] and ops["labo"]["status"] == "active"
    assert main(["authority", "operator", "revoke", "--dir", d, "--name", "labo"]) == 0
    assert main(["authority", "operator", "revoke", "--dir", d, "--name", "labo"]) == 1


async def test_refresh_applies_a_revocation_within_one_refresh(tmp_path: Path) -> None:
    """Operator side against a served authority: list + CRL refresh, then a revocation."""
    from caducee.config.model import NodeConfig
    from caducee.testing.certs import write_private_key
    from caducee.trust.fetch import refresh_once
    from caducee.trust.listeblanche import load_liste_blanche
    from caducee.trust.policy import TrustPolicy

    auth = Authority.init(tmp_path / "auth", PW, author="dave")
    certs: dict[str, tuple[Path, Path]] = {}
    for name in ("us", "peer"):
        auth.add_operator(
            name,
            organisation=name.upper(),
            structure_id="3" + "2" * 14,
            state="Paris (75)",
            domains=[f"{name}.mssante.test"],
            author="dave",
        )
        key, csr = new_key_and_csr(f"mx.{name}.mssante.test")
        cert = auth.issue_from_csr(name, csr, "server")
        chain = tmp_path / f"{name}.pem"
        chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_private_key(key, tmp_path / f"{name}.key")
        certs[name] = (chain, tmp_path / f"{name}.key")
    peer_der = x509.load_pem_x509_certificate(certs["peer"][0].read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    bound: dict[str, tuple[str, int]] = {}
    ready = asyncio.Event()

    def on_ready(b: dict[str, tuple[str, int]]) -> None:
        bound.update(b)
        ready.set()

    task = asyncio.create_task(
        serve_authority(
            auth, PW, https_listen="127.0.0.1:0", http_listen="127.0.0.1:0", on_ready=on_ready
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 20)
        https = f"https://localhost:{bound['https'][1]}"
        bundle = auth.directory / "public/ca-bundle.pem"
        cfg = NodeConfig.model_validate(
            {
                "name": "us",
                "data_dir": str(tmp_path / "data"),
                "domains": ["us.mssante.test"],
                "crypto": {"keyring_file": str(tmp_path / "keyring")},
                "tls": {
                    "cert_file": str(certs["us"][0]),
                    "key_file": str(certs["us"][1]),
                    "ca_bundle": str(bundle),
                    "crl_dir": str(tmp_path / "crl"),
                },
                "trust": {
                    "liste_blanche": f"{https}/{LIST_NAME}",
                    "checksum_url": f"{https}/checksum",
                    "signature_url": f"{https}/{LIST_NAME}.p7s",
                    "ca_bundle": str(bundle),
                    "crl_urls": [f"http://127.0.0.1:{bound['http'][1]}/crl/aci.crl"],
                },
                "smtp": {"hostname": "mx.us.mssante.test"},
            }
        )
        (tmp_path / "crl").mkdir()
        outcome = await asyncio.to_thread(refresh_once, cfg)
        assert outcome.ok, outcome.summary()
        cached = tmp_path / "data/trust/liste-blanche.xml"
        policy = TrustPolicy(cfg.tls, load_liste_blanche(cached))
        assert policy.check_inbound(peer_der, "peer.mssante.test").accepted

        auth.revoke_operator("peer", author="dave", reason="test")  # the server serves public/
        outcome = await asyncio.to_thread(refresh_once, cfg)
        assert outcome.ok and "1 CRL(s) installed" in outcome.summary()
        policy.replace_list(load_liste_blanche(cached))
        policy.reload_crls()
        verdict = policy.check_inbound(peer_der, "peer.mssante.test")
        assert not verdict.accepted and verdict.reason == "client certificate revoked"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
