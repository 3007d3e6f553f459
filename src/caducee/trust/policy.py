"""The trust-space policy between operators: TLS contexts and peer checks (notes §1.3).

A session between operators is accepted only if (1) TLS is used, (2) the peer certificate chains
to the trust-space CA bundle (IGC-Santé-shaped), (3) it is within its validity and not revoked
(CRLs from the trust authority, RFC 5280 §5/§6.3), and (4) its full subject DN equals a
``DNCertificatOperateur`` listed in the liste blanche for the domain concerned (the MAIL FROM
domain inbound, the recipient domain outbound). OpenSSL enforces (1)-(3) during the handshake;
:meth:`TrustPolicy.check_inbound` / :meth:`TrustPolicy.check_outbound` enforce (4) and re-check
(2)-(3) in Python (defence in depth: a CRL reloaded after a context was built still counts).
When ``tls.ocsp_url`` names a responder, (3) also asks it (RFC 6960, ``caducee.trust.ocsp``):
"revoked" refuses; other answers refuse only with ``tls.ocsp_strict``.

Contexts are rebuilt by :meth:`TrustPolicy.reload_crls`; fetch them with the ``*_context()``
methods for every new connection (they return a cached object, cheap), never keep one forever.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import ssl
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from caducee.config.model import TlsConfig
from caducee.core.errors import TrustError
from caducee.trust.crl import CrlSet
from caducee.trust.dn import DistinguishedName, dn_of_certificate
from caducee.trust.listeblanche import ListeBlanche, normalise_domain
from caducee.trust.ocsp import OcspChecker

__all__ = ["PeerVerdict", "TrustPolicy", "describe_handshake_error"]

log = logging.getLogger(__name__)

_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class PeerVerdict:
    """The decision on a peer: SMTP ``code`` and RFC 3463 ``enhanced`` status to reply with."""

    accepted: bool
    reason: str
    code: int
    enhanced: str
    subject_dn: str | None


@dataclass(frozen=True, slots=True)
class _CertInfo:
    cert: x509.Certificate
    dn: DistinguishedName
    dn_text: str
    chain_problem: str | None  # issuer / signature problem (time-independent)
    not_before: dt.datetime
    not_after: dt.datetime
    issuer_not_after: dt.datetime | None  # latest validity end among matching CA certs
    issuer_der: bytes
    issuer_revoked: bool  # the issuing CA is revoked per its own issuer's CRL


def _ocsp_checker(tls: TlsConfig) -> OcspChecker | None:
    """The OCSP checker of ``tls.ocsp_url`` (caducee.trust.ocsp), if one is configured."""
    if not tls.ocsp_url:
        return None
    verify: ssl.SSLContext | bool = True
    if tls.ocsp_url.startswith("https://"):
        verify = ssl.create_default_context(cafile=str(tls.ca_bundle))
    return OcspChecker(
        tls.ocsp_url, timeout=tls.ocsp_timeout_seconds, strict=tls.ocsp_strict, verify=verify
    )


def _refuse(reason: str, dn: str | None, code: int = 550, enhanced: str = "5.7.1") -> PeerVerdict:
    return PeerVerdict(False, reason, code, enhanced, dn)


class TrustPolicy:
    """What the SMTP front-ends and the delivery worker call to trust (or not) a peer."""

    def __init__(
        self,
        tls: TlsConfig,
        liste: ListeBlanche,
        *,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self._tls = tls
        self._liste = liste
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._lock = threading.Lock()
        try:
            self._ca_certs = x509.load_pem_x509_certificates(tls.ca_bundle.read_bytes())
        except (OSError, ValueError) as exc:
            raise TrustError(f"CA bundle {tls.ca_bundle}: {exc}") from exc
        self._ca_by_subject: dict[bytes, list[x509.Certificate]] = {}
        for ca in self._ca_certs:
            self._ca_by_subject.setdefault(ca.subject.public_bytes(), []).append(ca)
        if tls.crl_dir is None:
            log.warning("tls.crl_dir is not set: peer certificates are not checked for revocation")
        self._crls = CrlSet()
        self._cache: OrderedDict[bytes, _CertInfo] = OrderedDict()
        self._generation = 0  # bumped by reload_crls: cache entries of an older one are dropped
        self._relay_ctx: ssl.SSLContext
        self._submission_ctx: ssl.SSLContext
        self._client_ctx: ssl.SSLContext
        self.ocsp = _ocsp_checker(tls)
        self.reload_crls()

    # -- state ------------------------------------------------------------------------------

    @property
    def liste(self) -> ListeBlanche:
        return self._liste

    @property
    def crls(self) -> CrlSet:
        return self._crls

    def replace_list(self, liste: ListeBlanche) -> None:
        """Swaps the liste blanche in place (no restart; next checks use the new list)."""
        self._liste = liste

    def reload_crls(self) -> None:
        """Re-reads ``tls.crl_dir`` and rebuilds the three TLS contexts atomically (the
        certificate and key files are re-read too, so a renewed certificate applies).

        On a bad CRL file the previous CRLs and contexts stay in force (TrustError raised).
        """
        crls = CrlSet.load_dir(self._tls.crl_dir, self._ca_certs)
        crl_pem = crls.pem()
        relay = self._build_server(crl_pem, request_client_cert=True)
        # Submission and IMAP: a client certificate is requested but optional (SASL EXTERNAL
        # for APP mailboxes); a presented bad one fails the handshake, none is fine.
        submission = self._build_server(crl_pem, request_client_cert=True)
        client = self._build_client(crl_pem)
        with self._lock:
            self._crls = crls
            self._relay_ctx, self._submission_ctx, self._client_ctx = relay, submission, client
            self._cache.clear()
            self._generation += 1
        if self.ocsp is not None:
            self.ocsp.clear()  # a trust refresh re-asks the responder too

    # -- contexts ---------------------------------------------------------------------------

    def _min_version(self) -> ssl.TLSVersion:
        if self._tls.min_version == "TLSv1.3":
            return ssl.TLSVersion.TLSv1_3
        return ssl.TLSVersion.TLSv1_2

    def _load_trust(self, ctx: ssl.SSLContext, crl_pem: bytes) -> None:
        ctx.load_verify_locations(cafile=str(self._tls.ca_bundle))
        if self._tls.crl_dir is None:
            return
        # Fail closed: with a CRL directory configured, a peer whose issuer has no (current)
        # CRL is refused by OpenSSL ("unable to get certificate CRL" / "CRL has expired").
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        if crl_pem:
            # OpenSSL reads CRLs only from files (cadata takes certificates only).
            fd, tmp = tempfile.mkstemp(prefix="caducee-crl-", suffix=".pem")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(crl_pem)
                ctx.load_verify_locations(cafile=tmp)
            finally:
                Path(tmp).unlink(missing_ok=True)

    def _build_server(self, crl_pem: bytes, *, request_client_cert: bool) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = self._min_version()
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        ctx.num_tickets = 1
        try:
            ctx.load_cert_chain(str(self._tls.cert_file), str(self._tls.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise TrustError(f"cannot load {self._tls.cert_file} / key: {exc}") from exc
        if request_client_cert:
            self._load_trust(ctx, crl_pem)
            # A presented but bad certificate fails the handshake; a missing one is allowed by
            # TLS and refused at SMTP level on the relay (check_inbound), with a precise reply;
            # on submission and IMAP it only means no SASL EXTERNAL.
            ctx.verify_mode = ssl.CERT_OPTIONAL
        else:
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _build_client(self, crl_pem: bytes) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = self._min_version()
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        ctx.check_hostname = False  # the liste blanche DN check replaces the hostname check
        ctx.verify_mode = ssl.CERT_REQUIRED
        self._load_trust(ctx, crl_pem)
        try:
            ctx.load_cert_chain(str(self._tls.cert_file), str(self._tls.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise TrustError(f"cannot load {self._tls.cert_file} / key: {exc}") from exc
        return ctx

    def relay_server_context(self) -> ssl.SSLContext:
        """Relay-in (port 25): our certificate, client certificate requested and verified."""
        return self._relay_ctx

    def submission_server_context(self) -> ssl.SSLContext:
        """Submission (587) and IMAP (143/993): our certificate; a client certificate is
        requested but optional (CA bundle and CRLs; RFC 4422 Appendix A EXTERNAL). Only a
        verified certificate reaches the session; a bad one fails the handshake."""
        return self._submission_ctx

    def client_context(self) -> ssl.SSLContext:
        """Outbound relay: presents our certificate, verifies the peer chain and CRLs."""
        return self._client_ctx

    # -- checks -----------------------------------------------------------------------------

    def is_listed(self, domain: str) -> bool:
        return self._liste.is_listed(domain)

    def dns_for(self, domain: str) -> set[str]:
        return self._liste.dns_for(domain)

    def _info(self, der: bytes) -> _CertInfo:
        with self._lock:
            info = self._cache.get(der)
            if info is not None:
                self._cache.move_to_end(der)
                return info
            generation = self._generation
        cert = x509.load_der_x509_certificate(der)
        dn = dn_of_certificate(cert)
        issuer_der = cert.issuer.public_bytes()
        info = _CertInfo(
            cert,
            dn,
            str(dn),
            self._chain_problem(cert),
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            max(
                (i.not_valid_after_utc for i in self._ca_by_subject.get(issuer_der, [])),
                default=None,
            ),
            issuer_der,
            self._issuer_revoked(cert),
        )
        with self._lock:
            if generation != self._generation:
                return info  # CRLs changed meanwhile: use once, do not cache
            self._cache[der] = info
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return info

    def _issuer_revoked(self, cert: x509.Certificate) -> bool:
        now = self._clock()
        for issuer in self._ca_by_subject.get(cert.issuer.public_bytes(), []):
            if issuer.issuer == issuer.subject or self._crls.for_issuer(issuer.issuer) is None:
                continue
            if self._crls.revocation_problem(issuer, now) == "certificate revoked":
                return True
        return False

    def _chain_problem(self, cert: x509.Certificate) -> str | None:
        for issuer in self._ca_by_subject.get(cert.issuer.public_bytes(), []):
            try:
                cert.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                continue  # try the next candidate
            return None
        return "certificate not issued by a trust-space CA"

    def _certificate_problem(self, info: _CertInfo) -> str | None:
        """Chain, validity, revocation (RFC 5280 §6.1.3 (a)(2)-(3), in Python)."""
        if info.chain_problem:
            return info.chain_problem
        now = self._clock()
        cert = info.cert
        if now < info.not_before:
            return "certificate not yet valid"
        if now > info.not_after:
            return "certificate expired"
        if info.issuer_not_after is not None and now > info.issuer_not_after:
            return "issuing CA certificate expired"
        if self._tls.crl_dir is not None:
            problem = self._crls.revocation_problem(cert, now, info.issuer_der)
            if problem:
                return problem
            if info.issuer_revoked:
                return "issuing CA certificate revoked"
        if self.ocsp is not None:
            issuer = self._issuer_of(cert)
            if issuer is not None:
                return self.ocsp.problem(cert, issuer)
        return None

    def _issuer_of(self, cert: x509.Certificate) -> x509.Certificate | None:
        for issuer in self._ca_by_subject.get(cert.issuer.public_bytes(), []):
            try:
                cert.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return issuer
        return None

    def _check(self, der: bytes, domain: str, *, direction: str) -> PeerVerdict:
        try:
            info = self._info(der)
        except ValueError:
            return _refuse(f"{direction} certificate unreadable", None)
        dn_text = info.dn_text
        problem = self._certificate_problem(info)
        if problem:
            return _refuse(f"{direction} {problem}", dn_text)
        liste = self._liste
        d = normalise_domain(domain)
        if not d:
            # Null reverse-path (bounces, DSN): the peer must be a listed operator.
            if liste.domains_for_dn(info.dn):
                return PeerVerdict(
                    True, "null sender from a listed operator", 250, "2.0.0", dn_text
                )
            return _refuse("certificate DN not listed for any domain", dn_text)
        if not liste.is_listed(d):
            return _refuse(f"domain {d} is not in the liste blanche", dn_text)
        if liste.dn_listed_for(d, info.dn):
            return PeerVerdict(True, f"certificate DN listed for domain {d}", 250, "2.0.0", dn_text)
        cn = info.dn.get("CN")
        if cn is not None and any(x.get("CN") == cn for x in liste.parsed_dns_for(d)):
            return _refuse(
                f"certificate CN {cn} is listed for domain {d} but with a different DN", dn_text
            )
        return _refuse(f"certificate DN not listed for domain {d}", dn_text)

    def check_inbound(self, peer_cert_der: bytes | None, mail_from_domain: str) -> PeerVerdict:
        """Relay-in: may the peer that presented this certificate send mail from this domain?

        ``mail_from_domain`` is the MAIL FROM domain, or "" for the null reverse-path.
        """
        if peer_cert_der is None:
            return _refuse("client certificate required", None, 530, "5.7.0")
        return self._check(peer_cert_der, mail_from_domain, direction="client")

    def check_outbound(self, peer_cert_der: bytes, rcpt_domain: str) -> PeerVerdict:
        """Outbound: is the peer we reached the operator listed for the recipient domain?"""
        if not rcpt_domain.strip():
            return _refuse("no recipient domain", None)
        return self._check(peer_cert_der, rcpt_domain, direction="peer")

    @staticmethod
    def describe_handshake_error(exc: BaseException) -> str:
        return describe_handshake_error(exc)


_VERIFY_CODES: dict[int, str] = {
    2: "peer certificate issuer unknown (not a trust-space CA)",
    3: "no CRL available for the peer certificate issuer",
    4: "peer certificate signature unreadable",
    7: "peer certificate signature invalid",
    8: "CRL signature invalid",
    9: "peer certificate not yet valid",
    10: "peer certificate expired",
    11: "CRL not yet valid",
    12: "CRL expired",
    18: "peer certificate self-signed (not a trust-space CA)",
    19: "peer certificate chain has an untrusted root (not a trust-space CA)",
    20: "peer certificate not issued by a trust-space CA",
    21: "peer certificate not issued by a trust-space CA",
    23: "peer certificate revoked",
    24: "peer chain has an invalid CA certificate",
    26: "peer certificate not usable for this purpose (extended key usage)",
    27: "peer certificate not trusted",
    28: "peer certificate rejected",
}
_ALERTS: dict[str, str] = {
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "peer refused our certificate: expired",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "peer refused our certificate: revoked",
    "TLSV1_ALERT_UNKNOWN_CA": "peer refused our certificate: unknown CA",
    "SSLV3_ALERT_BAD_CERTIFICATE": "peer refused our certificate: bad certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "peer refused our certificate",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "peer refused our certificate: unsupported",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "peer requires a client certificate",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "peer presented no certificate",
    "UNSUPPORTED_PROTOCOL": "TLS version refused (TLS 1.2 or later required)",
    "TLSV1_ALERT_PROTOCOL_VERSION": "TLS version refused (TLS 1.2 or later required)",
    "WRONG_VERSION_NUMBER": "not TLS, or TLS version refused",
    "NO_SHARED_CIPHER": "no shared cipher",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "TLS handshake failure",
    "HTTP_REQUEST": "peer spoke HTTP, not TLS",
}


def describe_handshake_error(exc: BaseException) -> str:
    """One line for the audit log: why a TLS handshake failed (expired, revoked, unknown CA)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code in _VERIFY_CODES:
            return _VERIFY_CODES[code]
        return f"peer certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason in _ALERTS:
            return _ALERTS[reason]
        return f"TLS error: {reason or exc.__class__.__name__}"
    if isinstance(exc, ConnectionError | EOFError):
        return "connection closed during the TLS handshake"
    if isinstance(exc, TimeoutError):
        return "TLS handshake timed out"
    return f"TLS handshake failed: {exc.__class__.__name__}"
