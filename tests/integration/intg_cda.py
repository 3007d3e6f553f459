"""Variants of the ANS example CDA for tests (new ids, versions, patients), made with lxml."""

from __future__ import annotations

from lxml import etree

NS = "{urn:hl7-org:v3}"


def variant(
    raw: bytes,
    *,
    doc_id: str | None = None,
    set_id: str | None = None,
    version: int | None = None,
    ins: str | None = None,
    drop_ins: bool = False,
    drop_birthplace: bool = False,
    author_org: str | None = None,
    birth_date: str | None = None,
) -> bytes:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(raw, parser)
    if doc_id is not None:
        el = root.find(f"{NS}id")
        el.attrib.clear()
        el.set("root", doc_id)
    if set_id is not None:
        el = root.find(f"{NS}setId")
        el.attrib.clear()
        el.set("root", set_id)
    if version is not None:
        root.find(f"{NS}versionNumber").set("value", str(version))
    role = root.find(f"{NS}recordTarget/{NS}patientRole")
    ins_el = next(
        e for e in role.findall(f"{NS}id") if e.get("root", "").startswith("1.2.250.1.213.1.4.")
    )
    if ins is not None:
        ins_el.set("extension", ins)
    if drop_ins:
        role.remove(ins_el)
    if drop_birthplace:
        patient = role.find(f"{NS}patient")
        patient.remove(patient.find(f"{NS}birthplace"))
    if birth_date is not None:
        role.find(f"{NS}patient/{NS}birthTime").set("value", birth_date)
    if author_org is not None:
        org = root.find(f"{NS}author/{NS}assignedAuthor/{NS}representedOrganization/{NS}id")
        org.set("extension", author_org)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def nir_with_key(body13: str) -> str:
    return body13 + f"{97 - int(body13) % 97:02d}"
