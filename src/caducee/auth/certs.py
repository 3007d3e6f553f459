"""Certificate subjects as the trust space writes them (liste blanche ``CN=..,OU=..,O=..,C=FR``).

Used to map a TLS client certificate to a person (e-CPS-like card at the IdP) or to an APP
mailbox (SASL EXTERNAL, RFC 4422 Appendix A).
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509

from caducee.core.errors import AuthenticationFailed

__all__ = ["normalise_dn", "subject_dn"]


def subject_dn(cert_der: bytes, *, now: datetime | None = None) -> str:
    """The subject DN of a DER certificate, RFC 4514 order (most specific first).

    Raises ``AuthenticationFailed`` when the bytes are not a certificate or it is outside its
    validity period (the TLS layer checked the chain; this is defence in depth)."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise AuthenticationFailed("not a certificate") from exc
    moment = now or datetime.now(UTC)
    if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
        raise AuthenticationFailed("certificate outside its validity period")
    return normalise_dn(cert.subject.rfc4514_string())


def normalise_dn(dn: str) -> str:
    """Canonical comparison form: spaces around ``=`` and ``,`` removed, attribute types in
    upper case. Values keep their case (an IGC-Santé CN is case-sensitive in the list)."""
    parts = []
    for rdn in _split_unescaped(dn):
        name, _, value = rdn.partition("=")
        parts.append(f"{name.strip().upper()}={value.strip()}")
    return ",".join(p for p in parts if p != "=")


def _split_unescaped(dn: str) -> list[str]:
    out, cur, escaped = [], "", False
    for ch in dn:
        if escaped:
            cur += ch
            escaped = False
        elif ch == "\\":
            cur += ch
            escaped = True
        elif ch == ",":
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out
