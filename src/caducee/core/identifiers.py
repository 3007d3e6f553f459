"""Validators for the identifiers that hold MSSanté mailboxes (BAL).

- RPPS: 11 digits (the person id of the Répertoire Partagé des Professionnels de Santé).
- ADELI: 9 digits (professions not yet in the RPPS).
- IDNPS (national person id): the type digit then the id: ``8`` + RPPS or ``0`` + ADELI
  (mssante-notes §6.1).
- SIRET: 14 digits with a Luhn key (INSEE); La Poste's establishments (SIREN 356000000) use
  the digit-sum-divisible-by-5 rule instead.
- FINESS: 9 characters, the département (2 digits, or 2A/2B for Corsica), 6 digits and a Luhn
  key over the first 8 (2A/2B count as 20 for the key).

A PER mailbox's holder is stored as an IDNPS; an ORG/APP/CAB mailbox's holder as the SIRET or
FINESS as given (mssante-notes §5.1, TRE_R257).
"""

from __future__ import annotations

import re

from caducee.core.errors import InvalidInput
from caducee.core.model import MailboxType

__all__ = [
    "holder_for",
    "is_adeli",
    "is_finess",
    "is_rpps",
    "is_siret",
    "luhn_ok",
]

_LA_POSTE_SIREN = "356000000"


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check over a string of digits, key digit last."""
    if not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def is_rpps(value: str) -> bool:
    return re.fullmatch(r"[0-9]{11}", value) is not None


def is_adeli(value: str) -> bool:
    return re.fullmatch(r"[0-9]{9}", value) is not None


def is_siret(value: str) -> bool:
    if re.fullmatch(r"[0-9]{14}", value) is None:
        return False
    if value.startswith(_LA_POSTE_SIREN) and value != _LA_POSTE_SIREN + "00012":
        return sum(int(c) for c in value) % 5 == 0
    return luhn_ok(value)


def is_finess(value: str) -> bool:
    m = re.fullmatch(r"([0-9]{2}|2[AB])([0-9]{7})", value.upper())
    if m is None:
        return False
    dept = "20" if m.group(1) in ("2A", "2B") else m.group(1)
    return luhn_ok(dept + m.group(2))


def holder_for(type: MailboxType, value: str) -> str:
    """Validates and normalises a mailbox holder id for a BAL ``type``.

    PER: an RPPS (11 digits), an ADELI (9 digits) or an IDNPS (``8``+RPPS, ``0``+ADELI);
    returns the IDNPS. ORG/APP/CAB: a SIRET (14 digits) or a FINESS (9); returns it as given.
    Raises ``InvalidInput`` with a one-line reason.
    """
    v = value.strip().replace(" ", "")
    if type is MailboxType.PER:
        if len(v) == 12 and v.startswith("8") and is_rpps(v[1:]):
            return v
        if len(v) == 10 and v.startswith("0") and is_adeli(v[1:]):
            return v
        if is_rpps(v):
            return "8" + v
        if is_adeli(v):
            return "0" + v
        raise InvalidInput(
            f"holder {value!r} of a PER mailbox must be an RPPS (11 digits), an ADELI (9 digits)"
            " or an IDNPS (8+RPPS, 0+ADELI)"
        )
    if len(v) == 14:
        if not is_siret(v):
            raise InvalidInput(f"SIRET {value!r} has a wrong check digit (Luhn)")
        return v
    if len(v) == 9:
        if not is_finess(v):
            raise InvalidInput(f"FINESS {value!r} is malformed or has a wrong check digit (Luhn)")
        return v.upper()
    raise InvalidInput(
        f"holder {value!r} of a {type.value} mailbox must be a SIRET (14 digits) or a FINESS (9)"
    )
