"""IHE XDM media (IHE ITI TF-1 §16, TF-3 §4.2.3.x): build and read ``IHE_XDM.zip``.

Layout written::

    README.TXT
    INDEX.HTM
    IHE_XDM/SUBSET01/METADATA.XML     ebRIM 3.0 SubmitObjectsRequest
    IHE_XDM/SUBSET01/DOC00001.XML     CDA R2 (ISO-9660 style 8.3 upper-case names)
    IHE_XDM/SUBSET01/DOC00002.PDF     optional PDF

Reading accepts what others produce: ``/`` or ``\\`` separators, an extra top folder,
no ``IHE_XDM/`` root (the Direct Project samples), case variations, documents located by the
``URI`` slot or, without it, by the ExtrinsicObject id or as the subset's single XML document.
The ``hash`` (SHA-1) and ``size`` slots are checked when present.
"""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from lxml import etree

from caducee.core.errors import InvalidInput
from caducee.documents import xdsmeta as X
from caducee.documents.cda import CdaDocument, Code, Party, read_cda
from caducee.documents.xmlsafe import parse_xml
from caducee.documents.ziputil import ZipLimits, read_zip_members

__all__ = [
    "STATUS_APPROVED",
    "STATUS_DEPRECATED",
    "XdmEntry",
    "XdmPackage",
    "build_metadata",
    "build_xdm",
    "read_xdm",
]

_R = f"{{{X.NS_RIM}}}"
STATUS_APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
STATUS_DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"


@dataclass(frozen=True)
class XdmEntry:
    """One DocumentEntry of a received XDM package."""

    entry_id: str
    uri: str
    mime_type: str
    data: bytes
    unique_id: str | None
    patient_id: str | None
    hash_ok: bool | None
    size_ok: bool | None
    cda: CdaDocument | None = None
    status: str = ""  # ebRIM status, e.g. urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated


@dataclass(frozen=True)
class XdmPackage:
    subset: str
    entries: tuple[XdmEntry, ...]
    submission_unique_id: str | None
    submission_patient_id: str | None
    readme: str | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def documents(self) -> tuple[XdmEntry, ...]:
        """The CDA documents (entries that parsed as CDA R2)."""
        return tuple(e for e in self.entries if e.cda is not None)


# --------------------------------------------------------------------------- building


def _slot(parent: Any, name: str, *values: str) -> None:
    vals = [v for v in values if v]
    if not vals:
        return
    slot = etree.SubElement(parent, _R + "Slot", name=name)
    vlist = etree.SubElement(slot, _R + "ValueList")
    for v in vals:
        etree.SubElement(vlist, _R + "Value").text = v


def _name(parent: Any, value: str | None, tag: str = "Name") -> None:
    el = etree.SubElement(parent, _R + tag)
    if value:
        etree.SubElement(el, _R + "LocalizedString", value=value, charset="UTF-8")


def _classification(parent: Any, scheme: str, obj: str, code: Code | None, cid: str) -> None:
    if code is None:
        return
    cl = etree.SubElement(
        parent,
        _R + "Classification",
        id=cid,
        classificationScheme=scheme,
        classifiedObject=obj,
        nodeRepresentation=code.code,
    )
    _slot(cl, "codingScheme", code.system or "")
    _name(cl, code.display)


def _xcn(party: Party) -> str:
    """HL7 v2 XCN for authorPerson (ANS form ``id^family^given^^^^^^&root&ISO^D^^^IDNPS``)."""
    pid = party.id
    ident = pid.extension if pid and pid.extension else ""
    root = pid.root if pid else ""
    kind = "IDNPS" if root.startswith("1.2.250.1.71.4.2.1") else "EI"
    return f"{ident}^{party.family or ''}^{party.given or ''}^^^^^^&{root}&ISO^D^^^{kind}"


def _xon(party: Party) -> str:
    oid = party.organisation_id
    if oid is None:
        return party.organisation or ""
    return f"{party.organisation or ''}^^^^^&{oid.root}&ISO^IDNST^^^{oid.extension or ''}"


