"""Certificate factory for tests and the sandbox: a trust space CA shaped like IGC-Santé.

IGC-Santé (notes §1.4) has a root ``AC RACINE IGC-SANTE ELEMENTAIRE`` and, under it, the
intermediate ``AC IGC-SANTE ELEMENTAIRE ORGANISATIONS`` that issues operator certificates with
subject ``CN=<mta fqdn>,OU=<SIRET or FINESS>,O=<organisation>,ST=<Département (NN)>,C=FR``.
:class:`TrustSpaceCA` builds the same shape with names clearly marked as a sandbox, issues
server and client certificates (valid, expired or not yet valid), revokes them and writes CRLs
(RFC 5280 §5). ECDSA P-256 keys by default (cheap handshakes); RSA on request.

Every issued certificate is written as PEM files: the leaf, the chain (leaf + intermediate, what
a TLS endpoint presents) and the private key (mode 0600).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypedDict, Unpack

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from caducee.trust.dn import dn_of_certificate

__all__ = [
    "CertificateAuthority",
    "IssueOptions",
    "IssuedCert",
    "KeyType",
    "TrustSpaceCA",
    "generate_key",
    "write_private_key",
]

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_UTC = dt.UTC


def _now() -> dt.datetime:
    return dt.datetime.now(_UTC).replace(microsecond=0)


def generate_key(key_type: KeyType = "ec", rsa_bits: int = 2048) -> PrivateKey:
    """A fresh private key: ECDSA P-256 or RSA (``rsa_bits``)."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    return ec.generate_private_key(ec.SECP256R1())


def write_private_key(key: PrivateKey, path: Path) -> None:
    """Writes a private key as unencrypted PKCS#8 PEM, mode 0600 from creation."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.chmod(0o600)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _subject(cn: str, ou: str | None, o: str | None, st: str | None, c: str | None) -> x509.Name:
    # Encoding order is C, ST, O, OU, CN so that the RFC 4514 string reads CN,OU,O,ST,C.
    attrs = []
    if c is not None:
        attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, c))
    if st is not None:
        attrs.append(x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, st))
    if o is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    if ou is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


class IssueOptions(TypedDict, total=False):
    """Keyword options of :meth:`TrustSpaceCA.issue` shared by ``issue_server/_client``."""

    c: str | None
    server: bool
    client: bool
    dns_names: list[str] | None
    key_type: KeyType
    rsa_bits: int
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    expired: bool
    not_yet_valid: bool
    name: str | None


@dataclass(frozen=True)
class IssuedCert:
    """A certificate issued by the factory, with its files."""

    cert: x509.Certificate
    key: PrivateKey
    cert_path: Path  # leaf only (PEM)
    chain_path: Path  # leaf + issuing intermediate (PEM): what an endpoint presents
    key_path: Path  # private key (PEM, 0600)
    subject_dn: str  # liste blanche form: CN=..,OU=..,O=..,ST=..,C=FR

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def serial(self) -> int:
        return self.cert.serial_number


@dataclass
class CertificateAuthority:
    """One CA (root or intermediate): its certificate, key and the serials it revoked."""

    cert: x509.Certificate
    key: PrivateKey
    revoked: dict[int, dt.datetime] = field(default_factory=dict)

    def sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        return builder.sign(self.key, hashes.SHA256())

    def crl(
        self,
        *,
        last_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
    ) -> x509.CertificateRevocationList:
        """A CRL (RFC 5280 §5) listing every serial revoked so far."""
        last = last_update or _now() - dt.timedelta(minutes=5)
        nxt = next_update or last + dt.timedelta(days=7)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(last)
            .next_update(nxt)
            .add_extension(x509.CRLNumber(len(self.revoked) + 1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        for serial, when in sorted(self.revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        return builder.sign(self.key, hashes.SHA256())


def _builder(
    subject: x509.Name,
    issuer_name: x509.Name,
    key: PrivateKey,
    issuer_key: PrivateKey | None,
    not_before: dt.datetime,
    not_after: dt.datetime,
    *,
    ca: bool,
    path_length: int | None = None,
    key_encipherment: bool = False,
) -> x509.CertificateBuilder:
    """The fields and extensions every certificate here shares (RFC 5280 §4.2.1): basic
    constraints, key usage (certificate and CRL signing for a CA, digital signature for a leaf),
    subject key id and, when issued by another key, authority key id."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=key_encipherment,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer_key is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder


