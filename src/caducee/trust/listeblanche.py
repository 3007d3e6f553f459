"""The MSSanté liste blanche: reader and byte-compatible writer of the published XML.

Format (notes §1.1; the real file is ``listeblanchemssante.xml`` published by ANS): namespace
``https://listeblanche.mssante.fr/schema``, root ``ListeBlancheMSSante`` with
``DateDeGeneration`` and ``ListeDomaines``, one ``Domaine`` per (domain, operator certificate DN)
with ``Nom``, ``Description``, ``DNCertificatOperateur``, ``ResponsableContact``,
``SupportContact``, ``DateMAJ``. Dates are ``YYYY-MM-DDTHH:MM:SSZ``. A domain appears once per
operator certificate DN (several MTAs, migrations).

Reading is hardened: lxml without DTD loading, entity resolution or network access, and any
``<!DOCTYPE``/``<!ENTITY`` is refused outright. The published file has been seen without its root
end tag: a file whose *only* defect is that missing ``</ListeBlancheMSSante>`` (after a complete
``</ListeDomaines>``) is accepted with a warning; a file cut anywhere else (inside an entry, or
between entries, where entries could be missing) is refused with an error naming the place.
Other defects are collected as :class:`Defect` (``inspect`` prints them all).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lxml import etree

from caducee.core.errors import InvalidInput
from caducee.trust.atomic import atomic_write
from caducee.trust.dn import DistinguishedName, DnSyntaxError

__all__ = [
    "NAMESPACE",
    "Defect",
    "DomainEntry",
    "ListeBlanche",
    "ListeBlancheError",
    "ReadResult",
    "format_date",
    "load_liste_blanche",
    "normalise_domain",
    "parse_liste_blanche",
    "read_liste_blanche",
    "save_liste_blanche",
    "serialise_liste_blanche",
]

log = logging.getLogger(__name__)

NAMESPACE = "https://listeblanche.mssante.fr/schema"
_NS = "{" + NAMESPACE + "}"
_ROOT = "ListeBlancheMSSante"
_FIELDS = (
    "Nom",
    "Description",
    "DNCertificatOperateur",
    "ResponsableContact",
    "SupportContact",
    "DateMAJ",
)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_FORBIDDEN = (b"<!DOCTYPE", b"<!ENTITY")
_ERR_TAG_NOT_FINISHED = 77  # libxml2 XML_ERR_TAG_NOT_FINISHED: "Premature end of data"


class ListeBlancheError(InvalidInput):
    """The file is not a usable liste blanche (malformed, truncated inside the list, ...)."""


@dataclass(frozen=True, slots=True)
class Defect:
    """A problem found in a liste blanche; ``error`` defects make the file unusable."""

    severity: Literal["error", "warning"]
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{self.severity}: {where}{self.message}"


@dataclass(frozen=True, slots=True)
class DomainEntry:
    """One ``Domaine`` element: a domain bound to one operator certificate DN."""

    name: str  # Nom
    dn: str  # DNCertificatOperateur, as written
    description: str = ""
    responsable_contact: str = ""
    support_contact: str = ""
    updated: dt.datetime | None = None  # DateMAJ (UTC)


def normalise_domain(domain: str) -> str:
    """Lower case, no trailing dot, IDNA A-label form for non-ASCII names."""
    d = domain.strip().rstrip(".").lower()
    if not d.isascii():
        with contextlib.suppress(UnicodeError):
            d = d.encode("idna").decode("ascii")
    return d


def format_date(when: dt.datetime) -> str:
    """The list's date form, ``2025-03-13T14:54:10Z`` (UTC, seconds)."""
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_date(text: str) -> tuple[dt.datetime | None, bool]:
    """(datetime, exact_format) — lenient ISO 8601 as a fallback."""
    text = text.strip()
    if _DATE_RE.fullmatch(text):
        try:
            return (
                dt.datetime(
                    int(text[0:4]),
                    int(text[5:7]),
                    int(text[8:10]),
                    int(text[11:13]),
                    int(text[14:16]),
                    int(text[17:19]),
                    tzinfo=dt.UTC,
                ),
                True,
            )
        except ValueError:
            return None, False
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None, False
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC), False


