"""TrustPolicy over real TLS handshakes on loopback sockets, one test per trust failure.

Inbound (relay-in): no client certificate, expired, not yet valid, revoked (CRL), other CA,
DN not listed, CN matching but DN different, domain not listed. Outbound: the same bad
certificates presented by the peer we connect to.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from caducee.config.model import TlsConfig
from caducee.core.errors import TrustError
from caducee.testing.certs import IssuedCert, TrustSpaceCA
from caducee.trust.listeblanche import DomainEntry, ListeBlanche
from caducee.trust.policy import TrustPolicy, describe_handshake_error

NOW = dt.datetime.now(dt.UTC)


@dataclass
class Space:
    ca: TrustSpaceCA
    other: TrustSpaceCA
    crl_dir: Path
    us: IssuedCert  # our operator
    peer: IssuedCert  # a listed peer operator
    liste: ListeBlanche

    def policy(self, *, crl_dir: Path | str | None = "default", **kw: object) -> TrustPolicy:
        tls = TlsConfig(
            cert_file=self.us.chain_path,
            key_file=self.us.key_path,
            ca_bundle=self.ca.ca_bundle,
            crl_dir=self.crl_dir if crl_dir == "default" else crl_dir,  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )
        return TrustPolicy(tls, self.liste)


def entry(domain: str, dn: str) -> DomainEntry:
    return DomainEntry(name=domain, dn=dn, description="test", updated=NOW)


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Space:
    base = tmp_path_factory.mktemp("space")
    ca = TrustSpaceCA.create(base / "ca")
    other = TrustSpaceCA.create_other(base / "other")
    us = ca.issue_server("mx.ch-exemple.mssante.test", "1750000001", "CH EXEMPLE", "Paris (75)")
    peer = ca.issue_server(
        "mx.medecin.mssante.test", "11122233300011", "MEDECINS SANDBOX", "Rhône (69)"
    )
    crl_dir = base / "crl"
    ca.write_crl(crl_dir / "aci.crl")
    liste = ListeBlanche(
        NOW,
        [
            entry("ch-exemple.mssante.test", us.subject_dn),
            entry("medecin.mssante.test", peer.subject_dn),
            entry("infirmier.mssante.test", peer.subject_dn),
        ],
    )
    return Space(ca, other, crl_dir, us, peer, liste)


@dataclass
class Outcome:
    server_error: BaseException | None = None
    client_error: BaseException | None = None
    peer_der_seen_by_server: bytes | None = None
    peer_der_seen_by_client: bytes | None = None


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> Outcome:
    """One TLS connection over loopback; the server writes b"ok" after its handshake."""
    out = Outcome()
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        port = lsock.getsockname()[1]

        def serve() -> None:
            conn, _ = lsock.accept()
            conn.settimeout(10)
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    out.peer_der_seen_by_server = tls.getpeercert(binary_form=True)
                    tls.sendall(b"ok")
                    tls.recv(1)
            except (ssl.SSLError, OSError) as exc:
                out.server_error = exc
            finally:
                conn.close()

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client_ctx.wrap_socket(raw) as tls,
            ):
                out.peer_der_seen_by_client = tls.getpeercert(binary_form=True)
                if tls.recv(2) != b"ok":
                    raise ConnectionResetError("closed before ok")
                tls.sendall(b".")
        except (ssl.SSLError, OSError) as exc:
            out.client_error = exc
        thread.join(10)
        assert not thread.is_alive()
    return out


def client_ctx_with(cert: IssuedCert | None, ca: TrustSpaceCA) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(ca.ca_bundle)
    if cert is not None:
        ctx.load_cert_chain(cert.chain_path, cert.key_path)
    return ctx


def server_ctx_with(cert: IssuedCert) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.chain_path, cert.key_path)
    return ctx


# -- inbound ------------------------------------------------------------------------------


def test_listed_peer_is_accepted(space: Space) -> None:
    policy = space.policy()
    out = handshake(policy.relay_server_context(), client_ctx_with(space.peer, space.ca))
    assert out.server_error is None and out.client_error is None
    assert out.peer_der_seen_by_server == space.peer.der
    verdict = policy.check_inbound(out.peer_der_seen_by_server, "medecin.mssante.test")
    assert verdict.accepted, verdict
    assert verdict.subject_dn == space.peer.subject_dn
    assert policy.check_inbound(space.peer.der, "INFIRMIER.mssante.test").accepted


def test_no_client_certificate_passes_tls_and_is_refused_at_smtp_level(space: Space) -> None:
    policy = space.policy()
    out = handshake(policy.relay_server_context(), client_ctx_with(None, space.ca))
    assert out.server_error is None and out.client_error is None
    assert out.peer_der_seen_by_server is None
    verdict = policy.check_inbound(out.peer_der_seen_by_server, "medecin.mssante.test")
    assert (verdict.accepted, verdict.code, verdict.enhanced) == (False, 530, "5.7.0")
    assert "client certificate required" in verdict.reason


@pytest.mark.parametrize(
    ("kind", "server_says", "client_says"),
    [
        ("expired", "peer certificate expired", "expired"),
        ("not_yet_valid", "peer certificate not yet valid", "peer refused our certificate"),
        ("revoked", "peer certificate revoked", "revoked"),
        ("other_ca", "not issued by a trust-space CA", "unknown CA"),
    ],
)
def test_bad_client_certificate_fails_the_handshake(
    space: Space, tmp_path: Path, kind: str, server_says: str, client_says: str
) -> None:
    dn = dict(
        cn="mx.medecin.mssante.test", ou="11122233300011", o="MEDECINS SANDBOX", st="Rhône (69)"
    )
    ca = TrustSpaceCA.create(tmp_path / "ca")  # own CA so revocation does not leak
    crl_dir = tmp_path / "crl"
    us = ca.issue_server("mx.ch-exemple.mssante.test")
    if kind == "expired":
        bad = ca.issue_client(**dn, expired=True)  # type: ignore[arg-type]
    elif kind == "not_yet_valid":
        bad = ca.issue_client(**dn, not_yet_valid=True)  # type: ignore[arg-type]
    elif kind == "revoked":
        bad = ca.issue_client(**dn)  # type: ignore[arg-type]
        ca.revoke(bad)
    else:
        bad = space.other.issue_client(**dn)  # type: ignore[arg-type]
    ca.write_crl(crl_dir / "aci.crl")
    liste = ListeBlanche(NOW, [entry("medecin.mssante.test", bad.subject_dn)])
    policy = TrustPolicy(
        TlsConfig(
            cert_file=us.chain_path, key_file=us.key_path, ca_bundle=ca.ca_bundle, crl_dir=crl_dir
        ),
        liste,
    )
    out = handshake(policy.relay_server_context(), client_ctx_with(bad, ca))
    assert isinstance(out.server_error, ssl.SSLError), out
    assert server_says in describe_handshake_error(out.server_error)
    assert out.peer_der_seen_by_server is None
    # the client learns it through a TLS alert
    assert isinstance(out.client_error, ssl.SSLError | ConnectionError), out
    if isinstance(out.client_error, ssl.SSLError):
        assert client_says in describe_handshake_error(out.client_error)
    # defence in depth: the same certificate is refused by the Python check too
    verdict = policy.check_inbound(bad.der, "medecin.mssante.test")
    assert not verdict.accepted
    assert verdict.code == 550 and verdict.enhanced == "5.7.1"
    expected = {
        "expired": "certificate expired",
        "not_yet_valid": "certificate not yet valid",
        "revoked": "certificate revoked",
        "other_ca": "not issued by a trust-space CA",
    }[kind]
    assert expected in verdict.reason


def test_dn_not_listed(space: Space) -> None:
    policy = space.policy()
    stranger = space.ca.issue_client("mx.inconnu.test", "99999999900000", "INCONNU", "Nord (59)")
    out = handshake(policy.relay_server_context(), client_ctx_with(stranger, space.ca))
    assert out.server_error is None
    verdict = policy.check_inbound(out.peer_der_seen_by_server, "medecin.mssante.test")
    assert not verdict.accepted
    assert verdict.reason == "certificate DN not listed for domain medecin.mssante.test"
    assert (verdict.code, verdict.enhanced) == (550, "5.7.1")
    assert verdict.subject_dn == stranger.subject_dn


def test_cn_matching_but_dn_different(space: Space) -> None:
    policy = space.policy()
    # same CN as the listed peer, another organisation
    twin = space.ca.issue_client(
        "mx.medecin.mssante.test", "11122233300011", "USURPATEUR", "Rhône (69)"
    )
    out = handshake(policy.relay_server_context(), client_ctx_with(twin, space.ca))
    assert out.server_error is None
    verdict = policy.check_inbound(out.peer_der_seen_by_server, "medecin.mssante.test")
    assert not verdict.accepted
    assert verdict.reason == (
        "certificate CN mx.medecin.mssante.test is listed for domain medecin.mssante.test"
        " but with a different DN"
    )


def test_domain_not_listed(space: Space) -> None:
    policy = space.policy()
    verdict = policy.check_inbound(space.peer.der, "pas-dans-la-liste.test")
    assert not verdict.accepted
    assert verdict.reason == "domain pas-dans-la-liste.test is not in the liste blanche"
    # a listed domain of ANOTHER operator is refused for this peer
    verdict = policy.check_inbound(space.peer.der, "ch-exemple.mssante.test")
    assert not verdict.accepted and "not listed for domain" in verdict.reason


def test_null_sender_from_listed_operator(space: Space) -> None:
    policy = space.policy()
    assert policy.check_inbound(space.peer.der, "").accepted
    stranger = space.ca.issue_client("mx.x.test", "1", "X", "Paris (75)")
    assert not policy.check_inbound(stranger.der, "").accepted


def test_tls_below_1_2_is_refused(space: Space) -> None:
    policy = space.policy()
    old = client_ctx_with(space.peer, space.ca)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    out = handshake(policy.relay_server_context(), old)
    assert out.server_error is not None and out.client_error is not None
    assert "TLS version refused" in describe_handshake_error(out.server_error)


def test_min_version_tls13_from_config(space: Space) -> None:
    policy = space.policy(min_version="TLSv1.3")
    tls12 = client_ctx_with(space.peer, space.ca)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    out = handshake(policy.relay_server_context(), tls12)
    assert "TLS version refused" in describe_handshake_error(out.server_error or Exception())
    ok = handshake(policy.relay_server_context(), client_ctx_with(space.peer, space.ca))
    assert ok.server_error is None


def test_submission_context_requests_client_certificate_optionally(space: Space) -> None:
    """Submission and IMAP (SASL EXTERNAL): a verified certificate reaches the session, none
    is fine, one outside the trust space fails the handshake."""
    policy = space.policy()
    ctx = policy.submission_server_context()
    assert ctx is not policy.relay_server_context()
    out = handshake(ctx, client_ctx_with(space.peer, space.ca))
    assert out.server_error is None and out.client_error is None
    assert out.peer_der_seen_by_server == space.peer.der
    out = handshake(ctx, client_ctx_with(None, space.ca))
    assert out.server_error is None and out.client_error is None
    assert out.peer_der_seen_by_server is None
    bad = space.other.issue_client("automate.labo.test")
    out = handshake(ctx, client_ctx_with(bad, space.ca))
    assert out.server_error is not None


def test_submission_context_checks_client_certificate_crls(tmp_path: Path) -> None:
    ca = TrustSpaceCA.create(tmp_path / "ca")
    us = ca.issue_server("mx.a.test")
    app = ca.issue_client("automate.labo.test")
    crl_dir = tmp_path / "crl"
    ca.write_crl(crl_dir / "aci.crl")
    policy = TrustPolicy(
        TlsConfig(
            cert_file=us.chain_path, key_file=us.key_path, ca_bundle=ca.ca_bundle, crl_dir=crl_dir
        ),
        ListeBlanche(NOW, []),
    )
    ok = handshake(policy.submission_server_context(), client_ctx_with(app, ca))
    assert ok.server_error is None and ok.peer_der_seen_by_server == app.der
    ca.revoke(app)
    ca.write_crl(crl_dir / "aci.crl")
    policy.reload_crls()
    out = handshake(policy.submission_server_context(), client_ctx_with(app, ca))
    assert describe_handshake_error(out.server_error or Exception()) == "peer certificate revoked"


# -- CRLs: reload, DER, fail closed ---------------------------------------------------------


def test_revocation_after_start_applies_on_reload_with_der_crl(tmp_path: Path) -> None:
    ca = TrustSpaceCA.create(tmp_path / "ca")
    us = ca.issue_server("mx.a.test")
    peer = ca.issue_server("mx.b.test")
    crl_dir = tmp_path / "crl"
    ca.write_crl(crl_dir / "aci.crl", der=True)
    liste = ListeBlanche(NOW, [entry("b.test", peer.subject_dn)])
    policy = TrustPolicy(
        TlsConfig(
            cert_file=us.chain_path, key_file=us.key_path, ca_bundle=ca.ca_bundle, crl_dir=crl_dir
        ),
        liste,
    )
    assert handshake(policy.relay_server_context(), client_ctx_with(peer, ca)).server_error is None
    assert policy.check_inbound(peer.der, "b.test").accepted
    ca.revoke(peer)
    ca.write_crl(crl_dir / "aci.crl", der=True)
    old_ctx = policy.relay_server_context()
    policy.reload_crls()
    assert policy.relay_server_context() is not old_ctx
    out = handshake(policy.relay_server_context(), client_ctx_with(peer, ca))
    assert describe_handshake_error(out.server_error or Exception()) == "peer certificate revoked"
    assert policy.check_inbound(peer.der, "b.test").reason == "client certificate revoked"


def test_no_crl_for_issuer_fails_closed(tmp_path: Path) -> None:
    ca = TrustSpaceCA.create(tmp_path / "ca")
    us = ca.issue_server("mx.a.test")
    peer = ca.issue_server("mx.b.test")
    (tmp_path / "crl").mkdir()
    policy = TrustPolicy(
        TlsConfig(
            cert_file=us.chain_path,
            key_file=us.key_path,
            ca_bundle=ca.ca_bundle,
            crl_dir=tmp_path / "crl",
        ),
        ListeBlanche(NOW, [entry("b.test", peer.subject_dn)]),
    )
    out = handshake(policy.relay_server_context(), client_ctx_with(peer, ca))
    assert "no CRL" in describe_handshake_error(out.server_error or Exception())
    assert "no CRL for issuer" in policy.check_inbound(peer.der, "b.test").reason


def test_expired_crl_fails_closed(tmp_path: Path) -> None:
    ca = TrustSpaceCA.create(tmp_path / "ca")
    us = ca.issue_server("mx.a.test")
    peer = ca.issue_server("mx.b.test")
    ca.write_crl(
        tmp_path / "crl" / "aci.crl",
        last_update=NOW - dt.timedelta(days=10),
        next_update=NOW - dt.timedelta(days=1),
    )
    policy = TrustPolicy(
        TlsConfig(
            cert_file=us.chain_path,
            key_file=us.key_path,
            ca_bundle=ca.ca_bundle,
            crl_dir=tmp_path / "crl",
        ),
        ListeBlanche(NOW, [entry("b.test", peer.subject_dn)]),
    )
    out = handshake(policy.relay_server_context(), client_ctx_with(peer, ca))
    assert describe_handshake_error(out.server_error or Exception()) == "CRL expired"
    assert "expired at" in policy.check_inbound(peer.der, "b.test").reason


def test_tampered_or_foreign_crl_keeps_previous_state(space: Space, tmp_path: Path) -> None:
    crl_dir = tmp_path / "crl"
    space.ca.write_crl(crl_dir / "aci.crl")
    policy = space.policy(crl_dir=crl_dir)
    ctx = policy.relay_server_context()
    space.other.write_crl(crl_dir / "foreign.crl")
    with pytest.raises(TrustError, match="unknown"):
        policy.reload_crls()
    assert policy.relay_server_context() is ctx
    (crl_dir / "foreign.crl").write_bytes(b"garbage")
    with pytest.raises(TrustError, match="not a CRL"):
        policy.reload_crls()
    assert policy.relay_server_context() is ctx


def test_replace_list_without_restart(space: Space) -> None:
    policy = space.policy()
    assert policy.check_inbound(space.peer.der, "medecin.mssante.test").accepted
    policy.replace_list(ListeBlanche(NOW, [entry("ch-exemple.mssante.test", space.us.subject_dn)]))
    assert not policy.is_listed("medecin.mssante.test")
    assert not policy.check_inbound(space.peer.der, "medecin.mssante.test").accepted


# -- outbound ---------------------------------------------------------------------------------


def test_outbound_to_listed_peer(space: Space) -> None:
    policy = space.policy()
    out = handshake(server_ctx_with(space.peer), policy.client_context())
    assert out.client_error is None and out.server_error is None
    assert out.peer_der_seen_by_client == space.peer.der
    verdict = policy.check_outbound(out.peer_der_seen_by_client or b"", "medecin.mssante.test")
    assert verdict.accepted, verdict
    refused = policy.check_outbound(space.peer.der, "ch-exemple.mssante.test")
    assert not refused.accepted and "not listed for domain" in refused.reason


def test_outbound_presents_our_certificate(space: Space) -> None:
    policy = space.policy()
    sctx = server_ctx_with(space.peer)
    sctx.load_verify_locations(space.ca.ca_bundle)
    sctx.verify_mode = ssl.CERT_REQUIRED
    out = handshake(sctx, policy.client_context())
    assert out.peer_der_seen_by_server == space.us.der


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("expired", "peer certificate expired"),
        ("revoked", "peer certificate revoked"),
        ("other_ca", "not issued by a trust-space CA"),
    ],
)
def test_outbound_refuses_bad_peer_certificates(
    tmp_path: Path, space: Space, kind: str, expected: str
) -> None:
    ca = TrustSpaceCA.create(tmp_path / "ca")
    us = ca.issue_server("mx.a.test")
    if kind == "expired":
        bad = ca.issue_server("mx.b.test", expired=True)
    elif kind == "revoked":
        bad = ca.issue_server("mx.b.test")
        ca.revoke(bad)
    else:
        bad = space.other.issue_server("mx.b.test")
    ca.write_crl(tmp_path / "crl" / "aci.crl")
    policy = TrustPolicy(
        TlsConfig(
            cert_file=us.chain_path,
            key_file=us.key_path,
            ca_bundle=ca.ca_bundle,
            crl_dir=tmp_path / "crl",
        ),
        ListeBlanche(NOW, [entry("b.test", bad.subject_dn)]),
    )
    out = handshake(server_ctx_with(bad), policy.client_context())
    assert isinstance(out.client_error, ssl.SSLCertVerificationError), out
    assert expected in describe_handshake_error(out.client_error)
    assert not policy.check_outbound(bad.der, "b.test").accepted


def test_outbound_dn_mismatch_and_unlisted_domain(space: Space) -> None:
    policy = space.policy()
    twin = space.ca.issue_server("mx.medecin.mssante.test", "1", "AUTRE", "Rhône (69)")
    out = handshake(server_ctx_with(twin), policy.client_context())
    assert out.client_error is None
    verdict = policy.check_outbound(out.peer_der_seen_by_client or b"", "medecin.mssante.test")
    assert not verdict.accepted and "different DN" in verdict.reason
    verdict = policy.check_outbound(space.peer.der, "inconnu.test")
    assert not verdict.accepted and "not in the liste blanche" in verdict.reason


def test_revoked_intermediate_is_caught_by_the_python_check(tmp_path: Path) -> None:
    ca = TrustSpaceCA.create(tmp_path / "ca")
    us = ca.issue_server("mx.a.test")
    peer = ca.issue_server("mx.b.test")
    crl_dir = tmp_path / "crl"
    ca.write_crl(crl_dir / "aci.crl")
    ca.root.revoked[ca.intermediate.cert.serial_number] = NOW - dt.timedelta(minutes=1)
    ca.write_root_crl(crl_dir / "acr.crl")
    policy = TrustPolicy(
        TlsConfig(
            cert_file=us.chain_path, key_file=us.key_path, ca_bundle=ca.ca_bundle, crl_dir=crl_dir
        ),
        ListeBlanche(NOW, [entry("b.test", peer.subject_dn)]),
    )
    verdict = policy.check_inbound(peer.der, "b.test")
    assert not verdict.accepted and verdict.reason == "client issuing CA certificate revoked"
