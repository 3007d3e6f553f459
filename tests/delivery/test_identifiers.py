from __future__ import annotations

import pytest

from caducee.core.errors import InvalidInput
from caducee.core.identifiers import holder_for, is_finess, is_siret, luhn_ok
from caducee.core.model import MailboxType


def test_luhn() -> None:
    assert luhn_ok("79927398713")
    assert not luhn_ok("79927398710")
    assert not luhn_ok("12a4")


@pytest.mark.parametrize("siret", ["73282932000074", "49940088500020", "35600000049837"])
def test_valid_siret(siret: str) -> None:
    assert is_siret(siret)


@pytest.mark.parametrize("siret", ["73282932000075", "7328293200007", "abcdefghijklmn"])
def test_invalid_siret(siret: str) -> None:
    assert not is_siret(siret)


def test_finess_key_and_corsica() -> None:
    assert is_finess("750712184")  # AP-HP
    assert not is_finess("750712185")
    assert is_finess("2A0000008")  # 2A counts as 20 for the key
    assert not is_finess("2C0000008")


def test_per_holder_normalised_to_idnps() -> None:
    assert holder_for(MailboxType.PER, "10001045367") == "810001045367"
    assert holder_for(MailboxType.PER, "012600631") == "0012600631"
    assert holder_for(MailboxType.PER, "810001045367") == "810001045367"
    with pytest.raises(InvalidInput, match="RPPS"):
        holder_for(MailboxType.PER, "1234")


@pytest.mark.parametrize("kind", [MailboxType.ORG, MailboxType.APP, MailboxType.CAB])
def test_structure_holders(kind: MailboxType) -> None:
    assert holder_for(kind, "73282932000074") == "73282932000074"
    assert holder_for(kind, "750712184") == "750712184"
    with pytest.raises(InvalidInput, match="Luhn"):
        holder_for(kind, "73282932000075")
    with pytest.raises(InvalidInput, match="SIRET"):
        holder_for(kind, "10001045367")
