"""Pure conversions from extract lines (lists of fields) to storage rows, with search docs.

The search document of a person or a structure is a space-separated list of folded tokens:
name words (plain) and categorical tokens with a ``zz`` prefix (``zzp10`` profession,
``zzssm26`` savoir-faire, ``zzcp75014`` postal code, ``zzd75`` department, ``zzcparis`` city,
``zzf750000001`` FINESS, ``zzsasa01`` sector). Both engines index this same text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import blake2b as _blake2b
from typing import Any

from caducee.directory.model import Mailbox, idnst
from caducee.directory.text import compact, fold, name_tokens

__all__ = [
    "HASH_MASK",
    "SEARCH_VERSION",
    "activity_row",
    "combo_tokens",
    "line_hash",
    "mailbox_org_row",
    "mailbox_row",
    "org_row",
    "person_doc",
    "person_row",
    "raw_hash",
    "upgrade_doc",
]

HASH_MASK = (1 << 63) - 1
# Version of the person search documents, stored as ``search_version`` in ``meta`` once every
# document has it. 2: combined profession x department tokens (``zzx<profession>d<dept>``).
# 3: on SQLite, FTS5 prefix indexes of 1 to 8 characters (were 1 to 3).
SEARCH_VERSION = 3


def combo_tokens(toks: Iterable[str]) -> list[str]:
    """``zzx<profession>d<department>`` for every profession and department of a person (the
    cross product over all their activities, so ``zzx60d75`` matches exactly the documents
    that have both ``zzp60`` and ``zzd75``): one posting list instead of two large ones."""
    seq = list(toks)
    ps = [t[3:] for t in seq if t.startswith("zzp")]
    ds = [t[3:] for t in seq if t.startswith("zzd")]
    return [f"zzx{p}d{d}".lower() for p in ps for d in ds]


def upgrade_doc(doc: str) -> str:
    """A search document of version 1 brought to :data:`SEARCH_VERSION` (idempotent)."""
    toks = [t for t in doc.split() if not t.startswith("zzx")]
    return " ".join(toks + combo_tokens(toks))


def line_hash(fields: Sequence[str]) -> int:
    """A stable 63-bit hash of one line (sums of these are order-independent group hashes)."""
    return raw_hash("|".join(fields).encode())


def raw_hash(data: bytes) -> int:
    """:func:`line_hash` of the fields whose ``"|".join`` is ``data`` (UTF-8)."""
    return int.from_bytes(_blake2b(data, digest_size=8).digest(), "big") & HASH_MASK


def dept_of(postal: str) -> str:
    if not postal:
        return ""
    if postal.startswith("97") or postal.startswith("98"):
        return postal[:3]
    if postal.startswith("20"):
        return "2A" if postal < "20200" else "2B"
    return postal[:2]


_PLACES: dict[tuple[str, str, str], tuple[list[str], str]] = {}


def _place(postal: str, dept: str, city: str) -> tuple[list[str], str]:
    """(place tokens, folded department) of an address, cached (few distinct places)."""
    key = (postal, dept, city)
    cached = _PLACES.get(key)
    if cached is not None:
        return cached
    out = []
    if postal:
        out.append("zzcp" + postal.lower())
    d = (dept or dept_of(postal)).lower()
    if d:
        out.append("zzd" + d)
    c = compact(city)
    if c:
        out.append("zzc" + c)
    if len(_PLACES) < 200_000:
        _PLACES[key] = (out, d)
    return out, d


def place_tokens(postal: str, dept: str, city: str) -> list[str]:
    return _place(postal, dept, city)[0]


def person_doc(lines: Sequence[Sequence[str]]) -> tuple[str, str]:
    """(search doc, folded family name) of a person from all their PS lines.

    The document is the name tokens, then the categorical tokens of every line in order
    (without repeats), then :func:`combo_tokens` of those, computed here in the same pass."""
    first = lines[0]
    toks = name_tokens(first[7], first[8])
    extra: list[str] = []
    profs: list[str] = []
    depts: list[str] = []
    for f in lines:
        p = f[9]
        if p:
            extra.append("zzp" + p)
            profs.append(p)
        if f[15]:
            extra.append("zzs" + f[15].lower())
        places, d = _place(f[35], f[44], f[37])
        extra += places
        if d:
            depts.append(d)
        if f[21]:
            extra.append("zzf" + f[21])
        if f[22]:
            extra.append("zzf" + f[22])
        if f[17]:
            extra.append("zzm" + f[17].lower())
    if len(lines) > 1:
        profs = list(dict.fromkeys(profs))
        depts = list(dict.fromkeys(depts))
    combos = [f"zzx{p}d{d}".lower() for p in profs for d in depts]
    return " ".join(toks + list(dict.fromkeys(extra)) + combos), fold(first[7])


def person_row(lines: Sequence[Sequence[str]], hash_: int, updated: str) -> tuple[object, ...]:
    f = lines[0]
    doc, names = person_doc(lines)
    return (f[2], f[0], f[1], f[3], f[4], f[5], f[6], f[7], f[8], doc, names, hash_, updated)


def activity_id(f: Sequence[str], seen: set[str], hash_: int | None = None) -> str:
    """A stable id for an activity line: the IDNPS and 40 bits of the line's hash."""
    h = line_hash(f) if hash_ is None else hash_
    base = f"{f[2]}-{h & 0xFFFFFFFFFF:010x}"
    aid, n = base, 1
    while aid in seen:
        n += 1
        aid = f"{base}-{n}"
    seen.add(aid)
    return aid


