"""The trust authority: an IGC-Santé-shaped PKI, onboarding, revocation, publication (issue 4).

State lives in one directory: ``ca/`` (root + "ORGANISATIONS" intermediate certificates, their
keys encrypted at rest with a passphrase, PKCS#8 + AES-256), ``authority.json`` (operators,
issued certificates, revocations, audit events) and ``public/`` (what ``serve`` publishes: the
liste blanche in the real schema, its SHA-256 ``checksum`` file, its detached CMS signature
``.p7s``, the CRLs). Certificates are issued from CSRs (RFC 2986) with the subject conventions of
the real list (``CN=<mta fqdn>,OU=<1+FINESS|3+SIRET>,O=<organisation>,ST=<Département>,C=FR``):
serverAuth+clientAuth for MTAs, clientAuth only for organisation client certificates (APP
mailboxes, practice software). CSRs with CA or certificate-signing key usage, unsupported keys or
RSA keys under 2048 bits are refused. OCSP responses (RFC 6960) are signed by the issuing CA.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from caducee.core.errors import Conflict, InvalidInput, NotFound, TrustError
from caducee.testing.certs import CertificateAuthority, TrustSpaceCA, generate_key
from caducee.trust.atomic import atomic_write
from caducee.trust.cms import sign_detached
from caducee.trust.dn import dn_of_certificate
from caducee.trust.listeblanche import DomainEntry, ListeBlanche, serialise_liste_blanche

__all__ = ["LIST_NAME", "Authority", "CertKind", "new_key_and_csr"]

CertKind = Literal["server", "client"]
LIST_NAME = "listeblanchemssante.xml"
_CRL_DAYS = 2
_CERT_DAYS = 3 * 365
_EC_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _load_key(path: Path, passphrase: bytes) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
    except (ValueError, TypeError) as exc:
        raise TrustError(f"{path}: cannot decrypt the CA key (wrong passphrase?)") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TrustError(f"{path}: unsupported CA key type")
    return key


def _save_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, path: Path, pw: bytes) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(pw),
    )
    atomic_write(path, data, 0o600)


@dataclass
class Authority:
    """An authority directory, opened with its passphrase."""

    directory: Path
    root: CertificateAuthority
    intermediate: CertificateAuthority
    signer_cert: x509.Certificate
    signer_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    state: dict[str, Any]

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        directory: Path,
        passphrase: bytes,
        *,
        label: str = "CADUCEE",
        author: str = "system",
        https_names: tuple[str, ...] = ("localhost", "127.0.0.1"),
    ) -> Authority:
        """Creates a new authority (refuses an existing one)."""
        if (directory / "authority.json").exists():
            raise Conflict(f"{directory} already holds an authority")
        if len(passphrase) < 12:
            raise InvalidInput("the authority passphrase must have at least 12 characters")
        directory.mkdir(parents=True, exist_ok=True)
        factory = TrustSpaceCA.create(
            directory / "ca", label=label, organisation="AUTORITE " + label
        )
        # the factory writes clear keys: re-write them encrypted and remove the clear copies
        for name, ca in (("root", factory.root), ("intermediate", factory.intermediate)):
            _save_key(ca.key, directory / "ca" / "private" / f"{name}.key.enc.pem", passphrase)
            (directory / "ca" / "private" / f"{name}.key.pem").unlink()
        signer = factory.issue_client(
            f"publication.{label.lower()}.authority",
            None,
            "AUTORITE " + label,
            None,
            name="list-signer",
        )
        atomic_write(
            directory / "ca" / "list-signer.pem",
            signer.cert.public_bytes(serialization.Encoding.PEM),
        )
        _save_key(signer.key, directory / "ca" / "private" / "list-signer.key.enc.pem", passphrase)
        https = factory.issue_server(
            https_names[0],
            None,
            "AUTORITE " + label,
            None,
            dns_names=list(https_names),
            name="https",
        )
        atomic_write(directory / "ca" / "https.chain.pem", https.chain_path.read_bytes())
        _save_key(https.key, directory / "ca" / "private" / "https.key.enc.pem", passphrase)
        for leftover in (directory / "ca" / "issued").glob("*"):
            leftover.unlink()
        state: dict[str, Any] = {"version": 1, "operators": {}, "certificates": {}, "audit": []}
        auth = cls(directory, factory.root, factory.intermediate, signer.cert, signer.key, state)
        auth._audit(author, "authority.init", label)
        auth.publish()
        return auth

    @classmethod
    def open(cls, directory: Path, passphrase: bytes) -> Authority:
        path = directory / "authority.json"
        if not path.is_file():
            raise NotFound(f"{directory}: no authority here (create one with authority init)")
        ca_dir = directory / "ca"
        root_cert = x509.load_pem_x509_certificate((ca_dir / "root.pem").read_bytes())
        inter_cert = x509.load_pem_x509_certificate((ca_dir / "intermediate.pem").read_bytes())
        signer = x509.load_pem_x509_certificate((ca_dir / "list-signer.pem").read_bytes())
        priv = ca_dir / "private"
        state = json.loads(path.read_text(encoding="utf-8"))
        root = CertificateAuthority(root_cert, _load_key(priv / "root.key.enc.pem", passphrase))
        inter = CertificateAuthority(
            inter_cert, _load_key(priv / "intermediate.key.enc.pem", passphrase)
        )
        for serial, info in state["certificates"].items():
            if info.get("revoked"):
                inter.revoked[int(serial)] = dt.datetime.fromisoformat(info["revoked"])
        key = _load_key(priv / "list-signer.key.enc.pem", passphrase)
        return cls(directory, root, inter, signer, key, state)

    def _save(self) -> None:
        data = json.dumps(self.state, ensure_ascii=False, indent=2).encode("utf-8")
        atomic_write(self.directory / "authority.json", data, 0o600)

    def _audit(self, author: str, action: str, target: str, **details: str) -> None:
        self.state["audit"].append(
            {
                "time": _now().isoformat(),
                "author": author,
                "action": action,
                "target": target,
                "details": details,
            }
        )
        self._save()

    # -- issuing --------------------------------------------------------------------------------

    def issue_from_csr(
        self, operator: str, csr_pem: bytes, kind: CertKind, *, author: str = "system"
    ) -> x509.Certificate:
        """Issues a certificate for a registered operator from its CSR (checks, then signs)."""
        op = self._operator(operator)
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise InvalidInput(f"not a PEM CSR: {exc}") from exc
        if not csr.is_signature_valid:
            raise InvalidInput("CSR signature does not verify")
        key = csr.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            if key.key_size < 2048:
                raise InvalidInput(f"weak key: RSA {key.key_size} bits (2048 at least)")
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, _EC_CURVES):
                raise InvalidInput(f"unsupported curve {key.curve.name}")
        else:
            raise InvalidInput("unsupported key type (RSA >= 2048 or ECDSA P-256/384/521)")
        for ext in csr.extensions:
            value = ext.value
            if isinstance(value, x509.BasicConstraints) and value.ca:
                raise InvalidInput("wrong key usage: the CSR asks for a CA certificate")
            if isinstance(value, x509.KeyUsage) and (value.key_cert_sign or value.crl_sign):
                raise InvalidInput("wrong key usage: certificate or CRL signing requested")
            if isinstance(value, x509.ExtendedKeyUsage):
                allowed = {ExtendedKeyUsageOID.CLIENT_AUTH}
                if kind == "server":
                    allowed.add(ExtendedKeyUsageOID.SERVER_AUTH)
                if not set(value) <= allowed:
                    raise InvalidInput(f"wrong extended key usage for a {kind} certificate")
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(cns) != 1 or not isinstance(cns[0].value, str) or not cns[0].value:
            raise InvalidInput("the CSR subject must have exactly one CN (the MTA host name)")
        cn = cns[0].value
        now = _now()
        if self.intermediate.cert.not_valid_after_utc < now:
            raise TrustError("the intermediate CA has expired: renew it before issuing")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, op["state"]),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, op["organisation"]),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, op["structure_id"]),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )
        ekus = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if kind == "server":
            ekus.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        not_after = min(
            now + dt.timedelta(days=_CERT_DAYS), self.intermediate.cert.not_valid_after_utc
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.intermediate.cert.subject)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    True,
                    False,
                    isinstance(key, rsa.RSAPublicKey),
                    False,
                    False,
                    False,
                    False,
                    False,
                    False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.intermediate.key.public_key()
                ),
                critical=False,
            )
        )
        if "." in cn:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False
            )
        cert = self.intermediate.sign(builder)
        dn = str(dn_of_certificate(cert))
        self.state["certificates"][str(cert.serial_number)] = {
            "operator": operator,
            "kind": kind,
            "subject_dn": dn,
            "not_after": cert.not_valid_after_utc.isoformat(),
            "revoked": None,
            "pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        }
        self._audit(
            author,
            "certificate.issued",
            operator,
            kind=kind,
            subject_dn=dn,
            serial=str(cert.serial_number),
        )
        self.publish()
        return cert

    # -- operators ------------------------------------------------------------------------------

    def _operator(self, name: str) -> dict[str, Any]:
        op = self.state["operators"].get(name)
        if op is None or op["status"] != "active":
            raise NotFound(f"no active operator {name!r}")
        return op  # type: ignore[no-any-return]  # JSON state

    def add_operator(
        self,
        name: str,
        *,
        organisation: str,
        structure_id: str,
        state: str,
        domains: list[str],
        author: str,
        description: str = "",
        contact: str = "",
    ) -> None:
        """Registers an operator and its domains (listed once it has a server certificate)."""
        if not structure_id.isdigit() or structure_id[0] not in "13":
            raise InvalidInput("structure id: 1 + FINESS or 3 + SIRET, digits only")
        if not domains:
            raise InvalidInput("at least one domain")
        current = self.state["operators"].get(name)
        if current is not None and current["status"] == "active":
            raise Conflict(f"operator {name!r} already exists")
        taken = {
            d
            for n, o in self.state["operators"].items()
            if o["status"] == "active" and n != name
            for d in o["domains"]
        }
        clash = sorted(set(domains) & taken)
        if clash:
            raise Conflict(f"domain(s) already listed for another operator: {', '.join(clash)}")
        self.state["operators"][name] = {
            "organisation": organisation,
            "structure_id": structure_id,
            "state": state,
            "domains": [d.lower() for d in domains],
            "description": description or f"Domaine MSSanté de {organisation}",
            "contact": contact,
            "status": "active",
            "added": _now().isoformat(),
        }
        self._audit(author, "operator.added", name, domains=",".join(domains))
        self.publish()

    def revoke_operator(self, name: str, *, author: str, reason: str = "") -> list[int]:
        """Revokes every certificate of the operator and delists its domains."""
        op = self._operator(name)
        now = _now()
        revoked = []
        for serial, info in self.state["certificates"].items():
            if info["operator"] == name and not info["revoked"]:
                info["revoked"] = now.isoformat()
                self.intermediate.revoked[int(serial)] = now
                revoked.append(int(serial))
        op["status"] = "revoked"
        self._audit(
            author, "operator.revoked", name, reason=reason, serials=",".join(map(str, revoked))
        )
        self.publish()
        return revoked

    def operators(self) -> dict[str, Any]:
        return dict(self.state["operators"])

    # -- publication ------------------------------------------------------------------------------

    def liste(self) -> ListeBlanche:
        """The liste blanche: every domain of every active operator x each server cert DN."""
        now = _now()
        entries: list[DomainEntry] = []
        for name, op in sorted(self.state["operators"].items()):
            if op["status"] != "active":
                continue
            dns = sorted(
                {
                    c["subject_dn"]
                    for c in self.state["certificates"].values()
                    if c["operator"] == name
                    and c["kind"] == "server"
                    and not c["revoked"]
                    and dt.datetime.fromisoformat(c["not_after"]) > now
                }
            )
            for domain in op["domains"]:
                for dn in dns:
                    entries.append(
                        DomainEntry(
                            domain,
                            dn,
                            op["description"],
                            op["contact"],
                            op["contact"],
                            dt.datetime.fromisoformat(op["added"]),
                        )
                    )
        return ListeBlanche(now, entries)

    def crl(self) -> x509.CertificateRevocationList:
        now = _now()
        return self.intermediate.crl(
            last_update=now - dt.timedelta(minutes=5),
            next_update=now + dt.timedelta(days=_CRL_DAYS),
        )

    def publish(self) -> None:
        """Writes public/: the list, its checksum and CMS signature, CRLs, CA bundle."""
        pub = self.directory / "public"
        data = serialise_liste_blanche(self.liste())
        signature = sign_detached(data, self.signer_cert, self.signer_key)
        atomic_write(pub / LIST_NAME, data)
        atomic_write(
            pub / "checksum", f"{hashlib.sha256(data).hexdigest()}  {LIST_NAME}\n".encode()
        )
        atomic_write(pub / f"{LIST_NAME}.p7s", signature)
        pem = serialization.Encoding.PEM
        atomic_write(pub / "aci.crl", self.crl().public_bytes(pem))
        now = _now()
        arl = self.root.crl(
            last_update=now - dt.timedelta(minutes=5), next_update=now + dt.timedelta(days=30)
        )
        atomic_write(pub / "acr.crl", arl.public_bytes(pem))
        bundle = self.root.cert.public_bytes(pem) + self.intermediate.cert.public_bytes(pem)
        atomic_write(pub / "ca-bundle.pem", bundle)

    # -- OCSP -------------------------------------------------------------------------------------

    def ocsp_response(self, request_der: bytes) -> bytes:
        """An OCSP response (RFC 6960 §4.2) for the first certificate of a request."""
        try:
            req = ocsp.load_der_ocsp_request(request_der)
        except ValueError:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST
            ).public_bytes(serialization.Encoding.DER)
        issuer = self.intermediate.cert
        name_hash = hashlib.new(req.hash_algorithm.name, issuer.subject.public_bytes()).digest()
        info = self.state["certificates"].get(str(req.serial_number))
        if req.issuer_name_hash != name_hash or info is None:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.UNAUTHORIZED
            ).public_bytes(serialization.Encoding.DER)
        cert = x509.load_pem_x509_certificate(info["pem"].encode())
        now = _now()
        if info["revoked"]:
            status = ocsp.OCSPCertStatus.REVOKED
            rev_time: dt.datetime | None = dt.datetime.fromisoformat(info["revoked"])
        else:
            status, rev_time = ocsp.OCSPCertStatus.GOOD, None
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response(
                cert=cert,
                issuer=issuer,
                algorithm=hashes.SHA256(),
                cert_status=status,
                this_update=now,
                next_update=now + dt.timedelta(hours=1),
                revocation_time=rev_time,
                revocation_reason=None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
        )
        response = builder.sign(self.intermediate.key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)


def new_key_and_csr(cn: str) -> tuple[ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, bytes]:
    """A P-256 key and a CSR for ``cn`` (what an operator sends to ``operator add``)."""
    key = generate_key("ec")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM)
