"""MSSanté message rules (Ref#2 ECO.2.x), MDN (RFC 8098, ANS profile) and HL7 v2 MDM/ACK."""

from __future__ import annotations

import base64
import email
from email.policy import default
from pathlib import Path

import hl7
import pytest

from caducee.core.errors import InvalidInput, QuotaExceeded
from caducee.documents.cda import read_cda
from caducee.documents.hl7v2 import MdmRequest, build_ack, build_mdm, escape, parse_ack
from caducee.documents.mdn import build_mdn, mdn_requested, parse_mdn
from caducee.documents.mss import build_message, build_subject, pdf_filename

IMG = "corpora/clinical/cda-fr-cisis/IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml"
ACKS = (
    "corpora/clinical/hl7v2-fr/Trans_LPS_CDA_MSSante/"
    "TRANSMISSION_LPS_DOC_CDA_COURRIEL_FROM_MSSANTE_V1.1"
)


@pytest.fixture
def cda(shared_dir: Path) -> bytes:
    return (shared_dir / IMG).read_bytes()


def test_subject_and_pdf_name(cda: bytes) -> None:
    doc = read_cda(cda)
    assert build_subject(doc) == "XDM/1.0/DDM+CR d’imagerie médicale PAT-TROIS DOMINIQUE 28/03/1979"
    assert (
        pdf_filename(doc) == "20210108_CR d’imagerie médicale_PAT-TROIS_DOMINIQUE_1234567890121.pdf"
    )


def test_message_headers(cda: bytes) -> None:
    msg = build_message(
        sender="a@x.mssante.fr", recipients=["b@y.mssante.fr"], cdas=[cda, cda], nil="DEV935997"
    )
    parsed = email.message_from_bytes(msg.as_bytes(), policy=default)
    assert parsed["X-MSS-CODECDA"] == "18748-4,18748-4"
    assert parsed["X-MSS-INS"] == "O"
    assert parsed["X-MSS-NIL"] == "DEV935997"
    assert parsed["Disposition-Notification-To"] == "a@x.mssante.fr"
    assert parsed["Message-ID"].endswith("@x.mssante.fr>")
    assert parsed.get_body(("plain",)).get_content_charset() == "utf-8"


def test_ins_header_n_without_qualified_ins(cda: bytes) -> None:
    no_birthplace = cda.replace(b"<county>51215</county>", b"", 1)
    msg = build_message(sender="a@x.fr", recipients=["b@y.fr"], cdas=[no_birthplace])
    assert msg["X-MSS-INS"] == "N"


def test_patient_rules(cda: bytes) -> None:
    ok = build_message(
        sender="a@x.fr",
        recipients=["279035121518989@patient.mssante.fr"],
        cdas=[cda],
        end_exchange=True,
    )
    assert ok["X-MSS-MES"] == "FIN"
    with pytest.raises(InvalidInput, match="does not match"):
        build_message(
            sender="a@x.fr", recipients=["184017512345612@patient.mssante.fr"], cdas=[cda]
        )
    unqualified = cda.replace(b"<county>51215</county>", b"", 1)
    with pytest.raises(InvalidInput, match="qualified INS"):
        build_message(
            sender="a@x.fr", recipients=["279035121518989@patient.mssante.fr"], cdas=[unqualified]
        )
    with pytest.raises(InvalidInput, match="only to messages towards a patient"):
        build_message(sender="a@x.fr", recipients=["b@y.fr"], cdas=[cda], end_exchange=True)
    big = b"%PDF-1.4\n" + b"0" * (26 * 1024 * 1024)
    with pytest.raises(QuotaExceeded, match="limit"):
        build_message(
            sender="a@x.fr", recipients=["279035121518989@patient.mssante.fr"], cdas=[cda], pdf=big
        )


def test_mdn_profile(cda: bytes) -> None:
    original = build_message(
        sender="a@x.mssante.fr", recipients=["dpi@y.mssante.fr"], cdas=[cda], pdf=b"%PDF-1.4\n"
    )
    parsed = email.message_from_bytes(original.as_bytes(), policy=default)
    assert mdn_requested(parsed) == "a@x.mssante.fr"
    ok = email.message_from_bytes(
        build_mdn(parsed, final_recipient="dpi@y.mssante.fr").as_bytes(), policy=default
    )
    assert ok.get_content_type() == "multipart/report"
    assert ok.get_param("report-type") == "disposition-notification"
    assert [p.get_content_type() for p in ok.iter_parts()] == [
        "text/plain",
        "message/disposition-notification",
        "message/rfc822",
        "application/zip",
        "application/pdf",
    ]
    info = parse_mdn(ok)
    assert info is not None and info.processed
    assert info.disposition == "automatic-action/MDN-sent-automatically; processed"
    assert ok["Subject"] == parsed["Subject"]
    ko = email.message_from_bytes(
        build_mdn(parsed, final_recipient="dpi@y.mssante.fr", error=904).as_bytes(), policy=default
    )
    info = parse_mdn(ko)
    assert info is not None and info.error_code == 904 and not info.processed
    assert ko["Subject"].startswith("[KO Intégration système !][904] XDM/1.0/DDM+")
    assert "904^L'INS transmis ne correspond pas" in info.disposition
    human = next(ko.iter_parts()).get_content()
    assert "L'INS transmis ne correspond pas exactement" in human


