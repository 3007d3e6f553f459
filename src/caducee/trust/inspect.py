"""Inspection of a liste blanche: figures and every defect found (issue 4 §2, notes §1.2).

Beyond the structural checks of :func:`caducee.trust.listeblanche.read_liste_blanche`, this
reports DNs that do not parse (the entry can never match) or are not in canonical RFC 4514 form,
DNs without a CN or O, domain names that are not valid host names, duplicate (domain, DN)
entries, ``DateMAJ`` later than ``DateDeGeneration``, a generation date in the future, and text
fields holding markup remnants (``>``/``<`` left by a bad export, seen in the real file).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from caducee.trust.dn import DistinguishedName, DnSyntaxError
from caducee.trust.listeblanche import Defect, format_date, normalise_domain, read_liste_blanche

__all__ = ["InspectReport", "inspect_liste_blanche"]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _valid_domain(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and len(labels) >= 2 and all(_LABEL.match(lb) for lb in labels)


@dataclass
class InspectReport:
    """Figures of a liste blanche and every defect found; ``usable`` if no error."""

    source: str
    generated: dt.datetime | None
    entries: int
    domains: int
    certificate_dns: int
    organisations: int
    defects: list[Defect] = field(default_factory=list)
    top_organisations: list[tuple[str, int]] = field(default_factory=list)
    domains_outside_mssante: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not any(d.severity == "error" for d in self.defects)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "generated": format_date(self.generated) if self.generated else None,
            "usable": self.usable,
            "entries": self.entries,
            "domains": self.domains,
            "certificate_dns": self.certificate_dns,
            "organisations": self.organisations,
            "top_organisations": [{"o": o, "entries": n} for o, n in self.top_organisations],
            "domains_outside_mssante": self.domains_outside_mssante,
            "defects": [
                {"severity": d.severity, "line": d.line, "message": d.message} for d in self.defects
            ],
        }

    def to_text(self) -> str:
        gen = format_date(self.generated) if self.generated else "unknown"
        errors = sum(1 for d in self.defects if d.severity == "error")
        lines = [
            f"source:           {self.source}",
            f"generated:        {gen}",
            f"entries:          {self.entries}",
            f"domains:          {self.domains}",
            f"certificate DNs:  {self.certificate_dns}",
            f"organisations:    {self.organisations}",
            f"verdict:          {'usable' if self.usable else 'REFUSED'}"
            f" ({errors} errors, {len(self.defects) - errors} warnings)",
        ]
        if self.top_organisations:
            lines.append("largest organisations (entries):")
            lines += [f"  {n:6d}  {o}" for o, n in self.top_organisations]
        if self.domains_outside_mssante:
            lines.append("domains outside *.mssante.fr: " + ", ".join(self.domains_outside_mssante))
        if self.defects:
            lines.append("defects:")
            lines += [f"  {d}" for d in self.defects]
        return "\n".join(lines)


def inspect_liste_blanche(
    data: bytes, source: str = "-", *, now: dt.datetime | None = None
) -> InspectReport:
    """Reads ``data`` leniently and reports figures and defects (never raises on content)."""
    now = now or dt.datetime.now(dt.UTC)
    result = read_liste_blanche(data)
    defects = list(result.defects)
    parsed: dict[str, DistinguishedName | None] = {}
    orgs: Counter[str] = Counter()
    seen: dict[tuple[str, str], int] = {}
    domains: set[str] = set()
    outside: set[str] = set()
    markup = re.compile(r"[<>]")
    for entry, line in zip(result.entries, result.entry_lines, strict=True):
        domain = normalise_domain(entry.name)
        domains.add(domain)
        if not _valid_domain(domain):
            defects.append(Defect("warning", f"{entry.name!r} is not a valid domain name", line))
        elif not domain.endswith(".mssante.fr"):
            outside.add(domain)
        if entry.dn not in parsed:
            try:
                dn: DistinguishedName | None = DistinguishedName.parse(entry.dn)
            except DnSyntaxError as exc:
                dn = None
                defects.append(
                    Defect(
                        "warning", f"{entry.name}: DN does not parse ({exc}), never matches", line
                    )
                )
            parsed[entry.dn] = dn
            if dn is not None:
                if str(dn) != entry.dn:
                    defects.append(
                        Defect(
                            "warning", f"{entry.name}: DN not in canonical form: {entry.dn!r}", line
                        )
                    )
                missing = [t for t in ("CN", "O", "C") if dn.get(t) is None]
                if missing:
                    defects.append(
                        Defect("warning", f"{entry.name}: DN without {'/'.join(missing)}", line)
                    )
                cn = dn.get("CN")
                if cn is not None and "." not in cn:
                    defects.append(
                        Defect("warning", f"DN CN {cn!r} is not a fully qualified host name", line)
                    )
        dn = parsed[entry.dn]
        key = (domain, str(dn) if dn is not None else entry.dn)
        if key in seen:
            defects.append(
                Defect(
                    "warning", f"{entry.name}: duplicate entry (same DN as line {seen[key]})", line
                )
            )
        else:
            seen[key] = line
        if dn is not None and dn.get("O") is not None:
            orgs[dn.get("O") or ""] += 1
        if entry.updated and result.generated and entry.updated > result.generated:
            defects.append(
                Defect(
                    "warning",
                    f"{entry.name}: DateMAJ {format_date(entry.updated)} is after DateDeGeneration",
                    line,
                )
            )
        for label, text in (
            ("Description", entry.description),
            ("ResponsableContact", entry.responsable_contact),
            ("SupportContact", entry.support_contact),
        ):
            if markup.search(text):
                defects.append(
                    Defect(
                        "warning", f"{entry.name}: {label} holds markup remnants: {text!r}", line
                    )
                )
    if result.generated and result.generated > now + dt.timedelta(minutes=5):
        defects.append(Defect("warning", "DateDeGeneration is in the future", None))
    distinct_dns = {str(d) if d is not None else raw for raw, d in parsed.items()}
    return InspectReport(
        source=source,
        generated=result.generated,
        entries=len(result.entries),
        domains=len(domains),
        certificate_dns=len(distinct_dns),
        organisations=len(orgs),
        defects=defects,
        top_organisations=orgs.most_common(10),
        domains_outside_mssante=sorted(outside),
    )
