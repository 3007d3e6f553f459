"""Generator of realistic synthetic extracts, in exactly the two public formats (notes §6.3).

Real rows are never committed; tests, the sandbox and the benchmark use these instead. The
population mimics the national one: French names (accents, hyphens, particles), the real code
sets, coherent geography, hospitals with many ORG mailboxes, practices, labs, pharmacies, EHPAD,
HAD, health centres and social structures, and the oddities of real data (shared addresses,
missing fields, several activities per person, an address listed twice). Deterministic for a
given seed.
"""

from __future__ import annotations

import random
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from caducee.directory.codes import CATEGORIES, MODES_EXERCICE, PROFESSIONS, SECTEURS, SPECIALITES
from caducee.directory.extracts import MSS_HEADER, PS_HEADER
from caducee.directory.geo import COMMUNES, DEPARTEMENTS
from caducee.directory.progress import Progress
from caducee.directory.rows import dept_of
from caducee.directory.text import fold

__all__ = ["ExtraPerson", "SynthResult", "generate"]

from caducee.directory.synth_data import (
    FAMILY,
    GIVEN_F,
    GIVEN_M,
    MAILIZ,
    OPERATORS,
    PARTICLE,
    SERVICES,
    STREETS,
    SYL1,
    SYL2,
    SYL3,
    VOIES,
)

# Profession mix (share of the population) and where they work: (structure kind, mode, weight).
PROF_MIX = [("60", 38), ("10", 20), ("70", 8), ("21", 6), ("40", 4), ("50", 2), ("91", 2),
            ("80", 1), ("92", 1), ("94", 1), ("95", 1), ("96", 1), ("26", 1), ("28", 1),
            ("98", 2), ("86", 1), ("41", 2)]  # fmt: skip
WORK = {
    "10": [
        ("cab", "L", 50),
        ("hop", "S", 38),
        ("cds", "S", 5),
        ("lab", "L", 2),
        ("had", "S", 2),
        ("ehpad", "S", 3),
    ],
    "60": [
        ("hop", "S", 55),
        ("cab", "L", 22),
        ("ehpad", "S", 12),
        ("had", "S", 6),
        ("cds", "S", 5),
    ],
    "21": [("pha", "L", 55), ("pha", "S", 20), ("hop", "S", 15), ("lab", "S", 10)],
    "86": [("lab", "S", 70), ("hop", "S", 30)],
    "98": [("hop", "S", 80), ("cab", "S", 20)],
    "41": [("soc", "S", 60), ("hop", "S", 30), ("ehpad", "S", 10)],
}
DEFAULT_WORK = [("cab", "L", 75), ("hop", "S", 15), ("cds", "S", 5), ("ehpad", "S", 5)]
SECTOR = {"hop": "SA01", "cab": "SA07", "grp": "SA08", "cds": "SA05", "lab": "SA25",
          "pha": "SA33", "ehpad": "SA17", "had": "SA52", "soc": "SA60"}  # fmt: skip
RPPS_PROFESSIONS = {"10", "21", "40", "50", "60", "70", "80"}
AUTHORITY = {"10": "CNOM/CNOM/CNOM", "21": "CNOP/CNOP/CNOP", "40": "CNOCD/CNOCD/CNOCD",
             "50": "CNOSF/CNOSF/CNOSF", "60": "ONI/ONI/ONI", "70": "CNOMK/CNOMK/CNOMK",
             "80": "CNOPP/CNOPP/CNOPP"}  # fmt: skip
PROF_LABEL = {**PROFESSIONS, "41": "Assistant de service social"}


@dataclass(frozen=True, slots=True)
class ExtraPerson:
    """A person to add to a generated population (sandbox accounts)."""

    family: str
    given: str
    profession: str = "10"
    rpps: str = ""  # 11 digits; made up from the seed when empty
    specialty: str = ""
    postal_code: str = "75014"
    city: str = "PARIS 14E"
    mailbox: str = ""  # PER mailbox address, if any
    structure: str = ""  # raison sociale of the place of work
    civ_ex: str = ""


