"""Detached CMS signatures of the liste blanche (RFC 5652 §5), our addition to the publication.

Signing uses ``cryptography``'s PKCS#7 builder (SignedData, detached, with signed attributes
and the signer certificate). ``cryptography`` has no CMS verification, so :func:`verify_detached`
walks the DER itself — only what RFC 5652 §5.4 needs: the signer certificate from
``certificates``, the ``messageDigest`` signed attribute (SHA-256 of the content), and the
signature over the DER ``SET OF`` signed attributes — then checks the signer certificate
against the trust-space CA bundle (issued by one of its CAs, within validity).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from caducee.core.errors import TrustError

__all__ = ["sign_detached", "verify_detached"]

_OID_SIGNED_DATA = bytes.fromhex("2a864886f70d010702")
_OID_MESSAGE_DIGEST = bytes.fromhex("2a864886f70d010904")
_OID_SHA256 = bytes.fromhex("608648016503040201")


def sign_detached(
    data: bytes, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
) -> bytes:
    """A detached CMS SignedData (DER) over ``data``, SHA-256, signer certificate included."""
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(data)
        .add_signer(cert, key, hashes.SHA256())
        .sign(
            serialization.Encoding.DER,
            [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
        )
    )


def _tlv(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the DER element at ``pos``."""
    if pos + 2 > len(buf):
        raise TrustError("signature: truncated DER")
    tag = buf[pos]
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(buf):
            raise TrustError("signature: bad DER length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > len(buf):
        raise TrustError("signature: truncated DER")
    return tag, pos, pos + length


def _children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, value start, value end, element start) of every element in buf[start:end]."""
    out = []
    pos = start
    while pos < end:
        tag, vs, ve = _tlv(buf, pos)
        out.append((tag, vs, ve, pos))
        pos = ve
    return out


def verify_detached(
    data: bytes,
    signature: bytes,
    ca_certs: list[x509.Certificate],
    *,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """Verifies a detached CMS signature over ``data``; returns the signer certificate.

    Raises TrustError when the signature is malformed, does not match, or the signer is not
    issued by one of ``ca_certs`` or is outside its validity.
    """
    now = now or dt.datetime.now(dt.UTC)
    if signature.lstrip().startswith(b"-----BEGIN"):
        body = b"".join(
            line for line in signature.strip().splitlines() if not line.startswith(b"-----")
        )
        import base64

        signature = base64.b64decode(body)
    try:
        return _verify(data, signature, ca_certs, now)
    except (IndexError, ValueError) as exc:
        raise TrustError(f"signature: malformed CMS ({exc})") from exc


def _verify(
    data: bytes, sig: bytes, ca_certs: list[x509.Certificate], now: dt.datetime
) -> x509.Certificate:
    tag, vs, ve = _tlv(sig, 0)
    content_info = _children(sig, vs, ve)
    if tag != 0x30 or len(content_info) < 2:
        raise TrustError("signature: not a CMS ContentInfo")
    oid = content_info[0]
    if sig[oid[1] : oid[2]] != _OID_SIGNED_DATA:
        raise TrustError("signature: not a CMS SignedData")
    explicit = content_info[1]
    _, sd_s, sd_e = _tlv(sig, explicit[1])
    signed_data = _children(sig, sd_s, sd_e)
    certs: list[x509.Certificate] = []
    signer_infos = None
    for t, s, e, _start in signed_data[3:]:
        if t == 0xA0:  # certificates [0] IMPLICIT
            for _ct, _cs, ce, cstart in _children(sig, s, e):
                certs.append(x509.load_der_x509_certificate(sig[cstart:ce]))
        elif t == 0x31:
            signer_infos = _children(sig, s, e)
    if not signer_infos:
        raise TrustError("signature: no signer")
    if not certs:
        raise TrustError("signature: no signer certificate included")
    si = _children(sig, signer_infos[0][1], signer_infos[0][2])
    digest_alg = _children(sig, si[2][1], si[2][2])[0]
    if sig[digest_alg[1] : digest_alg[2]] != _OID_SHA256:
        raise TrustError("signature: digest algorithm is not SHA-256")
    attrs = si[3]
    if attrs[0] != 0xA0:
        raise TrustError("signature: no signed attributes")
    message_digest = None
    for _t, s, e, _start in _children(sig, attrs[1], attrs[2]):
        attr = _children(sig, s, e)
        if sig[attr[0][1] : attr[0][2]] == _OID_MESSAGE_DIGEST:
            value = _children(sig, attr[1][1], attr[1][2])[0]
            message_digest = sig[value[1] : value[2]]
    if message_digest is None:
        raise TrustError("signature: no messageDigest attribute")
    if not hmac.compare_digest(message_digest, hashlib.sha256(data).digest()):
        raise TrustError("signature does not match the list (digest differs)")
    signed_attrs = b"\x31" + sig[attrs[3] + 1 : attrs[2]]
    signature_value = si[5]
    if signature_value[0] != 0x04:
        raise TrustError("signature: malformed SignerInfo")
    raw_sig = sig[signature_value[1] : signature_value[2]]
    signer = _check_signature(certs, signed_attrs, raw_sig)
    _check_signer(signer, ca_certs, now)
    return signer


def _check_signature(certs: list[x509.Certificate], signed: bytes, raw: bytes) -> x509.Certificate:
    for cert in certs:
        pub = cert.public_key()
        try:
            if isinstance(pub, ec.EllipticCurvePublicKey):
                pub.verify(raw, signed, ec.ECDSA(hashes.SHA256()))
            elif isinstance(pub, rsa.RSAPublicKey):
                pub.verify(raw, signed, padding.PKCS1v15(), hashes.SHA256())
            else:
                continue
        except InvalidSignature:
            continue
        return cert
    raise TrustError("signature does not verify with the included certificate")


def _check_signer(
    signer: x509.Certificate, ca_certs: list[x509.Certificate], now: dt.datetime
) -> None:
    if not signer.not_valid_before_utc <= now <= signer.not_valid_after_utc:
        raise TrustError("signature: signer certificate outside its validity")
    for ca in ca_certs:
        if ca.subject != signer.issuer:
            continue
        try:
            signer.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        if not ca.not_valid_before_utc <= now <= ca.not_valid_after_utc:
            raise TrustError("signature: signer's CA certificate outside its validity")
        return
    raise TrustError("signature: signer not issued by a trust-space CA")
