"""DN parsing and normalisation rules (docs/decisions.md, "trust: DN normalisation")."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from caducee.trust.dn import DistinguishedName, DnSyntaxError, dn_of_name

REAL = "CN=medimail-asip.mipih.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR"


def P(s: str) -> DistinguishedName:
    return DistinguishedName.parse(s)


def test_real_dn_round_trips() -> None:
    dn = P(REAL)
    assert str(dn) == REAL
    assert dn.get("cn") == "medimail-asip.mipih.fr"
    assert dn.get("ST") == "Haute-Garonne (31)"


def test_types_case_insensitive_and_aliases() -> None:
    assert P("cn=a,Ou=1,o=X,st=Y (1),c=FR") == P("CN=a,OU=1,O=X,ST=Y (1),C=FR")
    assert P("2.5.4.3=a,S=Y,OID.2.5.4.6=FR") == P("CN=a,ST=Y,C=FR")


def test_values_are_exact() -> None:
    assert P("CN=a,O=GIP MIPIH") != P("CN=a,O=gip mipih")
    assert P("CN=a,O=GIP MIPIH") != P("CN=a,O=GIP  MIPIH")
    assert P("CN=a,ST=Isère (38)") != P("CN=a,ST=Isere (38)")


def test_order_matters_but_not_inside_multivalued_rdn() -> None:
    assert P("CN=a,O=b") != P("O=b,CN=a")
    assert P("CN=a+UID=1,O=b") == P("UID=1+CN=a,O=b")


def test_rfc4514_escapes() -> None:
    assert P(r"CN=a\,b,O=x\+y").get("CN") == "a,b"
    assert P(r"CN=a\,b,O=x\+y").get("O") == "x+y"
    assert P(r"CN=\23hash\20").get("CN") == "#hash "
    assert P(r"O=Is\C3\A8re").get("O") == "Isère"
    assert P('O="a, b"').get("O") == "a, b"
    assert P("CN=#0c03616263").get("CN") == "abc"
    dn = P(r"CN=a\,b,O=\ lead")
    assert str(dn) == r"CN=a\,b,O=\ lead"
    assert P(str(dn)) == dn


def test_layout_spaces_are_not_data() -> None:
    assert P("CN=a, O=b") == P("CN=a,O=b")
    assert P("CN = a ,O=b") == P("CN=a,O=b")
    assert P(r"CN=a\ ,O=b").get("CN") == "a "


@pytest.mark.parametrize(
    "bad", ["", "CN", "CN=a,", "=a", "CN=a\\", "CN=a\\zz", "C N=a", "CN=a,b", 'CN=a"b', "CN=#zz"]
)
def test_syntax_errors(bad: str) -> None:
    with pytest.raises(DnSyntaxError):
        P(bad)


def test_dn_of_x509_name_matches_list_form() -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Haute-Garonne (31)"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "GIP MIPIH"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "318310021300028"),
            x509.NameAttribute(NameOID.COMMON_NAME, "medimail-asip.mipih.fr"),
        ]
    )
    assert dn_of_name(name) == P(REAL)
    assert str(dn_of_name(name)) == REAL
    with_comma = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "A, B")])
    assert dn_of_name(with_comma) == P(with_comma.rfc4514_string())