@dataclass(frozen=True, slots=True)
class SynthResult:
    ps_path: Path
    mss_path: Path
    persons: int
    activity_lines: int
    mailboxes: int
    extra_ids: tuple[str, ...]


class _Structure:
    """A generated site (the PS columns 20-47 pre-joined in ``line``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = ""
        self.line = ""
        self.sector = ""
        self.finess = ""
        self.siret = ""
        self.cp = ""
        self.city = ""
        self.dept = ""
        self.key_type = ""
        self.key_id = ""
        self.domain = ""


def _weighted(pairs: Sequence[tuple[object, int]]) -> tuple[list[object], list[int]]:
    return [p[0] for p in pairs], list(accumulate(p[1] for p in pairs))


class _Gen:
    def __init__(self, seed: int, persons: int) -> None:
        self.r = random.Random(seed)  # noqa: S311  # synthetic data, not security
        self.n = persons
        self.communes, self.commune_w = _weighted([(c, c[3]) for c in COMMUNES])
        self.profs, self.prof_w = _weighted(PROF_MIX)
        self.structs: dict[str, list[_Structure]] = {k: [] for k in SECTOR}
        self.used_local: dict[str, int] = {}
        self.domains: dict[str, int] = {}
        self.serial = 0
        self.addresses: list[tuple[str, str, str, str]] = []

    # -- names ---------------------------------------------------------------------------
    def family(self) -> str:
        r = self.r.random()
        if r < 0.55:
            return self.r.choice(FAMILY).upper()
        if r < 0.62:
            return self.r.choice(PARTICLE).upper()
        if r < 0.68:
            return f"{self.r.choice(FAMILY)}-{self.r.choice(FAMILY)}".upper()
        name = self.r.choice(SYL1) + self.r.choice(SYL2) + self.r.choice(SYL3)
        return name.upper()

    def given(self, female: bool) -> str:
        return self.r.choice(GIVEN_F if female else GIVEN_M)

    # -- structures ----------------------------------------------------------------------
    def commune(self) -> tuple[str, str, str, int]:
        c = self.r.choices(self.communes, cum_weights=self.commune_w)[0]
        assert isinstance(c, tuple)  # noqa: S101
        return c

    def phone(self, dept: str) -> str:
        region = {"7": "1", "9": "1", "5": "2", "1": "4", "6": "4", "3": "5"}.get(dept[:1], "3")
        return f"0{region}{self.r.randrange(10**8):08d}"

    def structure(
        self, kind: str, near: tuple[str, str, str, int] | None = None, name: str = ""
    ) -> _Structure:
        pool = self.structs[kind]
        share = {"hop": 0.997, "lab": 0.95, "pha": 0.7, "ehpad": 0.9, "had": 0.98, "cds": 0.95,
                 "soc": 0.95, "cab": 0.3, "grp": 0.6}[kind]  # fmt: skip
        if pool and not name and self.r.random() < share:
            return self.r.choice(pool)
        s = _Structure(kind)
        name_c, cp, insee, _ = near or self.commune()
        city = name_c
        dept = dept_of(cp)
        self.serial += 1
        n = self.serial
        finess = siret = ""
        if kind in ("hop", "ehpad", "had", "lab", "cds", "pha", "soc"):
            finess = f"{dept[:2].replace('A', '0').replace('B', '0')}{n % 10**7:07d}"
        if kind != "hop" or self.r.random() < 0.5:
            siret = f"{(n * 7919) % 10**9:09d}{n % 10**5:05d}"
        city_title = city.title()
        s.name = {
            "hop": f"CH {city}" if n % 3 else f"CHU DE {city}",
            "ehpad": f"EHPAD LES {self.r.choice(['TILLEULS', 'GLYCINES', 'OLIVIERS', 'JARDINS'])}",
            "had": f"HAD {city}",
            "lab": f"LABORATOIRE {self.r.choice(['BIOMED', 'BIO-OUEST', 'CERBALLIANCE', 'SYNLAB'])} {city}",  # noqa: E501
            "cds": f"CENTRE DE SANTE {city}",
            "pha": f"PHARMACIE {self.r.choice(['DU CENTRE', 'DE LA GARE', 'DES HALLES', 'SAINT-JEAN'])}",  # noqa: E501
            "soc": f"CCAS DE {city}",
            "cab": "CABINET DU DR",
            "grp": f"MAISON DE SANTE {city_title.upper()}",
        }[kind]
        s.name = name or s.name
        if self.addresses and self.r.random() < 0.04:  # shared address (medical centres)
            num, voie, street, _ = self.r.choice(self.addresses)
        else:
            num = str(self.r.randrange(1, 200))
            voie = str(self.r.randrange(len(VOIES)))
            street = self.r.choice(STREETS)
            self.addresses.append((num, voie, street, cp))
        vcode, vlabel = VOIES[int(voie)]
        tech = ("F" + finess) if finess else ("C" + siret) if siret else f"R{10**13 + n}"
        phone = self.phone(dept) if self.r.random() < 0.85 else ""
        phone2 = self.phone(dept) if self.r.random() < 0.1 else ""
        fax = self.phone(dept) if self.r.random() < 0.3 else ""
        email = f"contact@{fold(s.name).replace(' ', '-')[:30]}.fr" if self.r.random() < 0.2 else ""
        sector = SECTOR[kind]
        dept_label = DEPARTEMENTS.get(dept, "")
        ej = finess[:2] + "9" + finess[3:] if finess else ""
        s.line = "|".join([siret, siret[:9], finess, ej,
                           tech, s.name, "", "", "", num, "", vcode, vlabel, street, "", "",
                           cp, insee, city, "99000", "France", phone, phone2, fax, email,
                           dept, dept_label, ""])  # fmt: skip
        s.sector = sector
        s.finess, s.siret, s.cp, s.city, s.dept = finess, siret, cp, city, dept
        s.key_type, s.key_id = (
            ("1", finess) if finess else ("3", siret) if siret else ("4", tech[1:])
        )
        base = fold(s.name).replace(" ", "-")[:40]
        k = self.domains.get(base, 0)
        self.domains[base] = k + 1
        s.domain = (base if k == 0 else f"{base}-{k + 1}") + ".mssante.fr"
        pool.append(s)
        return s


def _local(given: str, family: str) -> str:
    return f"{fold(given).replace(' ', '-')}.{fold(family).replace(' ', '-')}"


def generate(
    out: Path,
    persons: int,
    *,
    seed: int = 1,
    extra: Sequence[ExtraPerson] = (),
    stamp: str = "202601010300",
    zip_files: bool = False,
    progress: bool = False,
) -> SynthResult:
    """Write ``PS_LibreAcces_Personne_activite_<stamp>.txt`` and
    ``Extraction_Correspondance_MSSante_<stamp>.txt`` (or ``.zip``) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    g = _Gen(seed, persons)
    ps_name = f"PS_LibreAcces_Personne_activite_{stamp}.txt"
    mss_name = f"Extraction_Correspondance_MSSante_{stamp}.txt"
    ps_path, mss_path = out / ps_name, out / mss_name
    bar = Progress(persons + len(extra), "generating", enabled=progress)
    n_lines = n_boxes = 0
    extra_ids: list[str] = []
    with (
        ps_path.open("w", encoding="utf-8", newline="\n") as ps,
        mss_path.open("w", encoding="utf-8", newline="\n") as mss,
    ):
        ps.write(PS_HEADER + "\n")
        mss.write(MSS_HEADER + "\n")
        ps_lines: list[str] = []
        mss_lines: list[str] = []
        for i, person in enumerate(_people(g, persons, extra)):
            lines, boxes, idnps = person
            ps_lines.extend(lines)
            mss_lines.extend(boxes)
            n_lines += len(lines)
            n_boxes += len(boxes)
            if i >= persons:
                extra_ids.append(idnps)
            if len(ps_lines) > 20000:
                ps.write("\n".join(ps_lines) + "\n")
                ps_lines.clear()
                bar.update(i)
            if len(mss_lines) > 20000:
                mss.write("\n".join(mss_lines) + "\n")
                mss_lines.clear()
        for s in _org_mailboxes(g):
            mss_lines.append(s)
            n_boxes += 1
        if ps_lines:
            ps.write("\n".join(ps_lines) + "\n")
        if mss_lines:
            mss.write("\n".join(mss_lines) + "\n")
    bar.close()
    if zip_files:
        ps_path, mss_path = _zip(ps_path), _zip(mss_path)
    return SynthResult(ps_path, mss_path, persons + len(extra), n_lines, n_boxes, tuple(extra_ids))