@dataclass
class ListeBlanche:
    """A parsed liste blanche. Treat as immutable: build a new one to change it."""

    generated: dt.datetime
    entries: list[DomainEntry]
    warnings: tuple[str, ...] = ()
    _index: dict[str, dict[str, DistinguishedName | None]] = field(
        init=False, repr=False, compare=False
    )
    _by_dn: dict[DistinguishedName, set[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, dict[str, DistinguishedName | None]] = {}
        for entry in self.entries:
            per_domain = index.setdefault(normalise_domain(entry.name), {})
            if entry.dn not in per_domain:
                try:
                    per_domain[entry.dn] = DistinguishedName.parse(entry.dn)
                except DnSyntaxError:
                    per_domain[entry.dn] = None  # never matches
        self._index = index
        by_dn: dict[DistinguishedName, set[str]] = {}
        for domain, per in index.items():
            for dn in per.values():
                if dn is not None:
                    by_dn.setdefault(dn, set()).add(domain)
        self._by_dn = by_dn

    def is_listed(self, domain: str) -> bool:
        """True if the domain has at least one entry (exact name, case-insensitive)."""
        return normalise_domain(domain) in self._index

    def dns_for(self, domain: str) -> set[str]:
        """The certificate DNs listed for a domain, as written in the list."""
        return set(self._index.get(normalise_domain(domain), {}))

    def parsed_dns_for(self, domain: str) -> set[DistinguishedName]:
        """The listed DNs of a domain that parse (unparseable ones never match)."""
        per = self._index.get(normalise_domain(domain), {})
        return {dn for dn in per.values() if dn is not None}

    def dn_listed_for(self, domain: str, dn: DistinguishedName) -> bool:
        """True if ``dn`` equals (normalisation of ``caducee.trust.dn``) a DN listed for it."""
        return dn in self.parsed_dns_for(domain)

    def domains(self) -> set[str]:
        """Every listed domain (normalised)."""
        return set(self._index)

    def domains_for_dn(self, dn: DistinguishedName) -> set[str]:
        """Every domain that lists ``dn``."""
        return set(self._by_dn.get(dn, ()))


@dataclass
class ReadResult:
    """What a lenient read found: the date, the complete entries, and every defect."""

    generated: dt.datetime | None = None
    entries: list[DomainEntry] = field(default_factory=list)
    defects: list[Defect] = field(default_factory=list)
    entry_lines: list[int] = field(default_factory=list)

    @property
    def errors(self) -> list[Defect]:
        return [d for d in self.defects if d.severity == "error"]

    def add(self, severity: Literal["error", "warning"], message: str, line: int | None) -> None:
        self.defects.append(Defect(severity, message, line))


_TAG_ROOT = _NS + _ROOT
_TAG_LIST = _NS + "ListeDomaines"
_TAG_ENTRY = _NS + "Domaine"
_TAG_DATE = _NS + "DateDeGeneration"
_FIELD_TAGS = {_NS + f: f for f in _FIELDS}


def _make_parser() -> etree.XMLPullParser:
    return etree.XMLPullParser(
        events=("start", "end"),
        tag=(_TAG_ROOT, _TAG_LIST, _TAG_ENTRY, _TAG_DATE),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _entry_from(elem: Any, result: ReadResult) -> DomainEntry | None:
    line = elem.sourceline
    values: dict[str, str] = {}
    for child in elem:
        name = _FIELD_TAGS.get(child.tag)
        if name is None:
            if isinstance(child.tag, str):
                result.add("warning", f"unknown element {child.tag} in Domaine", child.sourceline)
            continue
        if len(child):
            result.add("error", f"element {name} has child elements", child.sourceline)
            return None
        if name in values:
            result.add("error", f"element {name} repeated in one Domaine", child.sourceline)
            return None
        values[name] = child.text or ""
    nom = values.get("Nom", "").strip()
    dn = values.get("DNCertificatOperateur", "").strip()
    if not nom:
        result.add("error", "Domaine without Nom", line)
        return None
    if not dn:
        result.add("error", f"Domaine {nom} without DNCertificatOperateur", line)
        return None
    updated = None
    if "DateMAJ" not in values:
        result.add("warning", f"Domaine {nom}: no DateMAJ", line)
    else:
        updated, exact = _parse_date(values["DateMAJ"])
        if updated is None:
            result.add("warning", f"Domaine {nom}: unreadable DateMAJ {values['DateMAJ']!r}", line)
        elif not exact:
            result.add(
                "warning", f"Domaine {nom}: DateMAJ not in the form YYYY-MM-DDTHH:MM:SSZ", line
            )
    return DomainEntry(
        name=nom,
        dn=dn,
        description=values.get("Description", ""),
        responsable_contact=values.get("ResponsableContact", ""),
        support_contact=values.get("SupportContact", ""),
        updated=updated,
    )


def read_liste_blanche(data: bytes) -> ReadResult:
    """Reads a liste blanche leniently: never raises for content, reports every defect.

    Structural checks only (the DN and domain checks are in :mod:`caducee.trust.inspect`).
    """
    result = ReadResult()
    if any(marker in data for marker in _FORBIDDEN):
        result.add("error", "DOCTYPE/ENTITY declarations are not allowed in a liste blanche", None)
        return result
    parser = _make_parser()
    syntax_error: etree.XMLSyntaxError | None = None
    try:
        parser.feed(data)
        root = parser.close()
    except etree.XMLSyntaxError as exc:
        syntax_error = exc
        root = None
    if root is not None and root.tag != _TAG_ROOT:
        result.add(
            "error",
            f"root element is {root.tag!r}, expected {_ROOT} in namespace {NAMESPACE}",
            root.sourceline,
        )
        return result
    stack: list[str] = []  # open elements among the four we follow
    closed_list = False
    entries_seen = 0
    last_domain: str | None = None
    for event, elem in parser.read_events():
        tag = elem.tag
        if event == "start":
            stack.append(tag)
            continue
        stack.pop()
        depth = len(stack)
        if tag == _TAG_ENTRY:
            if depth != 2 or stack[1] != _TAG_LIST:
                result.add("error", "Domaine outside ListeDomaines", elem.sourceline)
                continue
            entries_seen += 1
            entry = _entry_from(elem, result)
            if entry is not None:
                result.entries.append(entry)
                result.entry_lines.append(elem.sourceline or 0)
                last_domain = entry.name
            elem.clear()  # entries are independent: free them as we go
        elif tag == _TAG_DATE and depth == 1:
            when, exact = _parse_date(elem.text or "")
            if when is None:
                result.add("error", f"unreadable DateDeGeneration {elem.text!r}", elem.sourceline)
            else:
                if not exact:
                    result.add(
                        "warning",
                        "DateDeGeneration not in the form YYYY-MM-DDTHH:MM:SSZ",
                        elem.sourceline,
                    )
                result.generated = when
        elif tag == _TAG_LIST and depth == 1:
            closed_list = True
    if syntax_error is not None:
        _classify_syntax_error(
            syntax_error, data, stack, closed_list, entries_seen, last_domain, result
        )
    elif root is None:
        result.add("error", "empty document", None)
    if not result.errors:
        if result.generated is None:
            result.add("error", "no DateDeGeneration", None)
        if not closed_list:
            result.add("error", "no ListeDomaines", None)
    return result


def _classify_syntax_error(
    exc: etree.XMLSyntaxError,
    data: bytes,
    stack: list[str],
    closed_list: bool,
    entries_seen: int,
    last_domain: str | None,
    result: ReadResult,
) -> None:
    line = exc.lineno
    if not stack or stack[0] != _TAG_ROOT:
        result.add("error", f"not well-formed XML, or not a liste blanche: {exc.msg}", line)
        return
    if not _at_end_of_input(exc, data):
        result.add("error", f"not well-formed XML at line {line}: {exc.msg}", line)
    elif stack == [_TAG_ROOT] and closed_list:
        result.add("warning", f"root end tag </{_ROOT}> is missing (file otherwise complete)", line)
    elif stack[-1] == _TAG_ENTRY:
        after = f" (after {last_domain})" if last_domain else ""
        result.add(
            "error", f"file is cut inside entry {entries_seen + 1}{after}, line {line}", line
        )
    else:
        where = "/".join(t[len(_NS) :] for t in stack)
        result.add(
            "error",
            f"file is cut inside {where} after {entries_seen} entries: entries may be missing",
            line,
        )


def _at_end_of_input(exc: etree.XMLSyntaxError, data: bytes) -> bool:
    """True if the parser failed because the input ended (not on a bad byte inside it)."""
    if exc.code == _ERR_TAG_NOT_FINISHED:
        return True
    line, column = exc.position
    body = data.rstrip(b"\r\n")
    last_line = body.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
    return bool(line == body.count(b"\n") + 1 and column >= len(last_line))


def parse_liste_blanche(data: bytes) -> ListeBlanche:
    """Parses a liste blanche; raises :class:`ListeBlancheError` on any ``error`` defect.

    Warnings (such as the missing root end tag) are logged and kept in ``warnings``.
    """
    result = read_liste_blanche(data)
    errors = result.errors
    if errors:
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ListeBlancheError(f"liste blanche refused: {errors[0]}{more}")
    assert result.generated is not None  # noqa: S101  # guaranteed when there is no error
    warnings = tuple(str(d) for d in result.defects)
    for w in warnings:
        log.warning("liste blanche: %s", w)
    return ListeBlanche(generated=result.generated, entries=result.entries, warnings=warnings)


def load_liste_blanche(path: Path) -> ListeBlanche:
    """Reads and parses a liste blanche file; the error names the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ListeBlancheError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return parse_liste_blanche(data)
    except ListeBlancheError as exc:
        raise ListeBlancheError(f"{path}: {exc}") from exc


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: str) -> str:
    if _XML_BAD.search(value):
        raise ListeBlancheError("control characters cannot be written in a liste blanche")
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def _element(indent: str, name: str, value: str) -> str:
    if value == "":
        return f"{indent}<{name}/>\n"
    return f"{indent}<{name}>{_text(value)}</{name}>\n"


def serialise_liste_blanche(
    liste: ListeBlanche | Iterable[DomainEntry], generated: dt.datetime | None = None
) -> bytes:
    """Writes the list exactly as the publisher does (declaration and root on one line,
    4-space indentation, LF, UTF-8, element order of the real file)."""
    if isinstance(liste, ListeBlanche):
        entries: Iterable[DomainEntry] = liste.entries
        when = generated or liste.generated
    else:
        entries = liste
        when = generated or dt.datetime.now(dt.UTC)
    out = [
        f'<?xml version="1.0" encoding="UTF-8"?><{_ROOT} xmlns="{NAMESPACE}">\n',
        f"    <DateDeGeneration>{format_date(when)}</DateDeGeneration>\n",
        "    <ListeDomaines>\n",
    ]
    ind = " " * 12
    for e in entries:
        out.append("        <Domaine>\n")
        out.append(_element(ind, "Nom", e.name))
        out.append(_element(ind, "Description", e.description))
        out.append(_element(ind, "DNCertificatOperateur", e.dn))
        out.append(_element(ind, "ResponsableContact", e.responsable_contact))
        out.append(_element(ind, "SupportContact", e.support_contact))
        out.append(_element(ind, "DateMAJ", format_date(e.updated) if e.updated else ""))
        out.append("        </Domaine>\n")
    out.append("    </ListeDomaines>\n")
    out.append(f"</{_ROOT}>\n")
    return "".join(out).encode("utf-8")


def save_liste_blanche(liste: ListeBlanche, path: Path) -> None:
    """Writes the list atomically (temporary file in the same directory, fsync, rename)."""
    atomic_write(path, serialise_liste_blanche(liste))
