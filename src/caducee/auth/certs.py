"""Certificate subjects as the trust space writes them (liste blanche ``CN=..,OU=..,O=..,C=FR``).

Used to map a TLS client certificate to a person (e-CPS-like card at the IdP) or to an APP
mailbox (SASL EXTERNAL, RFC 4422 Appendix A). Comparison follows the trust module's DN
normalisation (``caducee.trust.dn``), so a DN configured here matches the same way as one in
the liste blanche.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509

from caducee.core.errors import AuthenticationFailed, InvalidInput
from caducee.trust.dn import DistinguishedName, DnSyntaxError, dn_of_certificate

__all__ = ["normalise_dn", "subject_dn"]


def subject_dn(cert_der: bytes, *, now: datetime | None = None) -> str:
    """The canonical subject DN of a DER certificate, most specific RDN first.

    Raises ``AuthenticationFailed`` when the bytes are not a certificate or it is outside its
    validity period (the TLS layer checked the chain; this is defence in depth)."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise AuthenticationFailed("not a certificate") from exc
    moment = now or datetime.now(UTC)
    if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
        raise AuthenticationFailed("certificate outside its validity period")
    return str(dn_of_certificate(cert))


def normalise_dn(dn: str) -> str:
    """The canonical form of an RFC 4514 DN string (as configured by an administrator)."""
    try:
        return str(DistinguishedName.parse(dn))
    except DnSyntaxError as exc:
        raise InvalidInput(f"not a distinguished name: {exc}") from exc
