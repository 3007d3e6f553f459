"""OCSP checks (RFC 6960) against the authority's responder, as the sandbox serves it."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from caducee.config.model import TlsConfig
from caducee.sandbox.authority import AuthorityThread, LiveAuthority, issue_for
from caducee.testing.certs import TrustSpaceCA
from caducee.trust.authority import Authority
from caducee.trust.listeblanche import DomainEntry, ListeBlanche
from caducee.trust.ocsp import OcspChecker, verify_response
from caducee.trust.policy import TrustPolicy

PW = b"sandbox ocsp passphrase"
DOMAIN = "ch-exemple.mssante.test"


@pytest.fixture
async def responder(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    auth = Authority.init(tmp_path / "authority", PW, label="TEST", author="test")
    auth.add_operator(
        "ch",
        organisation="CH EXEMPLE",
        structure_id="1759990013",
        state="Paris (75)",
        domains=[DOMAIN],
        author="test",
    )
    certs = {
        name: issue_for(auth, "ch", "mx.ch-exemple.mssante.test", "server", tmp_path, name)
        for name in ("good", "revoked")
    }
    live = LiveAuthority.open_live(auth.directory, PW, None)
    server = AuthorityThread(live, {"https": None, "http": "127.0.0.1:0"})
    bound = await server.start()
    try:
        yield {
            "auth": auth,
            "certs": {k: v[0] for k, v in certs.items()},
            "chains": {k: v[1] for k, v in certs.items()},
            "keys": {k: v[2] for k, v in certs.items()},
            "issuer": auth.intermediate.cert,
            "url": f"http://127.0.0.1:{bound['http'][1]}/ocsp",
            "server": server,
            "dir": tmp_path,
        }
    finally:
        await server.stop()


def _revoke(r: dict[str, Any], name: str) -> None:
    """Revokes one certificate in another Authority instance (as the CLI would)."""
    from caducee.sandbox.authority import revoke_certificate

    other = Authority.open(r["auth"].directory, PW)
    revoke_certificate(other, r["certs"][name].serial_number, author="test", reason="test")


def test_good_then_revoked_after_a_change_by_another_process(responder: dict[str, Any]) -> None:
    checker = OcspChecker(responder["url"], timeout=5)
    cert, issuer = responder["certs"]["revoked"], responder["issuer"]
    assert checker.status(cert, issuer).status == "good"
    assert checker.problem(cert, issuer) is None
    _revoke(responder, "revoked")
    assert checker.status(cert, issuer).status == "good"  # cached until nextUpdate
    checker.clear()
    result = checker.status(cert, issuer)
    assert result.status == "revoked"
    problem = checker.problem(cert, issuer)
    assert problem is not None and "revoked" in problem
    assert checker.status(responder["certs"]["good"], issuer).status == "good"


def test_unknown_and_unreachable_follow_the_strictness_policy(
    responder: dict[str, Any], tmp_path: Path
) -> None:
    ca = TrustSpaceCA(tmp_path / "ca", responder["auth"].root, responder["auth"].intermediate)
    (tmp_path / "ca").mkdir()
    stray = ca.issue_server("mx.ch-exemple.mssante.test", "1759990013", "CH EXEMPLE", "Paris (75)")
    issuer = responder["issuer"]
    soft = OcspChecker(responder["url"], timeout=5)
    strict = OcspChecker(responder["url"], timeout=5, strict=True)
    assert soft.status(stray.cert, issuer).status == "error"  # the responder: unauthorized
    assert soft.problem(stray.cert, issuer) is None
    problem = strict.problem(stray.cert, issuer)
    assert problem is not None and "not confirmed by OCSP" in problem
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/ocsp"  # nothing listens there
    good = responder["certs"]["good"]
    assert OcspChecker(dead, timeout=2).problem(good, issuer) is None
    refused = OcspChecker(dead, timeout=2, strict=True).problem(good, issuer)
    assert refused is not None and "unreachable" in refused


async def test_answers_are_cached_until_next_update(responder: dict[str, Any]) -> None:
    now = dt.datetime.now(dt.UTC)
    clock = [now]
    checker = OcspChecker(responder["url"], timeout=2, clock=lambda: clock[0])
    good, issuer = responder["certs"]["good"], responder["issuer"]
    first = checker.status(good, issuer)
    assert first.status == "good" and first.expires > now
    await responder["server"].stop()  # the responder is gone: the cached answer stays
    assert checker.status(good, issuer).status == "good"
    clock[0] = first.expires + dt.timedelta(seconds=1)
    assert checker.status(good, issuer).status == "error"


def test_a_response_for_another_issuer_or_tampered_is_rejected(
    responder: dict[str, Any], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509 import ocsp

    good, issuer = responder["certs"]["good"], responder["issuer"]
    req = ocsp.OCSPRequestBuilder().add_certificate(good, issuer, hashes.SHA256()).build()
    der = responder["auth"].ocsp_response(req.public_bytes(Encoding.DER))
    now = dt.datetime.now(dt.UTC)
    assert verify_response(der, good, issuer, now).status == "good"
    other = TrustSpaceCA.create_other(tmp_path / "other").intermediate.cert
    assert verify_response(der, good, other, now).status == "error"
    tampered = der[:-8] + bytes(8)
    assert verify_response(tampered, good, issuer, now).status == "error"
    late = now + dt.timedelta(days=2)
    assert "stale" in verify_response(der, good, issuer, late).detail


def test_policy_refuses_a_certificate_revoked_by_ocsp_before_the_crl_says_so(
    responder: dict[str, Any],
) -> None:
    r = responder
    crl_dir = r["dir"] / "crl"
    crl_dir.mkdir()
    (crl_dir / "aci.crl").write_bytes((r["auth"].directory / "public" / "aci.crl").read_bytes())
    _revoke(r, "revoked")  # the node's CRL copy does not list it yet
    dn = str(r["auth"].state["certificates"][str(r["certs"]["good"].serial_number)]["subject_dn"])
    liste = ListeBlanche(
        dt.datetime.now(dt.UTC),
        [DomainEntry(DOMAIN, dn, "d", "c", "c", dt.datetime.now(dt.UTC))],
    )
    tls = TlsConfig(
        cert_file=r["chains"]["good"],
        key_file=r["keys"]["good"],
        ca_bundle=r["auth"].directory / "public" / "ca-bundle.pem",
        crl_dir=crl_dir,
        ocsp_url=r["url"],
    )
    policy = TrustPolicy(tls, liste)
    ok = policy.check_inbound(r["certs"]["good"].public_bytes(Encoding.DER), DOMAIN)
    assert ok.accepted, ok.reason
    bad = policy.check_outbound(r["certs"]["revoked"].public_bytes(Encoding.DER), DOMAIN)
    assert not bad.accepted and "OCSP" in bad.reason
    without = TrustPolicy(tls.model_copy(update={"ocsp_url": None}), liste)
    assert without.check_outbound(r["certs"]["revoked"].public_bytes(Encoding.DER), DOMAIN).accepted