def _ca_cert(
    subject: x509.Name,
    key: PrivateKey,
    issuer: CertificateAuthority | None,
    path_length: int | None,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    builder = _builder(
        subject,
        issuer.cert.subject if issuer else subject,
        key,
        issuer.key if issuer else None,
        not_before,
        not_after,
        ca=True,
        path_length=path_length,
    )
    return builder.sign(issuer.key if issuer else key, hashes.SHA256())


class TrustSpaceCA:
    """Root + "ORGANISATIONS" intermediate, shaped like IGC-Santé, writing files under a dir.

    Use :meth:`create` for the trust space CA and :meth:`create_other` for an unrelated CA
    (certificates "not issued by IGC-Santé", the ``cert-non-igc`` case).
    """

    def __init__(
        self,
        directory: Path,
        root: CertificateAuthority,
        intermediate: CertificateAuthority,
    ) -> None:
        self.directory = directory
        self.root = root
        self.intermediate = intermediate
        self._counter = 0
        self.root_path = directory / "root.pem"
        self.intermediate_path = directory / "intermediate.pem"
        self.ca_bundle = directory / "ca-bundle.pem"

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        label: str = "SANDBOX",
        organisation: str = "CADUCEE SANDBOX",
        key_type: KeyType = "ec",
        intermediate_not_after: dt.datetime | None = None,
    ) -> TrustSpaceCA:
        """A new hierarchy written to ``directory`` (created): root.pem, intermediate.pem,
        ca-bundle.pem (root + intermediate), and their keys under ``directory/private``.

        Names follow IGC-Santé with ``label`` marking them (``AC RACINE <label> IGC-SANTE
        ELEMENTAIRE`` / ``AC <label> IGC-SANTE ELEMENTAIRE ORGANISATIONS``).
        """
        directory.mkdir(parents=True, exist_ok=True)
        now = _now()
        ou = f"IGC-SANTE {label}"
        root_key = generate_key(key_type)
        root_name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
                x509.NameAttribute(NameOID.COMMON_NAME, f"AC RACINE {label} IGC-SANTE ELEMENTAIRE"),
            ]
        )
        root_cert = _ca_cert(
            root_name, root_key, None, 1, now - dt.timedelta(days=1), now + dt.timedelta(days=3650)
        )
        root = CertificateAuthority(root_cert, root_key)
        inter_key = generate_key(key_type)
        inter_name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, f"AC {label} IGC-SANTE ELEMENTAIRE ORGANISATIONS"
                ),
            ]
        )
        inter_cert = _ca_cert(
            inter_name,
            inter_key,
            root,
            0,
            now - dt.timedelta(days=1),
            intermediate_not_after or now + dt.timedelta(days=1825),
        )
        ca = cls(directory, root, CertificateAuthority(inter_cert, inter_key))
        ca._write_ca_files()
        return ca

    @classmethod
    def create_other(cls, directory: Path, *, key_type: KeyType = "ec") -> TrustSpaceCA:
        """An unrelated hierarchy (not the trust space): for "cert-non-igc" tests."""
        return cls.create(
            directory, label="AUTRE", organisation="AUTRE AUTORITE NON IGC", key_type=key_type
        )

    def _write_ca_files(self) -> None:
        self.root_path.write_bytes(_pem(self.root.cert))
        self.intermediate_path.write_bytes(_pem(self.intermediate.cert))
        self.ca_bundle.write_bytes(_pem(self.root.cert) + _pem(self.intermediate.cert))
        private = self.directory / "private"
        private.mkdir(mode=0o700, exist_ok=True)
        write_private_key(self.root.key, private / "root.key.pem")
        write_private_key(self.intermediate.key, private / "intermediate.key.pem")

    # -- issuing ----------------------------------------------------------------------------

    def _file_stem(self, cn: str) -> str:
        self._counter += 1
        slug = re.sub(r"[^A-Za-z0-9.-]+", "_", cn)[:60] or "cert"
        return f"{slug}-{self._counter}"

    def issue(
        self,
        cn: str,
        ou: str | None = "11111111111111",
        o: str | None = "SANDBOX OPERATEUR",
        st: str | None = "Paris (75)",
        *,
        c: str | None = "FR",
        server: bool = True,
        client: bool = True,
        dns_names: list[str] | None = None,
        key_type: KeyType = "ec",
        rsa_bits: int = 2048,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        expired: bool = False,
        not_yet_valid: bool = False,
        name: str | None = None,
    ) -> IssuedCert:
        """Issues an end-entity certificate from the intermediate and writes its files."""
        now = _now()
        if expired:
            not_before = not_before or now - dt.timedelta(days=400)
            not_after = not_after or now - dt.timedelta(days=1)
        elif not_yet_valid:
            not_before = not_before or now + dt.timedelta(days=1)
            not_after = not_after or now + dt.timedelta(days=366)
        not_before = not_before or now - dt.timedelta(hours=1)
        not_after = not_after or now + dt.timedelta(days=365)
        key = generate_key(key_type, rsa_bits)
        ekus = []
        if server:
            ekus.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            ekus.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = _builder(
            _subject(cn, ou, o, st, c),
            self.intermediate.cert.subject,
            key,
            self.intermediate.key,
            not_before,
            not_after,
            ca=False,
            key_encipherment=isinstance(key, rsa.RSAPrivateKey),
        ).add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        sans = dns_names if dns_names is not None else ([cn] if "." in cn else [])
        if sans:
            general: list[x509.GeneralName] = []
            for d in sans:
                try:
                    general.append(x509.IPAddress(ipaddress.ip_address(d)))
                except ValueError:
                    general.append(x509.DNSName(d))
            builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
        cert = self.intermediate.sign(builder)
        stem = name or self._file_stem(cn)
        certs_dir = self.directory / "issued"
        certs_dir.mkdir(exist_ok=True)
        cert_path = certs_dir / f"{stem}.crt.pem"
        chain_path = certs_dir / f"{stem}.chain.pem"
        key_path = certs_dir / f"{stem}.key.pem"
        cert_path.write_bytes(_pem(cert))
        chain_path.write_bytes(_pem(cert) + _pem(self.intermediate.cert))
        write_private_key(key, key_path)
        return IssuedCert(
            cert=cert,
            key=key,
            cert_path=cert_path,
            chain_path=chain_path,
            key_path=key_path,
            subject_dn=str(dn_of_certificate(cert)),
        )

    def issue_server(
        self,
        cn: str,
        ou: str | None = "11111111111111",
        o: str | None = "SANDBOX OPERATEUR",
        st: str | None = "Paris (75)",
        **kwargs: Unpack[IssueOptions],
    ) -> IssuedCert:
        """An operator MTA certificate (serverAuth + clientAuth, like "SERV SSL": the same
        certificate is presented inbound and outbound)."""
        kwargs.setdefault("server", True)
        kwargs.setdefault("client", True)
        return self.issue(cn, ou, o, st, **kwargs)

    def issue_client(
        self,
        cn: str,
        ou: str | None = "11111111111111",
        o: str | None = "SANDBOX OPERATEUR",
        st: str | None = "Paris (75)",
        **kwargs: Unpack[IssueOptions],
    ) -> IssuedCert:
        """An organisation client certificate (clientAuth only, like "ORG AUTH_CLI")."""
        kwargs.setdefault("server", False)
        kwargs.setdefault("client", True)
        return self.issue(cn, ou, o, st, **kwargs)

    # -- revocation -------------------------------------------------------------------------

    def revoke(self, cert: IssuedCert | x509.Certificate, when: dt.datetime | None = None) -> None:
        """Marks a certificate issued by the intermediate as revoked (next CRL lists it)."""
        c = cert.cert if isinstance(cert, IssuedCert) else cert
        self.intermediate.revoked[c.serial_number] = when or _now() - dt.timedelta(minutes=1)

    def write_crl(
        self,
        path: Path,
        *,
        der: bool = False,
        next_update: dt.datetime | None = None,
        last_update: dt.datetime | None = None,
    ) -> Path:
        """Writes the intermediate's CRL (PEM, or DER with ``der=True``) to ``path``."""
        crl = self.intermediate.crl(last_update=last_update, next_update=next_update)
        enc = serialization.Encoding.DER if der else serialization.Encoding.PEM
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(crl.public_bytes(enc))
        return path

    def write_root_crl(
        self, path: Path, *, der: bool = False, next_update: dt.datetime | None = None
    ) -> Path:
        """Writes the root's CRL (ARL), needed when CRLs are checked for the whole chain."""
        crl = self.root.crl(next_update=next_update)
        enc = serialization.Encoding.DER if der else serialization.Encoding.PEM
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(crl.public_bytes(enc))
        return path
