"""IHE XDM: build, read back, read the Direct Project samples, refuse hostile archives."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from caducee.core.errors import InvalidInput
from caducee.documents import xdsmeta as X
from caducee.documents.xdm import build_xdm, read_xdm
from caducee.documents.ziputil import ZipLimits

CDA_DIR = "corpora/clinical/cda-fr-cisis"
R = f"{{{X.NS_RIM}}}"


def _cda(shared_dir: Path, name: str) -> bytes:
    return (shared_dir / CDA_DIR / name).read_bytes()


def test_build_then_read(shared_dir: Path) -> None:
    img = _cda(shared_dir, "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml")
    bio = _cda(shared_dir, "BIO-CR-BIO_2024.01_TSH_1.xml")
    pdf = b"%PDF-1.4\n%test\n"
    data = build_xdm([img, bio], pdf)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names == [
        "README.TXT",
        "INDEX.HTM",
        "IHE_XDM/SUBSET01/METADATA.XML",
        "IHE_XDM/SUBSET01/DOC00001.XML",
        "IHE_XDM/SUBSET01/DOC00002.XML",
        "IHE_XDM/SUBSET01/DOC00003.PDF",
    ]
    pkg = read_xdm(data)
    assert pkg.problems == ()
    assert [e.mime_type for e in pkg.entries] == ["text/xml", "text/xml", "application/pdf"]
    assert all(e.hash_ok and e.size_ok for e in pkg.entries)
    assert pkg.entries[0].data == img and pkg.entries[2].data == pdf
    assert pkg.entries[0].unique_id == "1.2.250.1.213.1.1.1.45.2024.2.1"
    assert pkg.entries[0].patient_id == "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
    assert pkg.submission_patient_id == pkg.entries[0].patient_id


def test_metadata_content(shared_dir: Path) -> None:
    bio = _cda(shared_dir, "BIO-CR-BIO_2024.01_TSH_1.xml")
    meta = zipfile.ZipFile(io.BytesIO(build_xdm([bio]))).read("IHE_XDM/SUBSET01/METADATA.XML")
    root = etree.fromstring(meta)
    assert root.tag == f"{{{X.NS_LCM}}}SubmitObjectsRequest"
    eo = root.find(f".//{R}ExtrinsicObject")
    assert eo.get("objectType") == X.DE_OBJECT_TYPE
    slots = {s.get("name"): [v.text for v in s.iter(f"{R}Value")] for s in eo.findall(f"{R}Slot")}
    assert slots["hash"] == [hashlib.sha1(bio, usedforsecurity=False).hexdigest()]
    assert slots["size"] == [str(len(bio))]
    assert slots["URI"] == ["DOC00001.XML"]
    assert slots["sourcePatientId"] == ["279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"]
    assert "PID-5|PAT-TROIS^DOMINIQUE^^^^^L" in slots["sourcePatientInfo"]
    assert "PID-7|19790328" in slots["sourcePatientInfo"]
    assert slots["creationTime"][0].isdigit() and len(slots["creationTime"][0]) == 14
    schemes = {
        c.get("classificationScheme"): c.get("nodeRepresentation")
        for c in eo.findall(f"{R}Classification")
    }
    assert schemes[X.DE_TYPE] == "11502-2"
    assert schemes[X.DE_FORMAT] == "urn:ihe:lab:xd-lab:2008"
    assert schemes[X.DE_CONFIDENTIALITY] == "N"
    assert schemes[X.DE_CLASS] == "10"
    assert schemes[X.DE_FACILITY] and schemes[X.DE_PRACTICE] == "AMBULATOIRE"
    author = next(
        c for c in eo.findall(f"{R}Classification") if c.get("classificationScheme") == X.DE_AUTHOR
    )
    person = author.find(f"{R}Slot[@name='authorPerson']//{R}Value").text
    assert person.startswith("801234534765^CAMPARINI^Marcel") and person.endswith("^D^^^IDNPS")
    ids = {
        e.get("identificationScheme"): e.get("value") for e in eo.findall(f"{R}ExternalIdentifier")
    }
    assert ids[X.DE_UNIQUE_ID] == "1.2.250.1.213.1.1.1.55.2024.9.1"
    assert ids[X.DE_PATIENT_ID].startswith("279035121518989^^^")
    pkg = root.find(f".//{R}RegistryPackage")
    ss_ids = {e.get("identificationScheme") for e in pkg.findall(f"{R}ExternalIdentifier")}
    assert {X.SS_UNIQUE_ID, X.SS_SOURCE_ID, X.SS_PATIENT_ID} <= ss_ids
    assoc = root.find(f".//{R}Association")
    assert assoc.get("associationType") == X.ASSOC_HAS_MEMBER
    assert assoc.get("sourceObject") == "SubmissionSet01" and assoc.get("targetObject") == eo.get(
        "id"
    )


def test_direct_project_samples(shared_dir: Path) -> None:
    folder = shared_dir / "corpora/clinical/xdm"
    common = read_xdm((folder / "directproject-xd-common-samplexdm.zip").read_bytes())
    assert common.subset == "samplexdm/IHE_XDM/SUBSET01"  # well-formed, under a top folder
    (entry,) = common.entries
    assert entry.hash_ok is True and entry.cda is not None
    assert entry.unique_id == "1.3.6.1.4.1.21367.2005.3.9999.32"
    assert entry.cda.title == "Good Health Clinic Continuity of Care Document"
    backslash = read_xdm((folder / "directproject-xdmail-samplexdm.zip").read_bytes())
    assert backslash.subset == "SUBSET01"  # backslash paths, no IHE_XDM root
    (entry,) = backslash.entries
    assert entry.uri == "SUBSET01/DOCUMENT.xml" and entry.cda is not None
    assert entry.patient_id == "111111111^^&2.16.840.1.113883.4.1&ISO"
    assert not entry.cda.patient.ins_status.present


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_refuses_path_traversal() -> None:
    for name in (
        "../../etc/passwd",
        "IHE_XDM/../../x",
        "/abs/METADATA.XML",
        "C:\\x\\METADATA.XML",
        "..\\..\\evil",
    ):
        with pytest.raises(InvalidInput, match=r"path|absolute"):
            read_xdm(_zip({name: b"x"}))


def test_refuses_zip_bomb() -> None:
    bomb = _zip({"IHE_XDM/SUBSET01/METADATA.XML": b"\0" * (20 * 1024 * 1024)})
    assert len(bomb) < 100_000
    with pytest.raises(InvalidInput, match="compression ratio"):
        read_xdm(bomb)
    many = _zip({f"f{i}": b"x" for i in range(300)})
    with pytest.raises(InvalidInput, match="too many members"):
        read_xdm(many)
    with pytest.raises(InvalidInput, match="too large"):
        read_xdm(_zip({"a": b"x" * 2000}), ZipLimits(max_member=1000))


def test_refuses_entities_and_dtd() -> None:
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<SubmitObjectsRequest xmlns="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">'
        b"&x;</SubmitObjectsRequest>"
    )
    with pytest.raises(InvalidInput, match="DTD or entities"):
        read_xdm(_zip({"IHE_XDM/SUBSET01/METADATA.XML": xxe}))
    laughs = b'<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><l>&b;</l>'
    with pytest.raises(InvalidInput, match="DTD or entities"):
        read_xdm(_zip({"IHE_XDM/SUBSET01/METADATA.XML": b" " * 5000 + laughs}))


def test_refuses_tampered_document(shared_dir: Path) -> None:
    data = build_xdm([_cda(shared_dir, "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml")])
    members = {
        n: zipfile.ZipFile(io.BytesIO(data)).read(n)
        for n in zipfile.ZipFile(io.BytesIO(data)).namelist()
    }
    members["IHE_XDM/SUBSET01/DOC00001.XML"] = members["IHE_XDM/SUBSET01/DOC00001.XML"].replace(
        b"PAT-TROIS", b"PAT-QUATR", 1
    )
    pkg = read_xdm(_zip(members))
    assert pkg.entries[0].hash_ok is False
    assert any("SHA-1 differs" in p for p in pkg.problems)


def test_refuses_non_zip_and_missing_metadata() -> None:
    with pytest.raises(InvalidInput, match="not a readable zip"):
        read_xdm(b"not a zip")
    with pytest.raises(InvalidInput, match=r"no METADATA\.XML"):
        read_xdm(_zip({"README.TXT": b"hi"}))
