"""Distinguished names as written in the liste blanche, and their comparison with certificates.

The liste blanche (notes §1.1) binds a domain to ``DNCertificatOperateur``, the full subject DN
of an operator certificate written as an RFC 4514 string, most specific RDN first:
``CN=<mta fqdn>,OU=<SIRET or FINESS>,O=<organisation>,ST=<Département (NN)>,C=FR``.

Normalisation rules (see ``docs/decisions.md``, "trust: DN normalisation"):

- attribute types are case-insensitive; short names (``CN``, ``OU``, ``O``, ``ST``, ``C``, ...),
  a few aliases (``S`` for ``ST``, ``E``/``EMAIL`` for ``emailAddress``) and dotted OIDs
  (``2.5.4.3``) all map to one canonical type;
- attribute values are compared exactly: case, inner spaces and accents are significant;
- RFC 4514 §3 escapes are decoded (``\\,`` ``\\+`` ``\\"`` ``\\\\`` ``\\<`` ``\\>`` ``\\;``
  ``\\=`` ``\\#`` ``\\ `` and ``\\XX`` hex pairs forming UTF-8), as are RFC 2253 quoted values;
  ``#hex`` values (BER) are decoded for the primitive string types;
- unescaped spaces around a type, an ``=`` or a separator are layout, not data (RFC 4514 requires
  leading/trailing spaces of a value to be escaped); ``inspect`` reports such DNs as
  non-canonical;
- the RDN sequence order is significant; inside a multi-valued RDN (``+``) it is not.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from caducee.core.errors import InvalidInput

__all__ = ["DistinguishedName", "DnSyntaxError", "dn_of_certificate", "dn_of_name"]


class DnSyntaxError(InvalidInput):
    """A DN string is not valid RFC 4514."""


# canonical short name per OID (dotted string)
_OID_SHORT: dict[str, str] = {
    NameOID.COMMON_NAME.dotted_string: "CN",
    NameOID.ORGANIZATIONAL_UNIT_NAME.dotted_string: "OU",
    NameOID.ORGANIZATION_NAME.dotted_string: "O",
    NameOID.STATE_OR_PROVINCE_NAME.dotted_string: "ST",
    NameOID.LOCALITY_NAME.dotted_string: "L",
    NameOID.COUNTRY_NAME.dotted_string: "C",
    NameOID.STREET_ADDRESS.dotted_string: "STREET",
    NameOID.DOMAIN_COMPONENT.dotted_string: "DC",
    NameOID.USER_ID.dotted_string: "UID",
    NameOID.SERIAL_NUMBER.dotted_string: "SERIALNUMBER",
    NameOID.EMAIL_ADDRESS.dotted_string: "EMAILADDRESS",
    NameOID.SURNAME.dotted_string: "SN",
    NameOID.GIVEN_NAME.dotted_string: "GN",
    NameOID.TITLE.dotted_string: "TITLE",
    NameOID.ORGANIZATION_IDENTIFIER.dotted_string: "ORGANIZATIONIDENTIFIER",
}
_NAME_TO_SHORT: dict[str, str] = {short: short for short in _OID_SHORT.values()}
_NAME_TO_SHORT.update(
    {
        "COMMONNAME": "CN",
        "S": "ST",
        "STATEORPROVINCENAME": "ST",
        "ORGANIZATIONNAME": "O",
        "ORGANIZATIONALUNITNAME": "OU",
        "COUNTRYNAME": "C",
        "LOCALITYNAME": "L",
        "E": "EMAILADDRESS",
        "EMAIL": "EMAILADDRESS",
        "SURNAME": "SN",
        "GIVENNAME": "GN",
    }
)
_SPECIAL = ',+"\\<>;='
# BER tags of primitive string types we decode in "#hex" values
_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}

Rdn = tuple[tuple[str, str], ...]


def _canonical_type(raw: str) -> str:
    name = raw.strip()
    if not name:
        raise DnSyntaxError("empty attribute type")
    upper = name.upper()
    if upper.startswith("OID."):
        upper = upper[4:]
    if upper[0].isdigit():
        parts = upper.split(".")
        if not all(p.isdigit() for p in parts) or len(parts) < 2:
            raise DnSyntaxError(f"bad attribute type {name!r}")
        return _OID_SHORT.get(upper, upper)
    if not (upper[0].isalpha() and all(ch.isalnum() or ch == "-" for ch in upper)):
        raise DnSyntaxError(f"bad attribute type {name!r}")
    return _NAME_TO_SHORT.get(upper, upper)


def _escape_value(value: str) -> str:
    out: list[str] = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        elif ch == "\x00":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


def _decode_hex_value(hexstr: str) -> str:
    try:
        raw = bytes.fromhex(hexstr)
    except ValueError as exc:
        raise DnSyntaxError(f"bad #hex value {hexstr!r}") from exc
    if len(raw) < 2 or raw[0] not in _STRING_TAGS:
        raise DnSyntaxError("unsupported #hex value (not a primitive string type)")
    length = raw[1]
    body = raw[2:]
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 2 or len(body) < n:
            raise DnSyntaxError("bad BER length in #hex value")
        length = int.from_bytes(body[:n], "big")
        body = body[n:]
    if length != len(body):
        raise DnSyntaxError("bad BER length in #hex value")
    try:
        return body.decode(_STRING_TAGS[raw[0]])
    except UnicodeDecodeError as exc:
        raise DnSyntaxError("undecodable #hex value") from exc


def _parse(text: str) -> tuple[Rdn, ...]:
    """Parses an RFC 4514 string into RDNs in string order (most specific first)."""
    rdns: list[Rdn] = []
    current: list[tuple[str, str]] = []
    i, n = 0, len(text)
    if not text.strip():
        raise DnSyntaxError("empty DN")
    while True:
        eq = text.find("=", i)
        if eq < 0:
            raise DnSyntaxError(f"missing '=' after {text[i:]!r}")
        attr_type = _canonical_type(text[i:eq])
        j = eq + 1
        while j < n and text[j] == " ":
            j += 1
        value_bytes = bytearray()
        if j < n and text[j] == "#":
            k = j + 1
            while k < n and text[k] not in ",+ ":
                k += 1
            value = _decode_hex_value(text[j + 1 : k])
            j = k
        elif j < n and text[j] == '"':
            j += 1
            while True:
                if j >= n:
                    raise DnSyntaxError("unterminated quoted value")
                ch = text[j]
                if ch == '"':
                    j += 1
                    break
                if ch == "\\":
                    if j + 1 >= n:
                        raise DnSyntaxError("dangling escape")
                    value_bytes += text[j + 1].encode()
                    j += 2
                    continue
                value_bytes += ch.encode()
                j += 1
            value = value_bytes.decode()
        else:
            trailing_escaped = 0  # length of value_bytes up to the last escaped char
            while j < n and text[j] not in ",+;":
                ch = text[j]
                if ch == "\\":
                    if j + 1 >= n:
                        raise DnSyntaxError("dangling escape at end of DN")
                    nxt = text[j + 1]
                    if nxt in _SPECIAL or nxt in " #":
                        value_bytes += nxt.encode()
                        j += 2
                    elif j + 2 < n and all(
                        c in "0123456789abcdefABCDEF" for c in text[j + 1 : j + 3]
                    ):
                        value_bytes.append(int(text[j + 1 : j + 3], 16))
                        j += 3
                    else:
                        raise DnSyntaxError(f"bad escape {text[j : j + 3]!r}")
                    trailing_escaped = len(value_bytes)
                    continue
                if ch in '"<>' or ch == "\x00":
                    raise DnSyntaxError(f"unescaped {ch!r} in value")
                value_bytes += ch.encode()
                j += 1
            # unescaped trailing spaces are layout
            end = len(value_bytes)
            while end > trailing_escaped and value_bytes[end - 1] == 0x20:
                end -= 1
            try:
                value = bytes(value_bytes[:end]).decode()
            except UnicodeDecodeError as exc:
                raise DnSyntaxError("escaped bytes are not UTF-8") from exc
        while j < n and text[j] == " ":
            j += 1
        current.append((attr_type, value))
        if j >= n:
            rdns.append(tuple(sorted(current)))
            return tuple(rdns)
        sep = text[j]
        if sep == "+":
            pass
        elif sep in ",;":
            rdns.append(tuple(sorted(current)))
            current = []
        else:
            raise DnSyntaxError(f"unexpected {sep!r} after value")
        i = j + 1
        if i >= n:
            raise DnSyntaxError("DN ends with a separator")


@dataclass(frozen=True, slots=True)
class DistinguishedName:
    """A DN as a sequence of RDNs in string order (most specific first), normalised for
    comparison; ``str()`` gives the canonical RFC 4514 form used by the liste blanche."""

    rdns: tuple[Rdn, ...]

    @classmethod
    def parse(cls, text: str) -> DistinguishedName:
        """Parses an RFC 4514 string; raises :class:`DnSyntaxError`."""
        return cls(_parse(text))

    def get(self, attr_type: str) -> str | None:
        """The first value of ``attr_type`` (any accepted spelling), or None."""
        want = _canonical_type(attr_type)
        for rdn in self.rdns:
            for t, v in rdn:
                if t == want:
                    return v
        return None

    def __str__(self) -> str:
        return ",".join("+".join(f"{t}={_escape_value(v)}" for t, v in rdn) for rdn in self.rdns)


def dn_of_name(name: x509.Name) -> DistinguishedName:
    """The DN of an X.509 ``Name`` (RFC 5280 §4.1.2.4), in RFC 4514 string order."""
    rdns: list[Rdn] = []
    for rdn in reversed(name.rdns):
        pairs: list[tuple[str, str]] = []
        for attr in rdn:
            dotted = attr.oid.dotted_string
            value = attr.value
            text = value if isinstance(value, str) else bytes(value).hex()
            pairs.append((_OID_SHORT.get(dotted, dotted), text))
        rdns.append(tuple(sorted(pairs)))
    return DistinguishedName(tuple(rdns))


def dn_of_certificate(cert: x509.Certificate) -> DistinguishedName:
    """The subject DN of a certificate."""
    return dn_of_name(cert.subject)
