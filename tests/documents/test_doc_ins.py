"""INS: NIR key (Corsica), OIDs, qualification and patient addresses."""

from __future__ import annotations

import pytest

from caducee.core.errors import InvalidInput
from caducee.documents.ins import (
    INS_NIA,
    INS_NIR,
    INS_NIR_TEST,
    IdentityTraits,
    check_ins,
    mask_ins,
    nir_key,
    nir_key_ok,
    patient_address,
)

TRAITS = IdentityTraits("PAT-TROIS", "DOMINIQUE", "DOMINIQUE", "19790328", "F", "51215")


def test_nir_key() -> None:
    assert nir_key("2790351215189") == 89
    assert nir_key_ok("279035121518989")
    assert nir_key_ok("277076322082910")
    assert not nir_key_ok("279035121518988")
    assert not nir_key_ok("27903512151898")  # 14 characters


def test_corsica_departments() -> None:
    # 2A counts as 19 and 2B as 18 in the key computation.
    body_2a = "1850" + "12A" + "123" + "456"
    body_2b = "1850" + "12B" + "123" + "456"
    assert nir_key(body_2a) == 97 - int("1850119123456") % 97
    assert nir_key(body_2b) == 97 - int("1850118123456") % 97
    assert nir_key_ok(body_2a + f"{nir_key(body_2a):02d}")
    assert not nir_key_ok(body_2b + f"{nir_key(body_2a):02d}")


def test_qualified_ins() -> None:
    ok = check_ins(INS_NIR_TEST, "279035121518989", TRAITS)
    assert ok.qualified and ok.test and ok.kind == "INS-NIR-TEST"
    real = check_ins(INS_NIR, "279035121518989", TRAITS)
    assert real.qualified and not real.test
    bad_key = check_ins(INS_NIR, "279035121518988", TRAITS)
    assert not bad_key.qualified and "wrong control key" in bad_key.problems[0]
    nia = check_ins(INS_NIA, "279035121518988", TRAITS)  # NIA: key not checked
    assert nia.qualified and nia.key_ok is None
    missing = check_ins(
        INS_NIR, "279035121518989", IdentityTraits("PAT-TROIS", None, None, "19790328", "F")
    )
    assert not missing.qualified
    assert missing.missing_traits == ("first birth forename", "birthplace (COG code)")
    assert not check_ins("1.2.3.4", "279035121518989", TRAITS).present


def test_patient_address_only_from_qualified_ins() -> None:
    ok = check_ins(INS_NIR_TEST, "279035121518989", TRAITS)
    assert patient_address(ok, "279035121518989") == "279035121518989@patient.mssante.fr"
    bad = check_ins(INS_NIR, "279035121518988", TRAITS)
    with pytest.raises(InvalidInput, match="qualified INS"):
        patient_address(bad, "279035121518988")


def test_mask() -> None:
    assert mask_ins("279035121518989") == "2************89"
    assert "035121518" not in mask_ins("279035121518989")