def _zip(path: Path) -> Path:
    target = path.with_suffix(".zip")
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.write(path, path.name)
    path.unlink()
    return target


def _people(
    g: _Gen, n: int, extra: Sequence[ExtraPerson]
) -> Iterator[tuple[list[str], list[str], str]]:
    r = g.r
    for i in range(n):
        prof = str(r.choices(g.profs, cum_weights=g.prof_w)[0])
        female = r.random() < (0.87 if prof in ("60", "50", "91") else 0.5)
        family, given = g.family(), g.given(female)
        if r.random() < 0.002:
            given = ""  # missing field, as in real data
        yield _person(g, i, prof, family, given, female, None)
    for j, e in enumerate(extra):
        yield _person(g, n + j, e.profession, e.family.upper(), e.given, False, e)


def _person(
    g: _Gen, i: int, prof: str, family: str, given: str, female: bool, e: ExtraPerson | None
) -> tuple[list[str], list[str], str]:
    r = g.r
    rpps = prof in RPPS_PROFESSIONS
    if e is not None and e.rpps:
        id_pp = e.rpps
    elif rpps:
        id_pp = f"10{(i * 7 + 1_000_003) % 10**9:09d}"
    else:
        id_pp = f"{r.randrange(1, 96):02d}{i % 10**7:07d}"
    id_type = "8" if rpps or (e is not None and e.rpps) else "0"
    idnps = id_type + id_pp
    civ_ex = (
        e.civ_ex
        if e is not None
        else ("DR" if prof in ("10", "40") or (prof == "21" and r.random() < 0.5) else "")
    )
    civ, civ_label = ("MME", "Madame") if female else ("M", "Monsieur")
    if e is not None:
        sf_list = [e.specialty] if e.specialty else []
    elif prof == "10":
        sf_list = [r.choice(["SM54", "SM54", "SM54", "SM53", *list(SPECIALITES)[:36]])]
        if r.random() < 0.15:
            sf_list.append(r.choice(list(SPECIALITES)[:36]))
    elif prof == "40" and r.random() < 0.1:
        sf_list = [r.choice(["SCD01", "SCD02", "SCD03"])]
    else:
        sf_list = []
    cat = "C" if r.random() < 0.97 else r.choice(["M", "E"])
    head = [id_type, id_pp, idnps, civ_ex, {"DR": "Docteur"}.get(civ_ex, ""), civ, civ_label,
            family, given, prof, PROF_LABEL.get(prof, ""), cat, CATEGORIES[cat]]  # fmt: skip
    # about 1.8 lines per person, as in the national file (2.2 M lines, 1.2 M persons)
    roll = r.random()
    n_act = 1 if roll < 0.55 else 2 if roll < 0.8 else 3 if roll < 0.92 else 4
    work = WORK.get(prof, DEFAULT_WORK)
    kinds, weights = _weighted([((k, m), w) for k, m, w in work])
    home = None
    lines: list[str] = []
    places: list[_Structure | None] = []
    for a in range(n_act):
        choice = r.choices(kinds, cum_weights=weights)[0]
        assert isinstance(choice, tuple)  # noqa: S101
        kind, mode = str(choice[0]), str(choice[1])
        if e is not None and a == 0:
            c = next((x for x in COMMUNES if x[1] == e.postal_code), (e.city, e.postal_code, "", 1))
            s = g.structure("cab" if not e.structure else "grp", near=c, name=e.structure.upper())
        elif r.random() < 0.003:
            s = None  # no structure at all: a missing-fields line
        else:
            s = g.structure(str(kind), near=home)
        home = home or (g.commune() if s is None else None)
        places.append(s)
        sfs = sf_list or [""]
        for sf in sfs:
            sf_type, sf_type_label = ("S", "Spécialité ordinale") if sf else ("", "")
            q = [sf_type, sf_type_label, sf, SPECIALITES.get(sf, ""), str(mode),
                 MODES_EXERCICE[str(mode)]]  # fmt: skip
            if s is None:
                struct = "|" * 27
                tail = [AUTHORITY.get(prof, "ARS/ARS/ARS"), "", "", "", ""]
            else:
                struct = s.line
                sec = s.sector
                pharma = ("E", "Section E") if prof == "21" and s.kind == "pha" else ("", "")
                tail = [AUTHORITY.get(prof, "ARS/ARS/ARS"), sec, SECTEURS[sec], *pharma]
            lines.append("|".join(head + q) + "|" + struct + "|" + "|".join(tail) + "|")
    # mailboxes
    boxes: list[str] = []
    want = e is not None and bool(e.mailbox)
    if want or (e is None and r.random() < 0.38 and given):
        if e is not None:
            addr = e.mailbox.lower()
        else:
            local = _local(given, family)
            k = g.used_local.get(local, 0)
            g.used_local[local] = k + 1
            local = local if k == 0 else f"{local}{k}"
            s0 = places[0]
            if s0 is not None and s0.kind == "hop" and r.random() < 0.7:
                domain = s0.domain
            else:
                domain = MAILIZ.get(prof, r.choice(OPERATORS)) + ".mssante.fr"
            addr = f"{local}@{domain}"
        s0 = places[0]
        boxes.append(_mss_line("PER", addr, head, sf_list, s0 if s0 and s0.kind == "hop" else None))
        if e is None and r.random() < 0.0004:
            boxes.append(boxes[-1])  # the same address listed twice, as in real data
    return lines, boxes, idnps