def activity_row(f: Sequence[str], aid: str, key: str | None = None) -> tuple[object, ...]:
    """The activity row of a PS line; ``key`` is its structure's IDNST when already known."""
    if key is None:
        key = idnst(f[21], f[19], f[23])
    return (aid, f[2], f[9], f[10], f[11], f[12], f[13], f[14], f[15], f[16], f[17], f[18], key,
            f[47], f[50], f[51])  # fmt: skip


def org_doc(name: str, enseigne: str, postal: str, dept: str, city: str, ids: Sequence[str],
            sector: str) -> str:  # fmt: skip
    toks = name_tokens(name, enseigne)
    toks += place_tokens(postal, dept, city)
    toks += ["zzf" + i for i in ids if i]
    if sector:
        toks.append("zzsa" + sector.lower())
    return " ".join(dict.fromkeys(toks))


def org_row(f: Sequence[str], updated: str) -> tuple[object, ...] | None:
    """The structure of a PS line, or None when the line has no structure."""
    key = idnst(f[21], f[19], f[23])
    if not key:
        return None
    doc = org_doc(f[24], f[25], f[35], f[44], f[37], (f[21], f[22], f[19], f[20]), f[48])
    return (key, f[19], f[20], f[21], f[22], f[23], *f[24:47], f[48], f[49], doc, "ps", updated)


def mailbox_org_key(f: Sequence[str]) -> str:
    return f[5] + f[6] if f[6] else ""


def mailbox_row(f: Sequence[str], hash_: int, updated: str) -> tuple[object, ...]:
    return (*f, mailbox_org_key(f), "", "", 0, None, "extract", hash_, updated)


def mailbox_org_row(f: Sequence[str], updated: str) -> tuple[object, ...] | None:
    """A structure known only from the mailbox extract (ORG BAL of a structure absent from
    PS_LibreAcces): name and address from the BAL line."""
    key = mailbox_org_key(f)
    if not key or f[0] not in ("ORG", "APP"):
        return None
    finess = f[6] if f[5] == "1" else ""
    siret = f[6] if f[5] == "3" else ""
    l6 = f[27]
    city = l6[len(f[28]) :].strip() if f[28] and l6.startswith(f[28]) else l6
    doc = org_doc(f[18], f[19], f[28], f[29], city, (finess, siret), "")
    return (key, siret, siret[:9], finess, "", "", f[18], f[19], f[20], "", f[22], f[23], f[24],
            "", f[25], f[26], "", f[28], "", city, "", f[30], "", "", "", "", f[29], "", "",
            "", "", doc, "mss", updated)  # fmt: skip


def mailbox_store_row(m: Mailbox, person: Sequence[Any] | None) -> tuple[object, ...]:
    """The storage row of a mailbox published by an operator (``source='op'``).

    ``person`` is ``(id_type, id_pp, civ, family, given, category_code, category_label,
    profession_code, profession_label, sf_code, sf_label)`` of the holder when known.
    """
    p = list(person) if person else [""] * 11
    p = [x or "" for x in p]
    struct_type, struct_id = (m.org_key[:1], m.org_key[1:]) if m.org_key else ("", "")
    return (m.type, m.address.strip().lower(), p[0], p[1], m.idnps, struct_type, struct_id,
            m.service, p[2], p[3] or m.family, p[4] or m.given, p[5], p[6], p[7], p[8], p[9],
            p[10], m.demat, "", "", "", "", "", "", "", "", "", "", "", "", "", m.org_key,
            m.description, m.responsible, 1 if m.liste_rouge else 0, m.rank, "op", 0,
            m.updated)  # fmt: skip
