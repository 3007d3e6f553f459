"""CDA R2 reader and verdicts on the shared ANS (CI-SIS) and HL7 C-CDA examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from caducee.core.errors import ConfigError, InvalidInput
from caducee.documents.cda import read_cda
from caducee.documents.narrative import render_narrative
from caducee.documents.validate import SCHEMA_ENV, validate_cda

ANS = [
    "BIO-CR-BIO_2021.01_CDA-R2-Niveau-1.xml",
    "BIO-CR-BIO_2024.01_CR-2nde-intention-PDF.xml",
    "BIO-CR-BIO_2024.01_Microbiologie_V1.xml",
    "BIO-CR-BIO_2024.01_TSH_1.xml",
    "DOC_NON_STRUCTURE_CDA-R2-N1.xml",
    "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml",
    "IPS-FR_2024.01.xml",
    "LDL-EES_2022.01.xml",
    "LDL-SES_2022.01.xml",
    "VSM_1.4_2022.01.xml",
]
TYPES = {
    "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml": "18748-4",
    "LDL-SES_2022.01.xml": "11490-0",
    "VSM_1.4_2022.01.xml": "SYNTH",
    "BIO-CR-BIO_2024.01_TSH_1.xml": "11502-2",
}


@pytest.fixture(scope="module")
def schema(shared_dir: Path) -> Path:
    return shared_dir / "corpora/clinical/cda-fr-cisis/infrastructure/cda/CDA_extended.xsd"


@pytest.mark.parametrize("name", ANS)
def test_ans_examples_read_and_conform(shared_dir: Path, schema: Path, name: str) -> None:
    doc = read_cda((shared_dir / "corpora/clinical/cda-fr-cisis" / name).read_bytes())
    assert doc.realm == "FR"
    assert (doc.type_code is not None and doc.type_code.system == "2.16.840.1.113883.6.1") or (
        doc.type_code is not None and doc.type_code.code == "SYNTH"
    )
    if name in TYPES:
        assert doc.type_code is not None and doc.type_code.code == TYPES[name]
    assert doc.set_id is not None and doc.version in (1, 2)
    assert doc.effective_time and doc.confidentiality is not None
    assert doc.author is not None and doc.author.organisation
    assert doc.legal_authenticator is not None
    p = doc.patient
    assert p.ins is not None and p.ins.extension == "279035121518989"
    assert p.ins.root == "1.2.250.1.213.1.4.10"
    assert p.ins_status.kind == "INS-NIR-TEST" and p.ins_status.key_ok
    assert p.ins_status.qualified
    assert p.traits.birth_family == "PAT-TROIS" and p.traits.first_birth_given == "DOMINIQUE"
    assert p.traits.birth_date == "19790328" and p.traits.sex == "F"
    assert p.traits.birthplace_cog == "51215"
    if name != "IPS-FR_2024.01.xml":  # the IPS example carries the INS only
        assert [i.extension for i in p.local_ids] == ["1234567890121"]
    verdict = validate_cda(doc, schema=schema)
    assert verdict.conformant, verdict.reasons
    assert verdict.schema_checked and verdict.schema_ok


def test_ccda_examples_are_lenient_but_not_french(shared_dir: Path, schema: Path) -> None:
    folder = shared_dir / "corpora/clinical/cda-hl7-ccda"
    verdicts = {}
    for path in sorted(folder.glob("*.xml")):
        doc = read_cda(path.read_bytes())  # lenient: US documents read fine
        assert doc.title and doc.type_code is not None
        assert not doc.patient.ins_status.present
        verdicts[path.name] = validate_cda(doc, schema=schema)
    assert all(not v.conformant for v in verdicts.values())
    assert all("realmCode is US, not FR" in v.reasons for v in verdicts.values())
    # The XML schema itself rejects exactly two of them, for vocabulary newer than CDA R2 2005:
    schema_failures = {n for n, v in verdicts.items() if not v.schema_ok}
    assert schema_failures == {"Discharge_Summary.xml", "Referral_Note.xml"}
    ds = verdicts["Discharge_Summary.xml"].reasons[0]
    assert "performer" in ds and "'PPRF'" in ds  # ParticipationType PPRF is not in voc.xsd
    rn = verdicts["Referral_Note.xml"].reasons[0]
    assert "participantRole" in rn and "'IND'" in rn  # RoleClass IND is not in voc.xsd


def test_schema_path_from_environment(
    shared_dir: Path, schema: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = read_cda((shared_dir / "corpora/clinical/cda-fr-cisis" / ANS[5]).read_bytes())
    monkeypatch.delenv(SCHEMA_ENV, raising=False)
    assert not validate_cda(doc).schema_checked
    monkeypatch.setenv(SCHEMA_ENV, str(schema))
    assert validate_cda(doc).schema_ok
    monkeypatch.setenv(SCHEMA_ENV, "/nonexistent/CDA.xsd")
    with pytest.raises(ConfigError, match="file not found"):
        validate_cda(doc)


def test_narrative_is_safe_html(shared_dir: Path) -> None:
    raw = (shared_dir / "corpora/clinical/cda-fr-cisis/LDL-SES_2022.01.xml").read_bytes()
    hostile = raw.replace(
        b"<title>Lettre de liaison",
        b"<title>&lt;script&gt;alert(1)&lt;/script&gt;Lettre de liaison",
        1,
    )
    html = render_narrative(read_cda(hostile))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<table>" in html and "<h2>" in html
    assert "href" not in html and "src=" not in html and "style" not in html


def test_not_a_cda_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not a CDA"):
        read_cda(b"<root/>")
    with pytest.raises(InvalidInput, match="not well-formed"):
        read_cda(b"<ClinicalDocument")