def _author(parent: Any, scheme: str, obj: str, party: Party | None, cid: str) -> None:
    if party is None:
        return
    cl = etree.SubElement(
        parent,
        _R + "Classification",
        id=cid,
        classificationScheme=scheme,
        classifiedObject=obj,
        nodeRepresentation="",
    )
    _slot(cl, "authorPerson", _xcn(party))
    _slot(cl, "authorInstitution", _xon(party))
    if party.specialty:
        s = party.specialty
        _slot(cl, "authorSpecialty", f"{s.code}^{s.display or ''}^{s.system or ''}")


def _external_id(parent: Any, scheme: str, obj: str, value: str, label: str, eid: str) -> None:
    ei = etree.SubElement(
        parent,
        _R + "ExternalIdentifier",
        id=eid,
        registryObject=obj,
        identificationScheme=scheme,
        value=value,
    )
    _name(ei, label)


def _cx(cda: CdaDocument) -> str:
    """patientId in HL7 CX form: INS matricule ``^^^&OID&ISO^NH`` (else the first local id)."""
    ins = cda.patient.ins
    if ins is not None:
        return f"{ins.extension or ''}^^^&{ins.root}&ISO^NH"
    if cda.patient.local_ids:
        lid = cda.patient.local_ids[0]
        return f"{lid.extension or ''}^^^&{lid.root}&ISO^PI"
    return ""


def _source_patient_info(cda: CdaDocument) -> list[str]:
    t = cda.patient.traits
    values = [f"PID-3|{_cx(cda)}"] if _cx(cda) else []
    values.append(f"PID-5|{t.birth_family or ''}^{t.first_birth_given or ''}^^^^^L")
    if t.birth_date:
        values.append(f"PID-7|{t.birth_date}")
    if t.sex:
        values.append(f"PID-8|{t.sex}")
    return values


def _entry(
    rol: Any,
    eid: str,
    cda: CdaDocument,
    data: bytes,
    uri: str,
    mime: str,
    fmt: tuple[str, str, str],
    class_code: Code,
    status: str = STATUS_APPROVED,
) -> None:
    eo = etree.SubElement(
        rol,
        _R + "ExtrinsicObject",
        id=eid,
        mimeType=mime,
        objectType=X.DE_OBJECT_TYPE,
        status=status,
    )
    _slot(eo, "hash", hashlib.sha1(data, usedforsecurity=False).hexdigest())
    _slot(eo, "size", str(len(data)))
    _slot(eo, "URI", uri)
    _slot(eo, "creationTime", _utc(cda.effective_time))
    _slot(eo, "languageCode", cda.language or "fr-FR")
    if cda.legal_authenticator:
        _slot(eo, "legalAuthenticator", _xcn(cda.legal_authenticator))
    _slot(eo, "serviceStartTime", _utc(cda.service_start))
    _slot(eo, "serviceStopTime", _utc(cda.service_stop))
    _slot(eo, "sourcePatientId", _cx(cda))
    _slot(eo, "sourcePatientInfo", *_source_patient_info(cda))
    _name(eo, cda.title)
    etree.SubElement(eo, _R + "Description")
    _author(eo, X.DE_AUTHOR, eid, cda.author, f"{eid}-author")
    _classification(eo, X.DE_CLASS, eid, class_code, f"{eid}-class")
    _classification(eo, X.DE_CONFIDENTIALITY, eid, cda.confidentiality, f"{eid}-conf")
    for i, ev in enumerate(cda.event_codes):
        _classification(eo, X.DE_EVENT, eid, ev, f"{eid}-event{i}")
    _classification(eo, X.DE_FORMAT, eid, Code(fmt[0], fmt[1], fmt[2]), f"{eid}-format")
    _classification(eo, X.DE_FACILITY, eid, cda.healthcare_facility, f"{eid}-facility")
    _classification(eo, X.DE_PRACTICE, eid, cda.practice_setting, f"{eid}-practice")
    _classification(eo, X.DE_TYPE, eid, cda.type_code, f"{eid}-type")
    _external_id(eo, X.DE_PATIENT_ID, eid, _cx(cda), "XDSDocumentEntry.patientId", f"{eid}-pid")
    uid = cda.unique_id if mime == "text/xml" else f"{cda.unique_id}.pdf"
    _external_id(eo, X.DE_UNIQUE_ID, eid, uid, "XDSDocumentEntry.uniqueId", f"{eid}-uid")


