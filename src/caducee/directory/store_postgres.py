"""PostgreSQL directory store, for deployments at national scale.

Names and categorical tokens are matched with a ``tsvector`` (``simple`` configuration over text
already folded in Python, which plays the part of ``unaccent``) and a GIN index; mailbox
substrings and organization names with ``pg_trgm`` GIN indexes. Imports stream rows with
``COPY`` inside one transaction; upserts go through a staging table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from caducee.core.errors import StorageError
from caducee.directory.model import ACTIVITY_COLUMNS, MAILBOX_COLUMNS, ORG_COLUMNS, PERSON_COLUMNS
from caducee.directory.rows import SEARCH_VERSION, upgrade_doc
from caducee.directory.sqlbase import MAX_HOLDERS, SqlStoreBase, Term
from caducee.directory.store import ImportSession, MailboxMatch
from caducee.directory.text import deletes, name_tokens

__all__ = ["PostgresDirectoryStore"]

SCAN_WINDOW = 2_000  # persons read in primary key order before a search turns to the index
PFX_LEN = 8  # longest prefix with its own lexeme in ``doc_pfx``
# ``doc_pfx``: the prefixes (1 to 8 characters) of every word of a search document but the
# categorical ``zz`` tokens, and those tokens themselves, as lexemes. A query word of up to 8
# characters is then one exact lexeme in a GIN index instead of a prefix match (``de:*``),
# which merges the lists of every lexeme it starts (``de:* & la:* & fontaine:* & zzx10d75``:
# 205 ms nationally in the index alone), and a name word and a categorical token are matched
# in the same index, which skips through the long list with the short one.
PREFIXES_FN = f"""
DO $do$ BEGIN
IF NOT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'caducee_dir_prefixes') THEN
CREATE FUNCTION caducee_dir_prefixes(doc text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$
  SELECT coalesce(array_to_tsvector(array_agg(DISTINCT p)), ''::tsvector) FROM (
    SELECT left(w, n) AS p FROM unnest(string_to_array(doc, ' ')) w,
      generate_series(1, least(length(w), {PFX_LEN})) n WHERE w <> '' AND w NOT LIKE 'zz%'
    UNION ALL
    SELECT w FROM unnest(string_to_array(doc, ' ')) w WHERE w LIKE 'zz%') s
$f$;
END IF;
END $do$;
"""  # noqa: S608  # a constant
PFX_COLUMN = "doc_pfx tsvector GENERATED ALWAYS AS (caducee_dir_prefixes(doc)) STORED"

SCHEMA = f"""
CREATE EXTENSION IF NOT EXISTS pg_trgm;
{PREFIXES_FN}
CREATE TABLE IF NOT EXISTS person (
  pk BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, idnps TEXT COLLATE "C" NOT NULL UNIQUE,
  id_type TEXT, id_pp TEXT, civ_ex_code TEXT, civ_ex_label TEXT, civ_code TEXT, civ_label TEXT,
  family TEXT, given TEXT, doc TEXT, names TEXT, hash BIGINT, updated TEXT,
  doc_tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', doc)) STORED,
  {PFX_COLUMN});
CREATE TABLE IF NOT EXISTS activity (
  id TEXT COLLATE "C" PRIMARY KEY, idnps TEXT COLLATE "C" NOT NULL, profession_code TEXT,
  profession_label TEXT, category_code TEXT, category_label TEXT, sf_type_code TEXT,
  sf_type_label TEXT, sf_code TEXT, sf_label TEXT, mode_code TEXT, mode_label TEXT,
  org_key TEXT COLLATE "C", authority TEXT, pharma_code TEXT, pharma_label TEXT);
CREATE INDEX IF NOT EXISTS activity_idnps ON activity(idnps);
CREATE INDEX IF NOT EXISTS activity_org ON activity(org_key);
CREATE TABLE IF NOT EXISTS org (
  pk BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, key TEXT COLLATE "C" NOT NULL UNIQUE,
  siret TEXT, siren TEXT, finess TEXT, finess_ej TEXT, tech_id TEXT, name TEXT, enseigne TEXT,
  compl_dest TEXT, compl_geo TEXT, num_voie TEXT, indice TEXT, type_voie_code TEXT,
  type_voie_label TEXT, voie TEXT, mention TEXT, cedex TEXT, postal_code TEXT, commune_code TEXT,
  city TEXT, country_code TEXT, country TEXT, phone TEXT, phone2 TEXT, fax TEXT, email TEXT,
  dept_code TEXT, dept_label TEXT, old_id TEXT, sector_code TEXT, sector_label TEXT, doc TEXT,
  source TEXT, updated TEXT,
  doc_tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', doc)) STORED);
CREATE INDEX IF NOT EXISTS org_finess ON org(finess);
CREATE INDEX IF NOT EXISTS org_siret ON org(siret);
CREATE INDEX IF NOT EXISTS org_siren ON org(siren);
CREATE TABLE IF NOT EXISTS mailbox (
  pk BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, type TEXT NOT NULL,
  address TEXT COLLATE "C" NOT NULL, id_type_pp TEXT, id_pp TEXT, idnps TEXT COLLATE "C",
  struct_type TEXT, struct_id TEXT, service TEXT, civ TEXT, family TEXT, given TEXT,
  category_code TEXT, category_label TEXT, profession_code TEXT, profession_label TEXT,
  sf_code TEXT, sf_label TEXT, demat TEXT, org_name TEXT, enseigne TEXT, l2 TEXT, l3 TEXT,
  l4num TEXT, l4compl TEXT, l4type TEXT, l4voie TEXT, l5 TEXT, l6 TEXT, postal_code TEXT,
  dept TEXT, country TEXT, org_key TEXT COLLATE "C", description TEXT, responsible TEXT,
  liste_rouge INTEGER NOT NULL DEFAULT 0, rank INTEGER, source TEXT NOT NULL, hash BIGINT,
  updated TEXT);
CREATE INDEX IF NOT EXISTS mailbox_address ON mailbox(address);
CREATE INDEX IF NOT EXISTS mailbox_idnps ON mailbox(idnps);
CREATE INDEX IF NOT EXISTS mailbox_org ON mailbox(org_key);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS name_term (term TEXT COLLATE "C" PRIMARY KEY);
CREATE TABLE IF NOT EXISTS name_del (del TEXT COLLATE "C", term TEXT COLLATE "C",
  PRIMARY KEY (del, term));
"""
# The search indexes, dropped during a first (bulk) load and built once at its end.
SEARCH_INDEXES = {
    "person_tsv": "CREATE INDEX IF NOT EXISTS person_tsv ON person USING gin (doc_tsv)",
    "person_pfx": "CREATE INDEX IF NOT EXISTS person_pfx ON person USING gin (doc_pfx)",
    "org_tsv": "CREATE INDEX IF NOT EXISTS org_tsv ON org USING gin (doc_tsv)",
    "org_name_trgm": "CREATE INDEX IF NOT EXISTS org_name_trgm ON org"
    " USING gin (lower(name) gin_trgm_ops)",
    "mailbox_trgm": "CREATE INDEX IF NOT EXISTS mailbox_trgm ON mailbox"
    " USING gin (address gin_trgm_ops)",
}


class PostgresDirectoryStore(SqlStoreBase):
    engine = "postgresql"

    def __init__(self, dsn: str, *, max_size: int = 16) -> None:
        try:
            self.pool = ConnectionPool(dsn, min_size=1, max_size=max_size, open=True,
                                       timeout=30)  # fmt: skip
            with self.pool.connection() as conn:
                conn.execute(SCHEMA)
                self._pfx = _has_pfx(conn)  # a directory created before doc_pfx: next import
                for name, sql in SEARCH_INDEXES.items():
                    if name != "person_pfx" or self._pfx:
                        conn.execute(sql)
            self._init_search_version()
        except (psycopg.Error, OSError, StorageError) as exc:
            raise StorageError(f"cannot open the directory database: {exc}") from exc

    def close(self) -> None:
        self.pool.close()

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s")

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        try:
            with self.pool.connection() as conn:
                yield conn.cursor()
        except psycopg.Error as exc:
            raise StorageError(f"directory query failed: {exc}") from exc

    def _fts_clause(self, table: str, groups: list[list[Term]]) -> tuple[str, list[object]]:
        """``doc_tsv`` matches every group; on persons, a group of prefix words (not starting
        with ``z``) of up to 8 characters and exact ``zz`` tokens is matched instead in
        ``doc_pfx``, where each is one exact lexeme; a longer prefix word is its first 8
        characters in ``doc_pfx`` and the whole word as a prefix in ``doc_tsv`` (a narrow
        range). Typo corrections (exact name words) stay on ``doc_tsv``. Same documents."""
        parts, pfx = [], []
        for group in groups:
            if table == "person" and self._pfx and all(map(_in_pfx, group)):
                alts = ["'" + (tok[:PFX_LEN] if prefix else tok) + "'" for tok, prefix in group]
                pfx.append(alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")")
                if all(len(tok) <= PFX_LEN or not prefix for tok, prefix in group):
                    continue
            alts = [tok + (":*" if prefix else "") for tok, prefix in group]
            parts.append(alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")")
        conds: list[str] = []
        params: list[object] = []
        if pfx:
            conds.append("t.doc_pfx @@ ?::tsquery")
            params.append(" & ".join(pfx))
        if parts:
            conds.append("t.doc_tsv @@ to_tsquery('simple', ?)")
            params.append(" & ".join(parts))
        return " AND ".join(conds), params

    def _person_page(
        self, source: str, where: str, order: str, params: list[object], limit: int, offset: int
    ) -> list[str]:
        """A full-text search in two steps instead of leaving the choice to the planner, whose
        estimate for two words together assumes them independent: ``ant:* & fra:*`` (Antoine
        François...) was estimated at 741 rows and read in primary key order through the
        whole table (464 ms) for 100 matches.

        1. The first :data:`SCAN_WINDOW` persons in primary key order: when the page is among
           them (a common word: ``m``, ``mar``), it is the answer (the same rows the whole
           table would give first).
        2. Else the matches are rare: they are found in the GIN indexes and sorted
           (``pk + 0`` keeps the planner off the primary key walk)."""
        if source != "person t" or "t.doc_" not in where:
            return super()._person_page(source, where, order, params, limit, offset)
        rows = self._all(
            f"SELECT t.idnps FROM (SELECT * FROM person ORDER BY pk LIMIT {SCAN_WINDOW}) t"  # noqa: S608
            f" WHERE {where} ORDER BY t.pk LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        if len(rows) == limit:
            return [r[0] for r in rows]
        sql = f"SELECT t.idnps FROM person t WHERE {where} ORDER BY t.pk + 0 LIMIT ? OFFSET ?"  # noqa: S608
        return [r[0] for r in self._all(sql, [*params, limit, offset])]

    def _contains_clause(self, pattern: str) -> tuple[str, list[object]]:
        safe = pattern.replace("%", "").replace("_", "").replace("\\", "")
        return "m.address LIKE ?", ["%" + safe + "%"]

    def _mailbox_holders(
        self, col: str, value: str, match: MailboxMatch, *, org: bool = False
    ) -> list[str]:
        """As the base, but a substring search reads the mailboxes found by the trigram index
        in table order and stops at the 2,000th (``DISTINCT`` read and sorted all of them:
        7,465 rows for ``rie-the`` nationally) before keeping the first 500 holders, as SQLite
        does in rowid order. The sorted ``DISTINCT`` stays for the rare pattern whose 2,000
        mailboxes have fewer than 500 holders."""
        v = value.strip().lower()
        if match != "contains" or len(v) < 3:
            return super()._mailbox_holders(col, value, match, org=org)
        c, p = self._contains_clause(v)
        types = " AND m.type IN ('ORG', 'APP')" if org else ""
        cap = 4 * MAX_HOLDERS
        rows = self._all(
            f"SELECT m.{col} FROM mailbox m WHERE {c} AND m.liste_rouge = 0"  # noqa: S608
            f" AND m.{col} <> ''{types} LIMIT {cap}",
            p,
        )
        holders = list(dict.fromkeys(r[0] for r in rows if r[0]))
        if len(rows) < cap or len(holders) >= MAX_HOLDERS:
            return holders[:MAX_HOLDERS]
        return super()._mailbox_holders(col, value, match, org=org)

    @contextmanager
    def importing(self, *, bulk: bool = False) -> Iterator[ImportSession]:
        try:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(4242001)")
                session = _PgImport(conn, bulk=bulk)
                yield session
                session.finish()
            self._pfx = True  # the import added doc_pfx and its index if they were missing
        except psycopg.Error as exc:
            raise StorageError(f"directory import failed: {exc}") from exc
        finally:
            self._search_version = None


def _in_pfx(term: Term) -> bool:
    """Whether ``doc_pfx`` holds this query term as one lexeme (a folded token has no quote)."""
    tok, prefix = term
    if not tok.isalnum():
        return False
    return (prefix and tok[:1] != "z") or (not prefix and tok.startswith("zz"))


def _has_pfx(conn: psycopg.Connection[Any]) -> bool:
    return bool(
        conn.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = 'person'::regclass"
            " AND attname = 'doc_pfx' AND NOT attisdropped"
        ).fetchone()
    )


class _PgImport:
    def __init__(self, conn: psycopg.Connection[Any], *, bulk: bool) -> None:
        self.conn = conn
        self.bulk = bulk
        self.terms: set[str] = set()
        self.mailboxes = 0  # rows written to mailbox
        # index builds (GIN) in memory rather than in many merged runs; this transaction only
        conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
        if not _has_pfx(conn):  # created before doc_pfx: the table is rewritten once
            conn.execute(f"ALTER TABLE person ADD COLUMN {PFX_COLUMN}")
        if bulk:
            for name in SEARCH_INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {name}")

    def _copy(self, table: str, cols: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        with (
            self.conn.cursor() as cur,
            cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def delete_persons(self, idnps: Sequence[str]) -> None:
        if idnps:
            self.conn.execute("DELETE FROM activity WHERE idnps = ANY(%s)", (list(idnps),))
            self.conn.execute("DELETE FROM person WHERE idnps = ANY(%s)", (list(idnps),))

    def insert_persons(self, rows: Iterable[tuple[object, ...]]) -> None:
        def gen() -> Iterator[tuple[object, ...]]:
            for r in rows:
                self.terms.update(name_tokens(str(r[7]), str(r[8])))
                yield r

        self._copy("person", PERSON_COLUMNS, gen())

    def insert_activities(self, rows: Iterable[tuple[object, ...]]) -> None:
        self._copy("activity", ACTIVITY_COLUMNS, rows)

    def upsert_orgs(self, rows: Sequence[tuple[object, ...]], *, only_new: bool = False) -> None:
        if not rows:
            return
        cols = ", ".join(ORG_COLUMNS)
        self.conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS org_stage AS SELECT {cols} FROM org WITH NO DATA"  # noqa: S608
        )
        self.conn.execute("TRUNCATE org_stage")
        self._copy("org_stage", ORG_COLUMNS, rows)
        action = "NOTHING"
        if not only_new:
            sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in ORG_COLUMNS[1:])
            action = f"UPDATE SET {sets}"
        self.conn.execute(
            f"INSERT INTO org ({cols}) SELECT DISTINCT ON (key) {cols} FROM org_stage"  # noqa: S608
            f" ON CONFLICT (key) DO {action}"
        )

    def delete_mailboxes(self, addresses: Sequence[str], *, source: str | None = None) -> None:
        if not addresses:
            return
        if source is None:
            self.conn.execute("DELETE FROM mailbox WHERE address = ANY(%s)", (list(addresses),))
        else:
            self.conn.execute(
                "DELETE FROM mailbox WHERE address = ANY(%s) AND source = %s",
                (list(addresses), source),
            )

    def insert_mailboxes(self, rows: Iterable[tuple[object, ...]]) -> None:
        def counted() -> Iterator[tuple[object, ...]]:
            for r in rows:
                self.mailboxes += 1
                yield r

        self._copy("mailbox", MAILBOX_COLUMNS, counted())

    def prune_orgs(self) -> int:
        cur = self.conn.execute(
            "DELETE FROM org o WHERE NOT EXISTS (SELECT 1 FROM activity a WHERE a.org_key = o.key)"
            " AND NOT EXISTS (SELECT 1 FROM mailbox m WHERE m.org_key = o.key)"
        )
        return cur.rowcount

    def upgrade_search(self) -> int:
        c = self.conn
        c.execute("CREATE TEMP TABLE IF NOT EXISTS doc_stage (pk BIGINT PRIMARY KEY, doc TEXT)")
        c.execute("TRUNCATE doc_stage")
        with c.cursor() as cur:
            cur.execute("SELECT pk, doc FROM person")
            new = [(pk, d) for pk, doc in cur if (d := upgrade_doc(doc or "")) != doc]
        self._copy("doc_stage", ["pk", "doc"], new)
        c.execute("UPDATE person p SET doc = s.doc FROM doc_stage s WHERE p.pk = s.pk")
        c.execute("TRUNCATE doc_stage")
        c.execute(
            "INSERT INTO meta (k, v) VALUES ('search_version', %s)"
            " ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            (SEARCH_VERSION,),
        )
        return len(new)

    def finish(self) -> None:
        self.conn.execute(
            "INSERT INTO meta (k, v) VALUES ('generation', 1)"
            " ON CONFLICT (k) DO UPDATE SET v = meta.v + 1"
        )
        if self.terms:
            self.conn.execute('CREATE TEMP TABLE IF NOT EXISTS new_term (term TEXT COLLATE "C")')
            self.conn.execute("TRUNCATE new_term")
            self._copy("new_term", ["term"], ((t,) for t in self.terms))
            fresh = [
                r[0]
                for r in self.conn.execute(
                    "INSERT INTO name_term SELECT DISTINCT term FROM new_term"
                    " ON CONFLICT DO NOTHING RETURNING term"
                )
            ]
            self._copy("name_del", ["del", "term"],
                       ((d, t) for t in fresh if len(t) >= 4 for d in deletes(t)))  # fmt: skip
        # Prefix queries are planned from the most common lexemes: with the default 1,000 a
        # rare prefix (``rioot:*``) was estimated at 960 rows and read in primary key order
        # through 329,000 rows (247 ms) instead of 38 rows from the index (0.5 ms).
        for table, col, target in (("person", "doc_tsv", 2000), ("person", "doc_pfx", 2000),
                                   ("org", "doc_tsv", 2000)):  # fmt: skip
            self.conn.execute(f"ALTER TABLE {table} ALTER COLUMN {col} SET STATISTICS {target}")
        for sql in SEARCH_INDEXES.values():
            self.conn.execute(sql)
        if self.bulk:
            for table in ("person", "activity", "org", "mailbox"):
                self.conn.execute(f"ANALYZE {table}")
        elif self.mailboxes >= 10_000:
            # a first mailbox file: without statistics, `idnps = ANY(50 ids)` was planned as a
            # parallel scan of the whole table (88 ms per page of 50 practitioners); 1.3 s
            self.conn.execute("ANALYZE mailbox")
