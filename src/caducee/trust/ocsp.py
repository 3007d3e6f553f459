"""OCSP (RFC 6960) checks of peer certificates, in addition to CRLs (issue 4 §2).

When a node names a responder (``tls.ocsp_url``), :class:`OcspChecker` asks it for the status
of each peer certificate (relay-in and outbound, through :class:`caducee.trust.policy.
TrustPolicy`): a request per RFC 6960 §4.1 (SHA-256 CertID) POSTed as
``application/ocsp-request`` (Appendix A.1) with a short timeout, the response's signature
verified (§4.2.2.2: by the issuing CA itself, or by a responder certificate it issued with the
``id-kp-OCSPSigning`` purpose), its CertID, ``thisUpdate`` and ``nextUpdate`` checked (§3.2),
and the answer cached until ``nextUpdate`` (at most :data:`MAX_CACHE_SECONDS`).

Policy: ``revoked`` always refuses (fail closed). ``unknown``, a refusal by the responder
(``unauthorized`` ...), an invalid response or an unreachable responder refuse only when
``tls.ocsp_strict`` is set; otherwise they are logged and the CRLs (always checked, and
fail-closed on a stale CRL) decide. Rationale: a soft OCSP failure must not turn the responder
into a single point of failure of the whole trust space, while a fresh "revoked" is acted on
at once. Failures are cached for :data:`FAILURE_CACHE_SECONDS` so a dead responder costs one
timeout per peer per period, not one per session.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = [
    "FAILURE_CACHE_SECONDS",
    "MAX_CACHE_SECONDS",
    "OcspChecker",
    "OcspResult",
    "verify_response",
]

log = logging.getLogger(__name__)

MAX_CACHE_SECONDS = 3600.0
FAILURE_CACHE_SECONDS = 60.0
_SKEW = dt.timedelta(minutes=5)
_MAX_BYTES = 64 * 1024
_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class OcspResult:
    """``status``: "good", "revoked", "unknown" or "error" (no usable answer)."""

    status: str
    detail: str
    expires: dt.datetime


def _verify_signature(signer: x509.Certificate, resp: ocsp.OCSPResponse) -> None:
    key = signer.public_key()
    algo = resp.signature_hash_algorithm
    if isinstance(key, ec.EllipticCurvePublicKey) and algo is not None:
        key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(algo))
    elif isinstance(key, rsa.RSAPublicKey) and algo is not None:
        key.verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(), algo)
    else:
        raise InvalidSignature("unsupported responder key")


def _signer(resp: ocsp.OCSPResponse, issuer: x509.Certificate) -> x509.Certificate:
    """The certificate that signed the response: the issuer, or a delegated responder
    (RFC 6960 §4.2.2.2) issued by it for OCSP signing."""
    issuer_key_hash = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
    if resp.responder_name == issuer.subject or resp.responder_key_hash == issuer_key_hash:
        return issuer
    for cand in resp.certificates:
        if cand.subject != resp.responder_name and (
            resp.responder_key_hash is None
            or x509.SubjectKeyIdentifier.from_public_key(cand.public_key()).digest
            != resp.responder_key_hash
        ):
            continue
        cand.verify_directly_issued_by(issuer)
        eku = cand.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            raise InvalidSignature("responder certificate lacks id-kp-OCSPSigning")
        return cand
    raise InvalidSignature("response signed by neither the issuer nor a delegated responder")


def verify_response(
    der: bytes, cert: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
) -> OcspResult:
    """Checks a DER OCSP response for ``cert`` (issued by ``issuer``) and returns its verdict."""
    fail = now + dt.timedelta(seconds=FAILURE_CACHE_SECONDS)
    try:
        resp = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        return OcspResult("error", f"malformed OCSP response: {exc}", fail)
    if resp.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return OcspResult("error", f"responder answered {resp.response_status.name}", fail)
    try:
        _verify_signature(_signer(resp, issuer), resp)
    except (InvalidSignature, ValueError, TypeError, x509.ExtensionNotFound) as exc:
        return OcspResult("error", f"OCSP response signature invalid: {exc}", fail)
    want = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, resp.hash_algorithm).build()
    if (
        resp.serial_number != cert.serial_number
        or resp.issuer_key_hash != want.issuer_key_hash
        or resp.issuer_name_hash != want.issuer_name_hash
    ):
        return OcspResult("error", "OCSP response is about another certificate", fail)
    this_update = resp.this_update_utc
    next_update = resp.next_update_utc
    if this_update > now + _SKEW:
        return OcspResult("error", "OCSP response thisUpdate is in the future", fail)
    if next_update is not None and next_update < now - _SKEW:
        return OcspResult("error", "OCSP response is stale (nextUpdate passed)", fail)
    cap = now + dt.timedelta(seconds=MAX_CACHE_SECONDS)
    expires = min(next_update, cap) if next_update is not None else now + dt.timedelta(minutes=5)
    status = resp.certificate_status
    if status is ocsp.OCSPCertStatus.REVOKED:
        when = resp.revocation_time_utc
        return OcspResult("revoked", f"revoked{f' on {when:%Y-%m-%d}' if when else ''}", cap)
    if status is ocsp.OCSPCertStatus.GOOD:
        return OcspResult("good", "good", expires)
    return OcspResult("unknown", "the responder does not know this certificate", fail)


class OcspChecker:
    """Asks one responder about peer certificates, with a cache (thread-safe)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        strict: bool = False,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"tls.ocsp_url must be an http(s) URL: {url!r}")
        self.url = url
        self.timeout = timeout
        self.strict = strict
        self._verify = verify
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[bytes, int], OcspResult] = OrderedDict()

    def clear(self) -> None:
        """Forgets every cached answer (called when the trust material is refreshed)."""
        with self._lock:
            self._cache.clear()

    def status(self, cert: x509.Certificate, issuer: x509.Certificate) -> OcspResult:
        """The (possibly cached) status of ``cert``."""
        now = self._clock()
        key = (issuer.subject.public_bytes(), cert.serial_number)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit.expires > now:
                self._cache.move_to_end(key)
                return hit
        result = self._query(cert, issuer, now)
        with self._lock:
            self._cache[key] = result
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return result

    def problem(self, cert: x509.Certificate, issuer: x509.Certificate) -> str | None:
        """None when the peer may go on; otherwise the reason to refuse it."""
        result = self.status(cert, issuer)
        if result.status == "good":
            return None
        if result.status == "revoked":
            return f"certificate revoked (OCSP: {result.detail})"
        if self.strict:
            return f"certificate status not confirmed by OCSP ({result.detail})"
        log.warning("OCSP %s for serial %x: %s; CRLs decide", self.url, cert.serial_number,
                    result.detail)  # fmt: skip
        return None

    def _query(
        self, cert: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
    ) -> OcspResult:
        request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(cert, issuer, hashes.SHA256())
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        try:
            with httpx.Client(timeout=self.timeout, verify=self._verify) as client:
                resp = client.post(
                    self.url,
                    content=request,
                    headers={"Content-Type": "application/ocsp-request"},
                )
                resp.raise_for_status()
        except httpx.HTTPError as exc:
            fail = now + dt.timedelta(seconds=FAILURE_CACHE_SECONDS)
            return OcspResult("error", f"responder unreachable: {exc}", fail)
        if len(resp.content) > _MAX_BYTES:
            fail = now + dt.timedelta(seconds=FAILURE_CACHE_SECONDS)
            return OcspResult("error", "OCSP response too large", fail)
        return verify_response(resp.content, cert, issuer, now)
