"""SQL shared by the SQLite and PostgreSQL directory stores.

Queries are written once with ``?`` placeholders; the PostgreSQL store rewrites them to
``%s``. Only full-text matching (FTS5 ``MATCH`` vs. ``tsvector @@ tsquery``), substring search on
mailbox addresses (FTS5 trigram vs. ``pg_trgm``) and bulk loading differ per engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any

from caducee.directory.model import (
    ACTIVITY_COLUMNS,
    MAILBOX_COLUMNS,
    ORG_COLUMNS,
    PERSON_COLUMNS,
    Activity,
    Mailbox,
    Organization,
    Person,
)
from caducee.directory.rows import SEARCH_VERSION, mailbox_store_row
from caducee.directory.store import ImportSession, MailboxMatch, OrgQuery, PersonQuery, RoleQuery
from caducee.directory.text import compact, deletes, edit_distance_le1, fold, tokens

__all__ = ["SqlStoreBase", "Term"]

MAX_WORDS = 8  # a longer query is cut: each word costs index lookups
PREFIX_INDEXED = 8  # the longest prefix with its own FTS5 index (SQLite, prefix='1 ... 8')
EXPAND_MAX = 30  # a longer word starting at most this many known names matches them exactly
DRIVE_MAX = 1000  # an exact token with at most this many documents drives a search
# A mailbox pattern matching more holders is cut to these (in mailbox order): 500 cost 10 ms at
# p99 nationally (reading the candidate addresses), 200 about 5 ms. Type more of the address.
MAX_HOLDERS = 200
Term = tuple[str, bool]  # (token, is_prefix); a list of them is OR-ed
Row = tuple[Any, ...]

_MAILBOX_READ = (
    "address, type, idnps, org_key, service, description, responsible, liste_rouge, rank, demat,"
    " family, given, profession_code, source, updated"
)

# Columns read to render resources (see the ``*_from_row`` functions of ``fhir``).
BOX_READ = "address, type, service, description, responsible, rank, demat"
PERSON_READ = "idnps, id_type, id_pp, civ_ex_code, family, given, updated"
PERSON_ACT_READ = "profession_code, profession_label, category_code, sf_code, sf_label"
ROLE_READ = (
    "a.id, a.idnps, a.profession_code, a.profession_label, a.sf_code, a.sf_label, a.mode_code,"
    " a.mode_label, a.org_key, p.updated"
)
ORG_READ = (
    "key, name, siret, siren, finess, finess_ej, enseigne, compl_dest, num_voie, type_voie_code,"
    " voie, postal_code, commune_code, city, dept_code, country, phone, phone2, fax, email,"
    " sector_code, sector_label, updated"
)


def _mailbox(r: Row) -> Mailbox:
    return Mailbox(r[0], r[1], r[2] or "", r[3] or "", r[4] or "", r[5] or "", r[6] or "",
                   bool(r[7]), r[8], r[9] or "", r[10] or "", r[11] or "", r[12] or "",
                   r[13] or "", r[14] or "")  # fmt: skip


def _department(postal: str) -> str:
    """The department code when ``postal`` is one (``75``, ``2a``, ``971``), else ``""``."""
    pc = compact(postal)
    return pc if len(pc) == 2 or (len(pc) == 3 and pc.startswith("97")) else ""


def _strs(row: Row) -> list[str]:
    return [str(x) if x is not None else "" for x in row]


class SqlStoreBase(ABC):
    """Reads and searches common to both engines."""

    engine = "sql"
    _search_version: int | None = None
    _counts: dict[str, int] | None = None  # see _capped_count
    _counts_generation = -1
    # whether a prefix word (up to PREFIX_INDEXED characters) is one list that is cheap to
    # count (SQLite's FTS5 prefix indexes); a GIN index merges the entries of every prefix
    _count_prefixes = False

    # -- engine hooks -------------------------------------------------------------------
    @abstractmethod
    @contextmanager
    def _cursor(self) -> Iterator[Any]: ...

    @abstractmethod
    def _fts_clause(self, table: str, groups: list[list[Term]]) -> tuple[str, list[object]]:
        """SQL condition on alias ``t`` (the base table) matching every group (AND of ORs)."""

    @abstractmethod
    def _contains_clause(self, pattern: str) -> tuple[str, list[object]]:
        """SQL condition on mailbox alias ``m`` for an address containing ``pattern``."""

    def _q(self, sql: str) -> str:
        return sql

    def _fts_from(self, table: str) -> tuple[str, str]:
        """(FROM clause, ORDER BY key) when a full-text condition is present."""
        return f"{table} t", "t.pk"

    def _all(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        with self._cursor() as cur:
            cur.execute(self._q(sql), tuple(params))
            return list(cur.fetchall())

    # -- counts ---------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {}
        for table in ("person", "activity", "org", "mailbox"):
            out[table] = int(self._all(f"SELECT count(*) FROM {table}")[0][0])  # noqa: S608
        return out

    def search_version(self) -> int:
        """Version of the person search documents (1 when ``meta`` has none: a directory
        imported before the combined tokens; its next import upgrades it)."""
        cached: int | None = getattr(self, "_search_version", None)
        if cached is None:
            rows = self._all("SELECT v FROM meta WHERE k = 'search_version'")
            cached = int(rows[0][0]) if rows else 1
            self._search_version = cached
        return cached

    def _init_search_version(self) -> None:
        """A directory without persons is created at the current version (every document it
        will hold is written with the current tokens)."""
        if not self._all("SELECT 1 FROM person LIMIT 1"):
            with self._cursor() as cur:
                cur.execute(
                    self._q(
                        "INSERT INTO meta (k, v) VALUES ('search_version', ?)"
                        " ON CONFLICT (k) DO UPDATE SET v = excluded.v"
                    ),
                    (SEARCH_VERSION,),
                )
        self._search_version = None

    def person_hashes(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self._all("SELECT idnps, hash FROM person")}

    def mailbox_hashes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        mask = (1 << 63) - 1
        for addr, h in self._all("SELECT address, hash FROM mailbox WHERE source = 'extract'"):
            out[addr] = (out.get(addr, 0) + int(h)) & mask
        return out

    def generation(self) -> int:
        """A number that changes with every committed import or publication (by this process
        or another). Read with the search version, so a server whose directory another process
        upgraded searches with the new documents from its next request on."""
        sql = "SELECT k, v FROM meta WHERE k IN ('generation', 'search_version')"
        meta: dict[str, int] = dict(self._all(sql))
        self._search_version = int(meta.get("search_version", 1))
        gen = int(meta.get("generation", 0))
        if gen != self._counts_generation:
            self._counts, self._counts_generation = None, gen
        return gen

    def operator_addresses(self) -> set[str]:
        return {r[0] for r in self._all("SELECT address FROM mailbox WHERE source = 'op'")}

    # -- search ---------------------------------------------------------------------------
    def _mailbox_cond(self, value: str, match: MailboxMatch) -> tuple[str, list[object]]:
        v = value.strip().lower()
        if match == "exact":
            return "m.address = ?", [v]
        if match == "contains" and len(v) >= 3:
            return self._contains_clause(v)
        if match == "contains":
            return "m.address LIKE ?", ["%" + v.replace("%", "").replace("_", "") + "%"]
        return "m.address >= ? AND m.address < ?", [v, v + "\U0010ffff"]

    def _mailbox_holders(
        self, col: str, value: str, match: MailboxMatch, *, org: bool = False
    ) -> list[str]:
        """Holders of the (non liste rouge) mailboxes matching ``value``, looked up first so the
        search is driven by the mailbox index rather than by a scan of the holders."""
        c, p = self._mailbox_cond(value, match)
        types = " AND m.type IN ('ORG', 'APP')" if org else ""
        rows = self._all(
            f"SELECT DISTINCT m.{col} FROM mailbox m WHERE {c} AND m.liste_rouge = 0"  # noqa: S608
            f" AND m.{col} <> ''{types} LIMIT {MAX_HOLDERS}",
            p,
        )
        return [r[0] for r in rows if r[0]]

    def _name_groups(self, text: str, fuzzy: bool, widen: bool = False) -> list[list[Term]] | None:
        """One OR-group per query word; None when a word matches nothing even fuzzily.

        A word that is no prefix of any known name is replaced by its corrections (edit
        distance 1); with ``widen``, every word also accepts its corrections (a retry when
        the words are all real names but none together: ``lefebvre`` for ``lefevre``)."""
        words = [t[:40] for t in tokens(text)][:MAX_WORDS]
        out: list[list[Term]] = []
        for tok in words:
            group: list[Term] = [(tok, True)]
            exists: bool | None = None
            if len(tok) > PREFIX_INDEXED and not tok.startswith("zz"):
                # no prefix index that long: FTS5 would merge the lists of every term it
                # starts (5 ms for deschamps* nationally); the known names it starts are
                # the same matches (every name token of a document is in name_term)
                terms = self._terms_starting(tok)
                exists = bool(terms)
                if 0 < len(terms) <= EXPAND_MAX:
                    group = [(t, False) for t in terms]
            if not fuzzy or len(tok) < 4:
                out.append(group)
                continue
            if exists is None:
                exists = self._prefix_exists(tok)
            if exists and not widen:
                out.append(group)
                continue
            have = {t for t, _ in group}
            cands = [(c, False) for c in self._corrections(tok) if c != tok and c not in have]
            if not exists and not cands:
                return None
            out.append((group if exists else []) + cands)
        return out

    def _terms_starting(self, tok: str) -> list[str]:
        """The known name terms starting with ``tok`` (at most ``EXPAND_MAX + 1``)."""
        rows = self._all(
            "SELECT term FROM name_term WHERE term >= ? AND term < ? LIMIT ?",
            [tok, tok + "\U0010ffff", EXPAND_MAX + 1],
        )
        return [r[0] for r in rows]

    def _prefix_exists(self, tok: str) -> bool:
        rows = self._all(
            "SELECT 1 FROM name_term WHERE term >= ? AND term < ? LIMIT 1",
            [tok, tok + "\U0010ffff"],
        )
        return bool(rows)

    def _corrections(self, tok: str) -> list[str]:
        dels = sorted(deletes(tok) | {tok})
        marks = ", ".join("?" * len(dels))
        rows = self._all(f"SELECT term FROM name_del WHERE del IN ({marks})", dels)  # noqa: S608
        rows += self._all(f"SELECT term FROM name_term WHERE term IN ({marks})", dels)  # noqa: S608
        return sorted({r[0] for r in rows if edit_distance_le1(tok, r[0])})[:20]

    def search_persons(self, q: PersonQuery, offset: int, limit: int) -> list[str]:
        text = " ".join(x for x in (q.text, q.family, q.given) if x)
        found = self._search_persons(q, text, offset, limit, widen=False)
        if not found and text and q.fuzzy and offset == 0:
            found = self._search_persons(q, text, offset, limit, widen=True)
        return found

    def _search_persons(
        self, q: PersonQuery, text: str, offset: int, limit: int, *, widen: bool
    ) -> list[str]:
        groups: list[list[Term]] = []
        if text:
            named = self._name_groups(text, q.fuzzy, widen)
            if named is None:
                return []
            groups += named
        dept = _department(q.postal_code)
        if q.professions and dept and self.search_version() >= 2:
            # one posting list (profession x department) instead of two large ones
            groups.append([(f"zzx{compact(p)}d{dept}", False) for p in q.professions])
            self._place_groups(groups, "", q.city)
        else:
            if q.professions:
                groups.append([("zzp" + compact(p), False) for p in q.professions])
            self._place_groups(groups, q.postal_code, q.city)
        if q.specialties:
            groups.append([("zzs" + compact(s), False) for s in q.specialties])
        conds: list[str] = []
        params: list[object] = []
        if q.finess:
            groups.append([("zzf" + compact(q.finess), False)])
        source, order = "person t", "t.pk"
        if groups:
            groups, checks = self._driving_groups(groups)
            c, p = self._fts_clause("person", groups)
            conds.append(c)
            params += p
            source, order = self._fts_from("person")
            for group in checks:
                conds.append("(" + " OR ".join(["(' ' || t.doc || ' ') LIKE ?"] * len(group)) + ")")
                params += [f"% {tok}{'' if prefix else ' '}%" for tok, prefix in group]
        if q.family:
            conds.append("(' ' || t.names) LIKE ?")
            params.append("% " + fold(q.family) + "%")
        if q.identifiers:
            conds.append(f"t.idnps IN ({', '.join('?' * len(q.identifiers))})")
            params += list(q.identifiers)
        if q.id_types:
            conds.append(f"t.id_type IN ({', '.join('?' * len(q.id_types))})")
            params += list(q.id_types)
        if not self._mailbox_and_date_conds(
            q.mailbox, q.mailbox_match, q.mailbox_type, q.updated_since, conds, params, org=False
        ):
            return []
        where = " AND ".join(conds) or "1=1"
        return self._person_page(source, where, order, params, limit, offset)

    def _mailbox_and_date_conds(
        self,
        mailbox: str,
        match: MailboxMatch,
        mailbox_type: str,
        updated_since: str,
        conds: list[str],
        params: list[object],
        *,
        org: bool,
    ) -> bool:
        """Adds the mailbox address, mailbox type and ``_lastUpdated`` filters of a person
        (``org=False``: PER/CAB boxes by IDNPS) or structure (ORG/APP boxes by key) search;
        False when the address matches no holder (the answer is empty)."""
        link, key = ("org_key", "t.key") if org else ("idnps", "t.idnps")
        if mailbox:
            holders = self._mailbox_holders(link, mailbox, match, org=org)
            if not holders:
                return False
            conds.append(f"{key} IN ({', '.join('?' * len(holders))})")
            params += holders
        if mailbox_type:
            kinds = "('ORG', 'APP')" if org else "('PER', 'CAB')"
            conds.append(  # link, key and kinds are the constants above, never input
                f"EXISTS (SELECT 1 FROM mailbox m WHERE m.{link} = {key} AND m.type = ?"  # noqa: S608
                f" AND m.type IN {kinds} AND m.liste_rouge = 0)"
            )
            params.append(mailbox_type)
        if updated_since:
            conds.append("t.updated >= ?")
            params.append(updated_since)
        return True

    def _person_page(
        self, source: str, where: str, order: str, params: list[object], limit: int, offset: int
    ) -> list[str]:
        """The ids of one page of a person search (an engine may plan it its own way)."""
        sql = f"SELECT t.idnps FROM {source} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"  # noqa: S608
        return [r[0] for r in self._all(sql, [*params, limit, offset])]

    def _driving_groups(
        self, groups: list[list[Term]]
    ) -> tuple[list[list[Term]], list[list[Term]]]:
        """(groups matched by the index, groups checked on the document text).

        FTS5 (``detail=none``) intersects by reading whole posting lists: a large one
        (``zzp60``, 496,090 documents nationally; a prefix word, ``martin*``) costs
        milliseconds even beside a rare token. When a group has at most :data:`DRIVE_MAX`
        documents (counted with ``LIMIT``, kept per generation) and another has more, the
        smallest alone is matched in the index and the others are checked on those
        documents' text, where the document is the same folded, space-separated tokens that
        the index holds: the same ids. Prefix words longer than the prefix indexes were
        expanded to the names they start (:meth:`_name_groups`) and count like the others."""
        if len(groups) < 2:
            return groups, []
        # a prefix without its own index is not counted (counting it costs the merge of its
        # lists, as much as the search): it counts as large
        counts = [
            DRIVE_MAX + 1
            if any(
                prefix and (len(tok) > PREFIX_INDEXED or not self._count_prefixes)
                for tok, prefix in g
            )
            else self._capped_count(g)
            for g in groups
        ]
        best = min(range(len(groups)), key=lambda i: counts[i])
        if counts[best] > DRIVE_MAX or all(n <= DRIVE_MAX for n in counts):
            return groups, []
        return [groups[best]], [g for i, g in enumerate(groups) if i != best]

    def _capped_count(self, group: list[Term]) -> int:
        """Documents matching ``group`` (an OR of tokens), counted up to ``DRIVE_MAX + 1``;
        kept until the generation changes (0.05 to 0.4 ms each nationally). A stale count only
        changes which group drives, never the ids found."""
        c, p = self._fts_clause("person", [group])
        key = str(p[0])
        counts = self._counts
        if counts is None:
            counts = self._counts = {}
        n = counts.get(key)
        if n is None:
            source = self._count_from("person")
            n = int(
                self._all(
                    f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {c} LIMIT ?) x",  # noqa: S608
                    [*p, DRIVE_MAX + 1],
                )[0][0]
            )
            if len(counts) < 100_000:
                counts[key] = n
        return n

    def _count_from(self, table: str) -> str:
        """FROM clause for counting the matches of a full-text condition."""
        return self._fts_from(table)[0]

    def suggest(self, text: str, limit: int) -> list[tuple[str, str, str]]:
        """Autocomplete: ``(resource type, id, label)`` of persons then structures whose names
        start with the words typed (typos tolerated when nothing matches)."""
        out: list[tuple[str, str, str]] = []
        ids = self.search_persons(PersonQuery(text=text), 0, limit)
        if ids:
            marks = ", ".join("?" * len(ids))
            rows = self._all(
                f"SELECT idnps, family, given FROM person WHERE idnps IN ({marks})",  # noqa: S608
                ids,
            )
            label = {r[0]: f"{r[1]} {r[2] or ''}".strip() for r in rows}
            out += [("Practitioner", i, label[i]) for i in ids if i in label]
        if len(out) < limit:
            keys = self.search_orgs(OrgQuery(text=text), 0, limit - len(out))
            if keys:
                marks = ", ".join("?" * len(keys))
                rows = self._all(
                    f"SELECT key, name, city FROM org WHERE key IN ({marks})",  # noqa: S608
                    keys,
                )
                label = {r[0]: f"{r[1]} ({r[2]})" if r[2] else str(r[1]) for r in rows}
                out += [("Organization", k, label[k]) for k in keys if k in label]
        return out

    @staticmethod
    def _place_groups(groups: list[list[Term]], postal: str, city: str) -> None:
        pc = compact(postal)
        if pc:
            if _department(postal):
                groups.append([("zzd" + pc, False)])
            else:
                groups.append([("zzcp" + pc, len(pc) < 5)])
        if compact(city):
            groups.append([("zzc" + compact(city), True)])

    def search_orgs(self, q: OrgQuery, offset: int, limit: int) -> list[str]:
        groups: list[list[Term]] = []
        if q.text:
            groups += [[(t[:40], True)] for t in tokens(q.text)[:MAX_WORDS]]
        self._place_groups(groups, q.postal_code, q.city)
        if q.sectors:
            groups.append([("zzsa" + compact(s), False) for s in q.sectors])
        conds: list[str] = []
        params: list[object] = []
        source, order = "org t", "t.pk"
        if groups:
            c, p = self._fts_clause("org", groups)
            conds.append(c)
            params += p
            source, order = self._fts_from("org")
        if q.name_contains:
            conds.append("lower(t.name) LIKE ?")
            params.append("%" + q.name_contains.lower() + "%")
        if q.identifiers:
            marks = ", ".join("?" * len(q.identifiers))
            conds.append(
                f"(t.key IN ({marks}) OR t.finess IN ({marks}) OR t.siret IN ({marks})"
                f" OR t.siren IN ({marks}))"
            )
            params += list(q.identifiers) * 4
        if q.id_kinds:
            kinds = [k for k in q.id_kinds if k in ("finess", "finess_ej", "siret", "siren")]
            conds.append("(" + (" OR ".join(f"t.{k} <> ''" for k in kinds) or "1=0") + ")")
        if not self._mailbox_and_date_conds(
            q.mailbox, q.mailbox_match, q.mailbox_type, q.updated_since, conds, params, org=True
        ):
            return []
        where = " AND ".join(conds) or "1=1"
        sql = f"SELECT t.key FROM {source} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"  # noqa: S608
        return [r[0] for r in self._all(sql, [*params, limit, offset])]

    def search_roles(self, q: RoleQuery, offset: int, limit: int) -> list[str]:
        conds: list[str] = []
        params: list[object] = []
        for col, values in (
            ("a.id", q.ids),
            ("a.idnps", q.practitioners),
            ("a.org_key", q.organizations),
        ):
            if values:
                conds.append(f"{col} IN ({', '.join('?' * len(values))})")
                params += list(values)
        if q.roles:
            marks = ", ".join("?" * len(q.roles))
            conds.append(f"(a.mode_code IN ({marks}) OR a.profession_code IN ({marks}))")
            params += list(q.roles) * 2
        if q.mailbox:
            c, p = self._mailbox_cond(q.mailbox, q.mailbox_match)
            conds.append(
                f"EXISTS (SELECT 1 FROM mailbox m WHERE {c} AND m.liste_rouge = 0"  # noqa: S608
                " AND m.idnps = a.idnps AND m.org_key = a.org_key)"
            )
            params += p
            conds.append(
                f"a.idnps IN (SELECT m.idnps FROM mailbox m WHERE {c} AND m.liste_rouge = 0)"  # noqa: S608
            )
            params += p
        if q.mailbox_type:
            conds.append(
                "EXISTS (SELECT 1 FROM mailbox m WHERE m.idnps = a.idnps AND m.org_key = a.org_key"
                " AND m.type = ? AND m.type = 'PER' AND m.liste_rouge = 0)"
            )
            params.append(q.mailbox_type)
        if q.updated_since:
            conds.append("a.idnps IN (SELECT idnps FROM person WHERE updated >= ?)")
            params.append(q.updated_since)
        where = " AND ".join(conds) or "1=1"
        sql = f"SELECT a.id FROM activity a WHERE {where} ORDER BY a.id LIMIT ? OFFSET ?"  # noqa: S608
        return [r[0] for r in self._all(sql, [*params, limit, offset])]

    def roles_of(self, *, practitioners: Sequence[str] = (), orgs: Sequence[str] = ()) -> list[str]:
        out: list[str] = []
        for col, values in (("idnps", practitioners), ("org_key", orgs)):
            if values:
                marks = ", ".join("?" * len(values))
                sql = f"SELECT id FROM activity WHERE {col} IN ({marks}) ORDER BY id"  # noqa: S608
                out += [r[0] for r in self._all(sql, list(values))]
        return list(dict.fromkeys(out))

    # -- fetch ----------------------------------------------------------------------------
    def _mailboxes_where(self, cond: str, values: Sequence[str]) -> list[Mailbox]:
        if not values:
            return []
        marks = ", ".join("?" * len(values))
        sql = (
            f"SELECT {_MAILBOX_READ} FROM mailbox WHERE {cond} IN ({marks})"  # noqa: S608
            " ORDER BY coalesce(rank, 1000), address"
        )
        return [_mailbox(r) for r in self._all(sql, list(values))]

    def get_persons(self, ids: Sequence[str]) -> list[Person]:
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        prow = self._all(
            f"SELECT idnps, id_type, id_pp, civ_ex_code, civ_ex_label, civ_code, family, given,"  # noqa: S608
            f" updated FROM person WHERE idnps IN ({marks})",
            list(ids),
        )
        updated = {r[0]: r[8] or "" for r in prow}
        acts: dict[str, list[Activity]] = {}
        for a in self._activities("idnps", ids, updated):
            acts.setdefault(a.idnps, []).append(a)
        boxes: dict[str, list[Mailbox]] = {}
        for m in self._mailboxes_where("idnps", ids):
            if m.type in ("PER", "CAB"):
                boxes.setdefault(m.idnps, []).append(m)
        by_id = {
            r[0]: Person(
                *_strs(r),  # type: ignore[arg-type, misc]  # the 9 leading str fields
                activities=tuple(acts.get(r[0], ())),
                mailboxes=tuple(boxes.get(r[0], ())),
            )
            for r in prow
        }
        return [by_id[i] for i in ids if i in by_id]

    def _activities(
        self, col: str, values: Sequence[str], updated: dict[str, str] | None = None
    ) -> list[Activity]:
        """Activities whose ``col`` is in ``values``; their ``updated`` is their person's, taken
        from ``updated`` (IDNPS -> date) when the caller has it, else joined (2 lookups a row)."""
        marks = ", ".join("?" * len(values))
        cols = (
            "a.id, a.idnps, a.profession_code, a.profession_label, a.category_code,"
            " a.sf_type_code, a.sf_code, a.sf_label, a.mode_code, a.mode_label, a.org_key,"
            " a.authority"
        )
        if updated is not None:
            rows = self._all(
                f"SELECT {cols} FROM activity a WHERE a.{col} IN ({marks}) ORDER BY a.id",  # noqa: S608
                list(values),
            )
            # the selected columns are the leading str fields of Activity
            return [Activity(*_strs(r), updated.get(r[1], "")) for r in rows]  # type: ignore[arg-type, call-arg]
        rows = self._all(
            f"SELECT {cols}, p.updated FROM activity a JOIN person p ON p.idnps = a.idnps"  # noqa: S608
            f" WHERE a.{col} IN ({marks}) ORDER BY a.id",
            list(values),
        )
        return [Activity(*_strs(r)) for r in rows]  # type: ignore[arg-type]

    def get_roles(self, ids: Sequence[str]) -> list[Activity]:
        if not ids:
            return []
        acts = self._activities("id", ids)
        persons = sorted({a.idnps for a in acts})
        boxes: dict[tuple[str, str], list[Mailbox]] = {}
        for m in self._mailboxes_where("idnps", persons):
            if m.org_key and m.type == "PER":
                boxes.setdefault((m.idnps, m.org_key), []).append(m)
        out = {a.id: replace(a, mailboxes=tuple(boxes.get((a.idnps, a.org_key), ()))) for a in acts}
        return [out[i] for i in ids if i in out]

    def get_orgs(self, keys: Sequence[str]) -> list[Organization]:
        if not keys:
            return []
        marks = ", ".join("?" * len(keys))
        rows = self._all(
            "SELECT key, name, siret, siren, finess, finess_ej, tech_id, enseigne, compl_dest,"  # noqa: S608
            " num_voie, type_voie_code, voie, postal_code, commune_code, city, dept_code, country,"
            " phone, phone2, fax, email, sector_code, sector_label, updated"
            f" FROM org WHERE key IN ({marks})",
            list(keys),
        )
        boxes: dict[str, list[Mailbox]] = {}
        for m in self._mailboxes_where("org_key", keys):
            if m.type in ("ORG", "APP"):
                boxes.setdefault(m.org_key, []).append(m)
        by_key = {
            r[0]: replace(
                Organization(*_strs(r)),  # type: ignore[arg-type]  # the leading str fields
                mailboxes=tuple(boxes.get(r[0], ())),
            )
            for r in rows
        }
        return [by_key[k] for k in keys if k in by_key]

    # -- fetch for rendering (rows in the orders of fhir.*_from_row) ----------------------
    def _box_rows(self, col: str, values: Sequence[str], types: str) -> list[Row]:
        """Mailboxes not on liste rouge whose ``col`` is in ``values`` and type in ``types``
        (an SQL list of literals): ``col``, ``org_key``, then ``BOX_READ``; preferred first."""
        if not values:
            return []
        marks = ", ".join("?" * len(values))
        return self._all(
            f"SELECT {col}, org_key, {BOX_READ} FROM mailbox WHERE {col} IN ({marks})"  # noqa: S608
            f" AND liste_rouge = 0 AND type IN ({types}) ORDER BY coalesce(rank, 1000), address",
            list(values),
        )

    def person_rows(self, ids: Sequence[str]) -> tuple[list[Row], list[Row], list[Row]]:
        """What a Practitioner needs: person rows (``PERSON_READ``), activity rows (IDNPS then
        ``PERSON_ACT_READ``, in id order), mailbox rows (``BOX_READ``)."""
        if not ids:
            return [], [], []
        marks = ", ".join("?" * len(ids))
        people = self._all(
            f"SELECT {PERSON_READ} FROM person WHERE idnps IN ({marks})",  # noqa: S608
            list(ids),
        )
        acts = self._all(
            f"SELECT idnps, {PERSON_ACT_READ} FROM activity WHERE idnps IN ({marks})"  # noqa: S608
            " ORDER BY id",
            list(ids),
        )
        return people, acts, self._box_rows("idnps", ids, "'PER', 'CAB'")

    def role_rows(self, ids: Sequence[str]) -> tuple[list[Row], list[Row]]:
        """What a PractitionerRole needs: activity rows (``ROLE_READ``), and the PER mailbox
        rows of their persons (``BOX_READ``; the caller matches them on ``org_key``)."""
        if not ids:
            return [], []
        marks = ", ".join("?" * len(ids))
        acts = self._all(
            f"SELECT {ROLE_READ} FROM activity a JOIN person p ON p.idnps = a.idnps"  # noqa: S608
            f" WHERE a.id IN ({marks})",
            list(ids),
        )
        persons = sorted({a[1] for a in acts})
        return acts, self._box_rows("idnps", persons, "'PER'")

    def org_rows(self, keys: Sequence[str]) -> tuple[list[Row], list[Row]]:
        """What an Organization needs: org rows (``ORG_READ``) and mailbox rows."""
        if not keys:
            return [], []
        marks = ", ".join("?" * len(keys))
        rows = self._all(
            f"SELECT {ORG_READ} FROM org WHERE key IN ({marks})",  # noqa: S608
            list(keys),
        )
        return rows, self._box_rows("org_key", keys, "'ORG', 'APP'")

    # -- mailboxes (publication) ----------------------------------------------------------
    def find_mailbox(self, address: str) -> list[Mailbox]:
        return self._mailboxes_where("address", [address.strip().lower()])

    @abstractmethod
    def importing(self, *, bulk: bool = False) -> AbstractContextManager[ImportSession]: ...

    def put_mailbox(self, mailbox: Mailbox) -> None:
        row = mailbox_store_row(mailbox, self._holder_row(mailbox.idnps))
        with self.importing() as s:
            s.delete_mailboxes([mailbox.address])
            s.insert_mailboxes([row])

    def remove_mailbox(self, address: str) -> int:
        before = len(self.find_mailbox(address))
        with self.importing() as s:
            s.delete_mailboxes([address.strip().lower()])
        return before

    def _holder_row(self, idnps: str) -> Row | None:
        if not idnps:
            return None
        rows = self._all(
            "SELECT p.id_type, p.id_pp, p.civ_ex_code, p.family, p.given, a.category_code,"
            " a.category_label, a.profession_code, a.profession_label, a.sf_code, a.sf_label"
            " FROM person p LEFT JOIN activity a ON a.idnps = p.idnps WHERE p.idnps = ? LIMIT 1",
            [idnps],
        )
        return rows[0] if rows else None


def insert_sql(table: str) -> str:
    cols = {"person": PERSON_COLUMNS, "activity": ACTIVITY_COLUMNS, "org": ORG_COLUMNS,
            "mailbox": MAILBOX_COLUMNS}[table]  # fmt: skip
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"  # noqa: S608
