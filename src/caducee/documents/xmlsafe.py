"""Hardened XML parsing for documents received from others.

Every XML document Caducée reads from outside (CDA, XDM ``METADATA.XML``) goes through
:func:`parse_xml`: no DTD loading, no entity expansion, no network access, no huge-tree mode,
and a size limit checked before parsing. A refusal is an :class:`InvalidInput` naming the problem.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from caducee.core.errors import InvalidInput

__all__ = ["MAX_XML_BYTES", "parse_xml", "safe_parser"]

#: Largest XML document accepted (CDA with embedded PDF included). The ANS samples are < 2 MB.
MAX_XML_BYTES = 30 * 1024 * 1024


def safe_parser() -> Any:
    """A new lxml parser with every dangerous feature off."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_xml(data: bytes, *, what: str = "XML document", limit: int = MAX_XML_BYTES) -> Any:
    """Parse ``data`` into an lxml root element, refusing DTDs, entities and oversize input."""
    if len(data) > limit:
        raise InvalidInput(f"{what} is too large ({len(data)} bytes, limit {limit})")
    head = data[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in head:
        raise InvalidInput(f"{what} declares a DTD or entities, which are refused")
    try:
        root = etree.fromstring(data, parser=safe_parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidInput(f"{what} is not well-formed XML: {exc.msg}") from exc
    if root is None:
        raise InvalidInput(f"{what} is empty")
    if root.getroottree().docinfo.internalDTD is not None:
        raise InvalidInput(f"{what} declares a DTD or entities, which are refused")
    return root