def _utc(ts: str | None) -> str:
    """HL7 TS (``YYYYMMDDHHMMSS[+ZZZZ]``) to the UTC form XDS wants; date-only stays as is."""
    if not ts:
        return ""
    if len(ts) >= 19 and ts[-5] in "+-":
        try:
            local = datetime.strptime(ts[:14] + ts[-5:], "%Y%m%d%H%M%S%z")
        except ValueError:
            return ts[:14]
        return local.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return ts[:14]


def _format_for(cda: CdaDocument) -> tuple[str, str, str]:
    for tid in cda.template_ids:
        if tid in X.FORMAT_BY_TEMPLATE:
            return X.FORMAT_BY_TEMPLATE[tid]
    return X.FORMAT_DEFAULT


#: Default DocumentEntry classCode when the caller gives none (JDV_J06-XdsClassCode-CISIS).
DEFAULT_CLASS = Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")


def build_metadata(
    docs: list[tuple[CdaDocument, str]],
    pdf: tuple[bytes, str] | None = None,
    *,
    source_id: str = "1.2.250.1.213.1.1.9",
    class_code: Code = DEFAULT_CLASS,
    submission_time: datetime | None = None,
    deprecated: bool = False,
) -> bytes:
    """ebRIM 3.0 ``SubmitObjectsRequest`` for ``docs`` ((CDA, URI) pairs) and an optional PDF."""
    if not docs:
        raise InvalidInput("an XDM package needs at least one CDA document")
    first = docs[0][0]
    root = etree.Element(
        f"{{{X.NS_LCM}}}SubmitObjectsRequest", nsmap={"lcm": X.NS_LCM, None: X.NS_RIM}
    )
    rol = etree.SubElement(root, _R + "RegistryObjectList")
    ss = "SubmissionSet01"
    pkg = etree.SubElement(
        rol,
        _R + "RegistryPackage",
        id=ss,
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:RegistryPackage",
    )
    when = (submission_time or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    _slot(pkg, "submissionTime", when)
    _name(pkg, first.title)
    _name(pkg, first.title, "Description")
    _author(pkg, X.SS_AUTHOR, ss, first.author, "ss-author")
    _classification(pkg, X.SS_CONTENT_TYPE, ss, first.type_code, "ss-content")
    _external_id(
        pkg, X.SS_UNIQUE_ID, ss, f"2.25.{uuid.uuid4().int}", "XDSSubmissionSet.uniqueId", "ss-uid"
    )
    _external_id(pkg, X.SS_SOURCE_ID, ss, source_id, "XDSSubmissionSet.sourceId", "ss-src")
    _external_id(pkg, X.SS_PATIENT_ID, ss, _cx(first), "XDSSubmissionSet.patientId", "ss-pid")
    etree.SubElement(
        rol, _R + "Classification", id="ss-node", classifiedObject=ss, classificationNode=X.SS_NODE
    )
    members: list[str] = []
    for i, (cda, uri) in enumerate(docs, start=1):
        eid = f"Document{i:02d}"
        status = STATUS_DEPRECATED if deprecated else STATUS_APPROVED
        _entry(rol, eid, cda, cda.raw, uri, "text/xml", _format_for(cda), class_code, status)
        members.append(eid)
    if pdf is not None:
        eid = f"Document{len(docs) + 1:02d}"
        _entry(rol, eid, first, pdf[0], pdf[1], "application/pdf", X.FORMAT_PDF, class_code)
        members.append(eid)
    for i, eid in enumerate(members, start=1):
        assoc = etree.SubElement(
            rol,
            _R + "Association",
            id=f"as{i:02d}",
            associationType=X.ASSOC_HAS_MEMBER,
            sourceObject=ss,
            targetObject=eid,
        )
        _slot(assoc, "SubmissionSetStatus", "Original")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


_README = (
    "IHE XDM media (IHE ITI TF-1 16, TF-3 4.2.3)\r\n"
    "Produced by Caducee - open-source MSSante messaging.\r\n"
    "Contents: see INDEX.HTM. Metadata: IHE_XDM/SUBSET01/METADATA.XML\r\n"
)


def _index(files: list[str]) -> bytes:
    items = "".join(f'<li><a href="{escape(f)}">{escape(f)}</a></li>' for f in files)
    return (
        '<html><head><meta charset="utf-8"><title>IHE XDM</title></head><body>'
        f'<h1>IHE XDM</h1><ul><li><a href="README.TXT">README.TXT</a></li>{items}</ul>'
        "</body></html>"
    ).encode()


def build_xdm(
    cdas: list[bytes],
    pdf: bytes | None = None,
    *,
    source_id: str = "1.2.250.1.213.1.1.9",
    class_code: Code = DEFAULT_CLASS,
    deprecated: bool = False,
) -> bytes:
    """Build ``IHE_XDM.zip`` (bytes) from CDA documents (bytes) and an optional PDF.

    ``deprecated`` marks the documents ``Deprecated``: a request to delete them at the
    receiver (Caducée's convention for MDM^T04, see docs/integration.md).
    """
    docs = [(read_cda(raw), f"DOC{i:05d}.XML") for i, raw in enumerate(cdas, start=1)]
    pdf_part = (pdf, f"DOC{len(cdas) + 1:05d}.PDF") if pdf is not None else None
    if pdf is not None and not pdf.startswith(b"%PDF-"):
        raise InvalidInput("the attached file is not a PDF (no %PDF- header)")
    metadata = build_metadata(
        docs, pdf_part, source_id=source_id, class_code=class_code, deprecated=deprecated
    )
    base = "IHE_XDM/SUBSET01/"
    files = [base + "METADATA.XML"] + [base + uri for _, uri in docs]
    if pdf_part:
        files.append(base + pdf_part[1])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("README.TXT", _README)
        z.writestr("INDEX.HTM", _index(files))
        z.writestr(base + "METADATA.XML", metadata)
        for cda, uri in docs:
            z.writestr(base + uri, cda.raw)
        if pdf_part:
            z.writestr(base + pdf_part[1], pdf_part[0])
    return buf.getvalue()


# --------------------------------------------------------------------------- reading


def _slots(el: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for slot in el.findall(_R + "Slot"):
        out[slot.get("name", "")] = [(v.text or "").strip() for v in slot.iter(_R + "Value")]
    return out


def _ext_ids(el: Any) -> dict[str, str]:
    """ExternalIdentifiers by scheme UUID and by their Name (``XDSDocumentEntry.uniqueId``)."""
    out: dict[str, str] = {}
    for ei in el.findall(_R + "ExternalIdentifier"):
        value = (ei.get("value") or "").strip()
        out[(ei.get("identificationScheme") or "").lower()] = value
        ls = ei.find(f"{_R}Name/{_R}LocalizedString")
        if ls is not None and ls.get("value"):
            out[ls.get("value").strip()] = value
    return out


def _find_metadata(members: dict[str, bytes]) -> str:
    candidates = [n for n in members if n.rsplit("/", 1)[-1].upper() == "METADATA.XML"]
    if not candidates:
        raise InvalidInput("XDM archive has no METADATA.XML")
    # Prefer IHE_XDM/SUBSETnn/METADATA.XML, at any depth (some producers add a top folder).
    candidates.sort(key=lambda n: ("IHE_XDM/" not in n.upper(), n.count("/"), n))
    return candidates[0]


def _lookup(members: dict[str, bytes], folder: str, name: str) -> str | None:
    want = (folder + name.replace("\\", "/")).upper()
    for n in members:
        if n.upper() == want:
            return n
    return None


def read_xdm(data: bytes, limits: ZipLimits | None = None) -> XdmPackage:
    """Read an XDM archive (bytes): its metadata, documents and their CDA headers."""
    members = read_zip_members(data, limits)
    meta_name = _find_metadata(members)
    folder = meta_name[: meta_name.rfind("/") + 1] if "/" in meta_name else ""
    root = parse_xml(members[meta_name], what="XDM METADATA.XML")
    if root.find(f".//{_R}RegistryObjectList") is None:
        raise InvalidInput("METADATA.XML is not an ebRIM 3.0 SubmitObjectsRequest")
    problems: list[str] = []
    entries: list[XdmEntry] = []
    objects = list(root.iter(_R + "ExtrinsicObject"))
    for eo in objects:
        slots = _slots(eo)
        ids = _ext_ids(eo)
        eid = eo.get("id") or ""
        mime = eo.get("mimeType") or "application/octet-stream"
        uri = (slots.get("URI") or [""])[0]
        path = _lookup(members, folder, uri) if uri else None
        if path is None and eid:
            for ext in (".xml", ".XML", ".pdf", ".PDF"):
                path = _lookup(members, folder, eid + ext)
                if path:
                    break
        if path is None and len(objects) == 1:
            xmls = [
                n
                for n in members
                if n.startswith(folder) and n != meta_name and n.upper().endswith(".XML")
            ]
            path = xmls[0] if len(xmls) == 1 else None
        if path is None:
            problems.append(f"document {eid or uri} listed in METADATA.XML is not in the archive")
            continue
        content = members[path]
        want_hash = next(iter(slots.get("hash") or []), None)
        want_size = next(iter(slots.get("size") or []), None)
        hash_ok = (
            hashlib.sha1(content, usedforsecurity=False).hexdigest() == want_hash.lower()
            if want_hash
            else None
        )
        size_ok = str(len(content)) == want_size if want_size else None
        if hash_ok is False:
            problems.append(
                f"document {path.rsplit('/', 1)[-1]}: SHA-1 differs from the metadata hash"
            )
        if size_ok is False:
            problems.append(
                f"document {path.rsplit('/', 1)[-1]}: size differs from the metadata size"
            )
        cda = None
        if "xml" in mime.lower():
            try:
                cda = read_cda(content)
            except InvalidInput as exc:
                problems.append(f"document {path.rsplit('/', 1)[-1]}: {exc}")
        entries.append(
            XdmEntry(
                entry_id=eid,
                uri=path,
                mime_type=mime,
                data=content,
                unique_id=ids.get(X.DE_UNIQUE_ID) or ids.get("XDSDocumentEntry.uniqueId"),
                patient_id=ids.get("XDSDocumentEntry.patientId") or ids.get(X.DE_PATIENT_ID),
                hash_ok=hash_ok,
                size_ok=size_ok,
                cda=cda,
                status=eo.get("status") or "",
            )
        )
    pkg = root.find(f".//{_R}RegistryPackage")
    ss_ids = _ext_ids(pkg) if pkg is not None else {}
    readme_name = next((n for n in members if n.upper().endswith("README.TXT")), None)
    readme = members[readme_name].decode("utf-8", "replace") if readme_name else None
    return XdmPackage(
        subset=folder.rstrip("/"),
        entries=tuple(entries),
        submission_unique_id=ss_ids.get(X.SS_UNIQUE_ID) or ss_ids.get("XDSSubmissionSet.uniqueId"),
        submission_patient_id=ss_ids.get(X.SS_PATIENT_ID)
        or ss_ids.get("XDSSubmissionSet.patientId"),
        readme=readme,
        problems=tuple(problems),
    )