def test_mdn_not_automatic_when_return_path_differs(cda: bytes) -> None:
    msg = build_message(sender="a@x.fr", recipients=["b@y.fr"], cdas=[cda])
    msg["Return-Path"] = "<other@z.fr>"
    assert mdn_requested(msg) is None
    del msg["Disposition-Notification-To"]
    del msg["Return-Path"]
    assert mdn_requested(msg) is None


def test_mdm_parsed_by_hl7_library(cda: bytes) -> None:
    doc = read_cda(cda)
    req = MdmRequest(
        action="replace",
        control_id="C1",
        parent_document_id="1.2.3^old",
        sender_email="a@x.fr",
        recipient_email="dpi@y.fr",
        subject="XDM/1.0/DDM+x|y",
        body="Corps",
    )
    msg = hl7.parse(build_mdm(doc, req))
    assert str(msg.segment("MSH")[9]) == "MDM^T10^MDM_T02"
    assert str(msg.segment("MSH")[21]) == "1.1^CISIS_CDA_HL7_LPS"
    assert str(msg.segment("ORC")[1]) == "RO"
    txa = msg.segment("TXA")
    assert str(txa[12][0][0]) == doc.unique_id and str(txa[13]) == "1.2.3\\S\\old"
    assert str(txa[17]) == "AU"
    assert base64.b64decode(str(msg.segments("OBX")[0][5][0][4])) == cda
    pid = msg.segment("PID")
    assert str(pid[3][0][0]) == "279035121518989" and str(pid[3][0][4]) == "INS"
    assert str(pid[5][0][0]) == "PAT-TROIS" and str(pid[7]) == "19790328"
    assert [str(s[4][0][0]) for s in msg.segments("PRT")] == ["SB", "RCT"]
    assert "\\F\\" in str(msg.segments("OBX")[1][3])
    assert escape("a|b^c~d\\e&f") == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f"


def test_ans_ack_samples_parse(shared_dir: Path) -> None:
    for sub in ("Transmission_initiale_MDM", "Remplacement_MDM", "Suppression_MDM"):
        ack = parse_ack((shared_dir / ACKS / sub / "ack.er7").read_bytes())
        assert ack.accepted and ack.control_id == "015"
    mdm = (
        shared_dir / ACKS / "Transmission_initiale_MDM/message_MDM__LPS_MSS_CR_Radio_INIT_N1.er7"
    ).read_bytes()
    ack = parse_ack(build_ack(mdm, code="AE", error=902, label="Identifiant de patient inconnu"))
    assert ack.code == "AE" and ack.app_error == "902" and ack.control_id == "015"


def test_delete_request_marks_entries_deprecated(cda: bytes) -> None:
    from caducee.documents.inspect import xdm_attachments
    from caducee.documents.xdm import STATUS_DEPRECATED, read_xdm

    msg = build_message(sender="a@x.fr", recipients=["b@y.fr"], cdas=[cda], delete=True)
    (xdm,) = xdm_attachments(msg)
    assert [e.status for e in read_xdm(xdm).entries] == [STATUS_DEPRECATED]
    normal = build_message(sender="a@x.fr", recipients=["b@y.fr"], cdas=[cda])
    (xdm,) = xdm_attachments(normal)
    assert read_xdm(xdm).entries[0].status.endswith("Approved")


def test_mdn_fields_cannot_be_injected(cda: bytes) -> None:
    original = build_message(sender="a@x.fr", recipients=["b@y.fr"], cdas=[cda]).as_bytes()
    hostile = original.replace(
        b"Message-ID:",
        b"Original-Recipient: rfc822;x@y.fr\r\n Disposition: forged\r\nMessage-ID:",
        1,
    )
    from caducee.documents.mdn import build_mdn_bytes

    _, mdn = build_mdn_bytes(hostile, final_recipient="b@y.fr", error=902)
    info = parse_mdn(email.message_from_bytes(mdn, policy=default))
    assert info is not None and info.error_code == 902
    report = mdn.split(b"message/disposition-notification", 1)[1].split(b"--mdn-", 1)[0]
    assert b"\r\nDisposition: automatic-action" in report
    assert b"\r\n Disposition: forged" not in report
