"""Certificate revocation lists (RFC 5280 §5) from the trust authority, PEM or DER files.

A :class:`CrlSet` indexes the CRLs of a directory by issuer, checks their signature against
the trust-space CA certificates, and answers "is this serial revoked?" in constant time. It also
renders every CRL as one PEM blob, which is how OpenSSL contexts load them.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from caducee.core.errors import TrustError

__all__ = ["CrlSet", "IndexedCrl", "load_crl_file"]

log = logging.getLogger(__name__)

_PEM_MARK = b"-----BEGIN X509 CRL-----"


def load_crl_file(path: Path) -> list[x509.CertificateRevocationList]:
    """The CRLs of one file: one or several PEM blocks, or one DER CRL."""
    data = path.read_bytes()
    try:
        if _PEM_MARK in data:
            out: list[x509.CertificateRevocationList] = []
            for chunk in data.split(_PEM_MARK)[1:]:
                out.append(x509.load_pem_x509_crl(_PEM_MARK + chunk))
            return out
        return [x509.load_der_x509_crl(data)]
    except ValueError as exc:
        raise TrustError(f"{path}: not a CRL (PEM or DER): {exc}") from exc


@dataclass
class IndexedCrl:
    """One CRL with its revoked serials as a set."""

    crl: x509.CertificateRevocationList
    source: Path | None
    serials: frozenset[int] = field(default_factory=frozenset)
    next_update: dt.datetime | None = field(init=False)

    def __post_init__(self) -> None:
        self.next_update = self.crl.next_update_utc

    @property
    def last_update(self) -> dt.datetime:
        return self.crl.last_update_utc


class CrlSet:
    """The newest CRL per issuer (by ``lastUpdate``), signature-checked against CA certs."""

    def __init__(self, by_issuer: dict[bytes, IndexedCrl] | None = None) -> None:
        self._by_issuer: dict[bytes, IndexedCrl] = by_issuer or {}

    @classmethod
    def load_dir(cls, directory: Path | None, ca_certs: list[x509.Certificate]) -> CrlSet:
        """Loads every ``*.crl``, ``*.pem``, ``*.der`` file of ``directory`` (not recursive).

        A CRL whose issuer is not one of ``ca_certs``, or whose signature does not verify, is
        refused (TrustError): a tampered file must never go unnoticed.
        """
        if directory is None:
            return cls()
        if not directory.is_dir():
            raise TrustError(f"CRL directory {directory} does not exist")
        by_subject = {c.subject.public_bytes(): c for c in ca_certs}
        by_issuer: dict[bytes, IndexedCrl] = {}
        for path in sorted(directory.iterdir()):
            if path.suffix.lower() not in (".crl", ".pem", ".der") or not path.is_file():
                continue
            for crl in load_crl_file(path):
                key = crl.issuer.public_bytes()
                issuer = by_subject.get(key)
                if issuer is None:
                    raise TrustError(f"{path}: CRL issuer {crl.issuer.rfc4514_string()} unknown")
                if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]  # CA keys are EC/RSA
                    raise TrustError(f"{path}: CRL signature does not verify")
                current = by_issuer.get(key)
                if current is None or crl.last_update_utc > current.last_update:
                    serials = frozenset(r.serial_number for r in crl)
                    by_issuer[key] = IndexedCrl(crl, path, serials)
        return cls(by_issuer)

    def __len__(self) -> int:
        return len(self._by_issuer)

    def for_issuer(self, issuer: x509.Name) -> IndexedCrl | None:
        return self._by_issuer.get(issuer.public_bytes())

    def pem(self) -> bytes:
        """Every CRL as concatenated PEM (what ``SSLContext.load_verify_locations`` reads)."""
        return b"".join(
            c.crl.public_bytes(serialization.Encoding.PEM) for c in self._by_issuer.values()
        )

    def revocation_problem(
        self, cert: x509.Certificate, now: dt.datetime, issuer_der: bytes | None = None
    ) -> str | None:
        """None if ``cert`` is not revoked per a current CRL of its issuer; else the reason.

        ``issuer_der``: the DER of ``cert.issuer`` when the caller has it (saves a conversion).
        """
        entry = self._by_issuer.get(issuer_der or cert.issuer.public_bytes())
        if entry is None:
            return f"no CRL for issuer {cert.issuer.rfc4514_string()}"
        if entry.next_update is not None and entry.next_update < now:
            when = f"{entry.next_update:%Y-%m-%dT%H:%M:%SZ}"
            return f"CRL of {cert.issuer.rfc4514_string()} expired at {when}"
        if cert.serial_number in entry.serials:
            return "certificate revoked"
        return None
