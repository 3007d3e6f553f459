"""Conformance verdict for a CDA R2 document against the French (CI-SIS) rules.

Two layers, both reported with their reasons:

1. the XML schema: the ANS ``CDA_extended.xsd`` (HL7 CDA R2 schema with the ANS extensions).
   The path is configurable: argument ``schema=``, else the environment variable
   ``CADUCEE_CDA_SCHEMA``; with neither, the schema layer is reported as *not checked*.
2. the French header rules of the CI-SIS "structuration minimale" volet that a receiver relies
   on: ``realmCode FR``, the HL7 France and CI-SIS ``templateId``, a LOINC ``code``, ``setId`` and
   ``versionNumber``, an INS for the patient, with its traits (INS referential).

Schema validation is CPU work: callers on an event loop run it in a thread.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from caducee.core.errors import ConfigError
from caducee.documents.cda import CdaDocument
from caducee.documents.xmlsafe import safe_parser

__all__ = ["SCHEMA_ENV", "Verdict", "load_schema", "resolve_schema_path", "validate_cda"]

SCHEMA_ENV = "CADUCEE_CDA_SCHEMA"
TEMPLATE_HL7_FRANCE = "2.16.840.1.113883.2.8.2.1"
TEMPLATE_CISIS = "1.2.250.1.213.1.1.1.1"
LOINC = "2.16.840.1.113883.6.1"

_lock = threading.Lock()
_cache: dict[Path, Any] = {}


@dataclass(frozen=True)
class Verdict:
    """``conformant`` is true only when every checked layer passed."""

    conformant: bool
    schema_checked: bool
    schema_ok: bool | None
    reasons: tuple[str, ...] = field(default_factory=tuple)


def resolve_schema_path(schema: str | Path | None = None) -> Path | None:
    value = schema if schema is not None else os.environ.get(SCHEMA_ENV)
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise ConfigError([f"CDA schema: file not found: {path}"])
    return path.resolve()


def load_schema(path: Path) -> Any:
    """Load (once per process) the XML schema at ``path``, with local includes only."""
    with _lock:
        cached = _cache.get(path)
        if cached is None:
            try:
                cached = etree.XMLSchema(etree.parse(str(path), safe_parser()))
            except (etree.XMLSchemaParseError, etree.XMLSyntaxError, OSError) as exc:
                raise ConfigError([f"CDA schema: cannot load {path}: {exc}"]) from exc
            _cache[path] = cached
        return cached


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _header_rules(doc: CdaDocument) -> list[str]:
    reasons: list[str] = []
    if doc.realm != "FR":
        reasons.append(f"realmCode is {doc.realm or 'absent'}, not FR")
    for tid, label in ((TEMPLATE_HL7_FRANCE, "HL7 France"), (TEMPLATE_CISIS, "CI-SIS")):
        if tid not in doc.template_ids:
            reasons.append(f"templateId {tid} ({label}) is missing")
    if doc.type_code is None:
        reasons.append("document type code is missing")
    elif doc.type_code.system not in (LOINC, "1.2.250.1.213.1.1.4.12"):
        reasons.append(f"document type code system {doc.type_code.system} is not LOINC")
    if doc.id is None:
        reasons.append("document id is missing")
    if doc.set_id is None:
        reasons.append("setId is missing")
    if doc.version is None:
        reasons.append("versionNumber is missing or not an integer")
    if doc.effective_time is None:
        reasons.append("effectiveTime is missing")
    if doc.confidentiality is None:
        reasons.append("confidentialityCode is missing")
    if doc.author is None:
        reasons.append("author is missing")
    status = doc.patient.ins_status
    if not status.present:
        reasons.append("patient has no INS (NIR/NIA OID)")
    else:
        reasons.extend(status.problems)
        reasons.extend(f"INS trait missing: {t}" for t in status.missing_traits)
    return reasons


def validate_cda(doc: CdaDocument, *, schema: str | Path | None = None) -> Verdict:
    """Judge ``doc`` against the schema (if configured) and the French header rules."""
    reasons: list[str] = []
    path = resolve_schema_path(schema)
    schema_ok: bool | None = None
    if path is not None:
        xsd = load_schema(path)
        tree = doc.tree
        if tree is None:  # pragma: no cover - read_cda always keeps the tree
            raise ValueError("document has no parsed tree")
        with _lock:  # an lxml XMLSchema is not safe for concurrent use
            schema_ok = bool(xsd.validate(tree))
            errors = [f"schema: line {e.line}: {_short(e.message)}" for e in xsd.error_log][:10]
        reasons.extend(errors)
    reasons.extend(_header_rules(doc))
    return Verdict(
        conformant=not reasons,
        schema_checked=path is not None,
        schema_ok=schema_ok,
        reasons=tuple(reasons),
    )
