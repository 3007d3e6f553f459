"""INS (Identifiant National de Santé): OIDs, key check, qualification, patient addresses.

- The INS matricule is the NIR (or the NIA, awaiting a NIR): 13 characters and a 2-digit key,
  ``key = 97 - (number mod 97)``; in a Corsican NIR the department ``2A`` counts as ``19`` and
  ``2B`` as ``18`` (INSEE rule).
- OIDs: ``1.2.250.1.213.1.4.8`` INS-NIR, ``.9`` INS-NIA, ``.10`` INS-NIR of test, ``.11`` INS-NIA
  of test (CI-SIS schematron).
- A *qualified* INS (Référentiel #2 §3.8.2) comes with its OID and the identity traits: birth
  name, first birth forename, birth date, sex (and the birthplace COG code that the CI-SIS
  schematron requires alongside).
- Patient addresses ``<matricule>@patient.<domain>`` are built only from a qualified INS
  (Ref#2 ECO.2.2.6).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from caducee.core.errors import InvalidInput

__all__ = [
    "INS_NIA",
    "INS_NIA_TEST",
    "INS_NIR",
    "INS_NIR_TEST",
    "INS_OIDS",
    "IdentityTraits",
    "InsStatus",
    "check_ins",
    "mask_ins",
    "nir_key",
    "nir_key_ok",
    "patient_address",
]

INS_NIR = "1.2.250.1.213.1.4.8"
INS_NIA = "1.2.250.1.213.1.4.9"
INS_NIR_TEST = "1.2.250.1.213.1.4.10"
INS_NIA_TEST = "1.2.250.1.213.1.4.11"
INS_OIDS: dict[str, str] = {
    INS_NIR: "INS-NIR",
    INS_NIA: "INS-NIA",
    INS_NIR_TEST: "INS-NIR-TEST",
    INS_NIA_TEST: "INS-NIA-TEST",
}
_INS_SHAPE = re.compile(r"^\d{5}(\d{2}|2[AB])\d{8}$")


def _numeric_body(body13: str) -> int:
    """The 13-character NIR body as the number used for the key (Corsica: 2A -> 19, 2B -> 18)."""
    dept = body13[5:7].upper()
    if dept == "2A":
        body13 = body13[:5] + "19" + body13[7:]
    elif dept == "2B":
        body13 = body13[:5] + "18" + body13[7:]
    if not body13.isdigit():
        raise InvalidInput("INS matricule has a non-digit character")
    return int(body13)


def nir_key(body13: str) -> int:
    """The control key of a 13-character NIR body: ``97 - (number mod 97)``."""
    if len(body13) != 13:
        raise InvalidInput("NIR body must have 13 characters")
    return 97 - (_numeric_body(body13) % 97)


def nir_key_ok(matricule: str) -> bool:
    """True when the 15-character matricule is well formed and its key matches."""
    m = matricule.strip().upper()
    if not _INS_SHAPE.match(m):
        return False
    return nir_key(m[:13]) == int(m[13:])


def mask_ins(matricule: str | None) -> str:
    """A loggable form of an INS: never the whole matricule."""
    if not matricule:
        return "-"
    return matricule[:1] + "*" * max(0, len(matricule) - 3) + matricule[-2:]


@dataclass(frozen=True)
class IdentityTraits:
    """The INS identity traits of a patient (RNIV/INS referential)."""

    birth_family: str | None = None
    first_birth_given: str | None = None
    birth_givens: str | None = None
    birth_date: str | None = None  # YYYYMMDD
    sex: str | None = None  # M / F / U
    birthplace_cog: str | None = None


@dataclass(frozen=True)
class InsStatus:
    """Outcome of the qualified-INS check. ``problems`` are short reasons, no identity data."""

    present: bool
    kind: str | None = None
    test: bool = False
    key_ok: bool | None = None
    missing_traits: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def qualified(self) -> bool:
        return self.present and not self.problems and not self.missing_traits


def check_ins(
    root: str | None,
    matricule: str | None,
    traits: IdentityTraits,
    *,
    require_birthplace: bool = True,
) -> InsStatus:
    """Check one INS identifier (OID ``root``, ``matricule``) and its traits.

    The key check applies to NIR matricules (real and test); an NIA has the same shape but its
    key is not checked here (it is allocated by the CNAV and not always a NIR-style key).
    """
    if not root or root not in INS_OIDS or not matricule:
        return InsStatus(
            present=False, problems=("no INS identifier (NIR/NIA OID) for the patient",)
        )
    kind = INS_OIDS[root]
    m = matricule.strip().upper()
    problems: list[str] = []
    key_ok: bool | None = None
    if not _INS_SHAPE.match(m):
        problems.append(f"{kind} matricule is not 15 characters of the NIR form")
    elif root in (INS_NIR, INS_NIR_TEST):
        key_ok = nir_key_ok(m)
        if not key_ok:
            problems.append(f"{kind} matricule has a wrong control key")
    missing = [
        name
        for name, value in (
            ("birth name", traits.birth_family),
            ("first birth forename", traits.first_birth_given),
            ("birth date", traits.birth_date),
            ("sex", traits.sex),
        )
        if not value
    ]
    if require_birthplace and not traits.birthplace_cog:
        missing.append("birthplace (COG code)")
    if traits.sex and traits.sex not in ("M", "F", "U"):
        problems.append("sex is not M, F or U")
    if traits.birth_date and not re.match(r"^\d{8}", traits.birth_date):
        problems.append("birth date is not YYYYMMDD")
    return InsStatus(
        present=True,
        kind=kind,
        test=root in (INS_NIR_TEST, INS_NIA_TEST),
        key_ok=key_ok,
        missing_traits=tuple(missing),
        problems=tuple(problems),
    )


def patient_address(status: InsStatus, matricule: str, domain: str = "patient.mssante.fr") -> str:
    """The Mon Espace Santé address of a patient, only from a qualified INS (ECO.2.2.6)."""
    if not status.qualified:
        reasons = list(status.problems) + [f"missing {t}" for t in status.missing_traits]
        raise InvalidInput("patient address needs a qualified INS: " + "; ".join(reasons))
    m = matricule.strip().upper()
    if not m.isdigit():
        # Corsican NIRs carry letters; the MES address uses the 15-character matricule as is.
        m = m.lower()
    return f"{m}@{domain}"