def _mss_line(kind: str, addr: str, head: list[str] | None, sfs: list[str],
              s: _Structure | None, service: str = "") -> str:  # fmt: skip
    if head is not None:
        id_type, id_pp, idnps = head[0], head[1], head[2]
        civ, family, given, prof, cat = head[4], head[7], head[8], head[9], head[11]
    else:
        id_type = id_pp = idnps = civ = family = given = prof = cat = ""
    sf = sfs[0] if sfs else ""
    fields = [kind, addr, id_type, id_pp, idnps]
    if s is not None:
        fields += [s.key_type, s.key_id, service]
    else:
        fields += ["", "", service]
    fields += [civ, family, given, cat, CATEGORIES.get(cat, ""), prof, PROF_LABEL.get(prof, ""),
               sf, SPECIALITES.get(sf, ""), "O" if kind == "PER" else "N"]  # fmt: skip
    if s is not None:
        parts = s.line.split("|")
        fields += [s.name, "", "", "", parts[9], "", parts[11], parts[13], "",
                   f"{s.cp} {s.city}", s.cp, s.dept, "FRANCE"]  # fmt: skip
    else:
        fields += [""] * 13
    return "|".join(fields)


def _org_mailboxes(g: _Gen) -> Iterator[str]:
    r = g.r
    for kind, pool in g.structs.items():
        for s in pool:
            if kind == "hop":
                n = r.randrange(10, 45)
                services = r.sample(SERVICES, min(n, len(SERVICES)))
                services += [
                    f"{x}-{k}"
                    for k, x in enumerate(r.choices(SERVICES, k=max(0, n - len(SERVICES))))
                ]
            elif kind in ("ehpad", "had", "lab", "cds", "grp", "soc"):
                if r.random() > 0.5:
                    continue
                services = ["secretariat", "accueil"][: r.randrange(1, 3)]
            elif kind == "pha" and r.random() < 0.2:
                services = ["officine"]
            else:
                continue
            for svc in services:
                yield _mss_line("ORG", f"{svc}@{s.domain}", None, [], s, svc.split("-")[0].upper())
