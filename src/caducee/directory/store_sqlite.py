"""SQLite directory store: the embedded default (FTS5 for names, trigram FTS5 for addresses).

One connection per thread (WAL, so readers never wait for an import). Imports run in one
``BEGIN IMMEDIATE`` transaction; the full-text indexes are external-content FTS5 tables kept
in step by hand (``'delete'`` commands with the old text, rebuilt wholesale on a first load).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from caducee.core.errors import StorageError
from caducee.directory.rows import SEARCH_VERSION, upgrade_doc
from caducee.directory.sqlbase import MAX_HOLDERS, SqlStoreBase, Term, insert_sql
from caducee.directory.store import ImportSession, MailboxMatch
from caducee.directory.text import deletes, name_tokens

__all__ = ["SqliteDirectoryStore"]

# Prefix indexes up to 8 characters: a prefix query of a length without its own index merges
# the lists of every name it starts (``martin*``: 7.6 ms nationally with 1-3, 0.1 ms with 1-8).
PERSON_FTS = """CREATE VIRTUAL TABLE IF NOT EXISTS person_fts USING fts5(
  doc, content='person', content_rowid='pk', detail=none, columnsize=0,
  tokenize='unicode61 remove_diacritics 2', prefix='1 2 3 4 5 6 7 8')"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS person (
  pk INTEGER PRIMARY KEY AUTOINCREMENT, idnps TEXT NOT NULL UNIQUE, id_type TEXT, id_pp TEXT,
  civ_ex_code TEXT, civ_ex_label TEXT, civ_code TEXT, civ_label TEXT, family TEXT, given TEXT,
  doc TEXT, names TEXT, hash INTEGER, updated TEXT);
{PERSON_FTS};
CREATE TABLE IF NOT EXISTS activity (
  id TEXT PRIMARY KEY, idnps TEXT NOT NULL, profession_code TEXT, profession_label TEXT,
  category_code TEXT, category_label TEXT, sf_type_code TEXT, sf_type_label TEXT, sf_code TEXT,
  sf_label TEXT, mode_code TEXT, mode_label TEXT, org_key TEXT, authority TEXT, pharma_code TEXT,
  pharma_label TEXT);
CREATE TABLE IF NOT EXISTS org (
  pk INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, siret TEXT, siren TEXT,
  finess TEXT,
  finess_ej TEXT, tech_id TEXT, name TEXT, enseigne TEXT, compl_dest TEXT, compl_geo TEXT,
  num_voie TEXT, indice TEXT, type_voie_code TEXT, type_voie_label TEXT, voie TEXT, mention TEXT,
  cedex TEXT, postal_code TEXT, commune_code TEXT, city TEXT, country_code TEXT, country TEXT,
  phone TEXT, phone2 TEXT, fax TEXT, email TEXT, dept_code TEXT, dept_label TEXT, old_id TEXT,
  sector_code TEXT, sector_label TEXT, doc TEXT, source TEXT, updated TEXT);
CREATE VIRTUAL TABLE IF NOT EXISTS org_fts USING fts5(
  doc, content='org', content_rowid='pk', detail=none, columnsize=0,
  tokenize='unicode61 remove_diacritics 2', prefix='1 2 3');
CREATE TABLE IF NOT EXISTS mailbox (
  pk INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, address TEXT NOT NULL,
  id_type_pp TEXT, id_pp TEXT,
  idnps TEXT, struct_type TEXT, struct_id TEXT, service TEXT, civ TEXT, family TEXT, given TEXT,
  category_code TEXT, category_label TEXT, profession_code TEXT, profession_label TEXT,
  sf_code TEXT, sf_label TEXT, demat TEXT, org_name TEXT, enseigne TEXT, l2 TEXT, l3 TEXT,
  l4num TEXT, l4compl TEXT, l4type TEXT, l4voie TEXT, l5 TEXT, l6 TEXT, postal_code TEXT,
  dept TEXT, country TEXT, org_key TEXT, description TEXT, responsible TEXT,
  liste_rouge INTEGER NOT NULL DEFAULT 0, rank INTEGER, source TEXT NOT NULL, hash INTEGER,
  updated TEXT);
CREATE INDEX IF NOT EXISTS mailbox_address ON mailbox(address);
CREATE INDEX IF NOT EXISTS mailbox_idnps ON mailbox(idnps);
CREATE INDEX IF NOT EXISTS mailbox_org ON mailbox(org_key);
CREATE VIRTUAL TABLE IF NOT EXISTS mailbox_tri USING fts5(
  address, content='mailbox', content_rowid='pk', detail=none, tokenize='trigram');
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS name_term (term TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS name_del (del TEXT, term TEXT, PRIMARY KEY (del, term)) WITHOUT ROWID;
"""

# Secondary indexes: dropped during a first (bulk) load and built once at its end.
BULK_INDEXES = {
    "activity_idnps": "CREATE INDEX IF NOT EXISTS activity_idnps ON activity(idnps)",
    "activity_org": "CREATE INDEX IF NOT EXISTS activity_org ON activity(org_key)",
    "org_finess": "CREATE INDEX IF NOT EXISTS org_finess ON org(finess)",
    "org_siret": "CREATE INDEX IF NOT EXISTS org_siret ON org(siret)",
    "org_siren": "CREATE INDEX IF NOT EXISTS org_siren ON org(siren)",
}
_CHUNK = 500
# A first (bulk) load: a page cache large enough for the unique indexes filled in random order
# (person idnps, activity id: ~150 MB nationally), and FTS5 flushing its pending terms every
# 64 MB instead of every 1 MB (fewer segments to merge while the full-text tables are built).
_CACHE_KIB = 65536
BULK_CACHE_KIB = 600_000
FTS_HASHSIZE = 64 << 20


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


# Trigrams found in nearly every address (its domain): matching them reads a posting list of
# every mailbox (``e.f`` of ``.mssante.fr``: 540,000 nationally) and filters nothing.
_COMMON = ".mssante.fr"


def _trigram_match(pattern: str) -> str:
    """An FTS5 query (AND of the pattern's trigrams, those of :data:`_COMMON` left out unless
    nothing else remains) matching every address that contains ``pattern`` and some others:
    the caller checks the address with ``LIKE``, so the match stays a real substring match."""
    grams = [pattern[i : i + 3] for i in range(len(pattern) - 2)]
    grams = [g for g in grams if g not in _COMMON] or grams
    return " AND ".join('"' + g.replace('"', '""') + '"' for g in dict.fromkeys(grams))


class SqliteDirectoryStore(SqlStoreBase):
    """The directory in one SQLite file (``:memory:`` is refused: threads need a file)."""

    engine = "sqlite"
    _count_prefixes = True  # prefix indexes of 1 to 8 characters

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        try:
            conn = self._connect()
            conn.executescript(SCHEMA)
            for sql in BULK_INDEXES.values():
                conn.execute(sql)
            self._init_search_version()
        except (sqlite3.Error, StorageError) as exc:
            raise StorageError(f"cannot open directory database {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            # map the whole file (a national directory is 1.4 GB; SQLite caps the size at its
            # compile-time maximum, 2 GB here): reads are memory accesses, not pread calls
            conn.execute("PRAGMA mmap_size=17179869184")
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        try:
            yield self._connect().cursor()
        except sqlite3.Error as exc:
            raise StorageError(f"directory query failed: {exc}") from exc

    def _fts_clause(self, table: str, groups: list[list[Term]]) -> tuple[str, list[object]]:
        parts = []
        for group in groups:
            alts = [f'"{tok}"' + ("*" if prefix else "") for tok, prefix in group]
            parts.append(alts[0] if len(alts) == 1 else "(" + " OR ".join(alts) + ")")
        expr = " AND ".join(parts)
        return f"{table}_fts MATCH ?", [expr]

    def _fts_from(self, table: str) -> tuple[str, str]:
        # Driven by the FTS5 table in rowid order, so LIMIT stops the scan early.
        return f"{table}_fts JOIN {table} t ON t.pk = {table}_fts.rowid", f"{table}_fts.rowid"

    def _count_from(self, table: str) -> str:
        # the full-text table alone: counting needs no row of the base table
        return f"{table}_fts"

    def _contains_clause(self, pattern: str) -> tuple[str, list[object]]:
        safe = pattern.replace("%", "").replace("_", "")
        return (
            "m.pk IN (SELECT rowid FROM mailbox_tri WHERE address LIKE ?)",
            ["%" + safe + "%"],
        )

    def _mailbox_holders(
        self, col: str, value: str, match: MailboxMatch, *, org: bool = False
    ) -> list[str]:
        """As the base, but a substring search is driven by the trigram table in rowid order
        (a join, not ``pk IN (subquery)``), so ``LIMIT`` stops the scan at the last holder
        instead of materialising every match first (7,400 for ``etitia.`` nationally). Same
        holders in the same order."""
        safe = value.strip().lower().replace("%", "").replace("_", "")
        if match != "contains" or len(safe) < 3:
            return super()._mailbox_holders(col, value, match, org=org)
        types = " AND m.type IN ('ORG', 'APP')" if org else ""
        rows = self._all(
            f"SELECT DISTINCT m.{col} FROM mailbox_tri JOIN mailbox m"  # noqa: S608
            " ON m.pk = mailbox_tri.rowid WHERE mailbox_tri MATCH ? AND m.address LIKE ?"
            f" AND m.liste_rouge = 0 AND m.{col} <> ''{types} LIMIT {MAX_HOLDERS}",
            [_trigram_match(safe), "%" + safe + "%"],
        )
        return [r[0] for r in rows if r[0]]

    @contextmanager
    def importing(self, *, bulk: bool = False) -> Iterator[ImportSession]:
        with self._write_lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                session = _SqliteImport(conn, bulk=bulk)
                yield session
                session.finish()
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._search_version = None
                if bulk:
                    conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")


class _SqliteImport:
    """One import transaction on SQLite (see :class:`ImportSession`)."""

    def __init__(self, conn: sqlite3.Connection, *, bulk: bool) -> None:
        self.conn = conn
        self.bulk = bulk
        self.terms: set[str] = set()
        self.max_person = self._max("person")
        self.max_org = self._max("org")
        self.max_mailbox = self._max("mailbox")
        if bulk:
            conn.execute(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
            for name in BULK_INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {name}")

    def _max(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT coalesce(max(pk), 0) FROM {table}").fetchone()[0])  # noqa: S608

    def _fts_delete(self, table: str, col: str, key: str, values: Sequence[str]) -> None:
        fts = "mailbox_tri" if table == "mailbox" else f"{table}_fts"
        for chunk in _chunks(values):
            marks = ", ".join("?" * len(chunk))
            if self.bulk:  # the index is rebuilt from the table at the end
                self.conn.execute(f"DELETE FROM {table} WHERE {key} IN ({marks})", tuple(chunk))  # noqa: S608
                continue
            self.conn.execute(
                f"INSERT INTO {fts}({fts}, rowid, {col})"  # noqa: S608
                f" SELECT 'delete', pk, {col} FROM {table} WHERE {key} IN ({marks})",
                tuple(chunk),
            )
            self.conn.execute(f"DELETE FROM {table} WHERE {key} IN ({marks})", tuple(chunk))  # noqa: S608

    def delete_persons(self, idnps: Sequence[str]) -> None:
        for chunk in _chunks(idnps):
            marks = ", ".join("?" * len(chunk))
            self.conn.execute(f"DELETE FROM activity WHERE idnps IN ({marks})", tuple(chunk))  # noqa: S608
        self._fts_delete("person", "doc", "idnps", idnps)

    def insert_persons(self, rows: Iterable[tuple[object, ...]]) -> None:
        def gen() -> Iterator[tuple[object, ...]]:
            for r in rows:
                self.terms.update(name_tokens(str(r[7]), str(r[8])))
                yield r

        self.conn.executemany(insert_sql("person"), gen())

    def insert_activities(self, rows: Iterable[tuple[object, ...]]) -> None:
        self.conn.executemany(insert_sql("activity"), rows)

    def upsert_orgs(self, rows: Sequence[tuple[object, ...]], *, only_new: bool = False) -> None:
        if only_new:
            self.conn.executemany(insert_sql("org").replace("INSERT", "INSERT OR IGNORE", 1), rows)
            return
        if not self.bulk:
            self._fts_delete("org", "doc", "key", [str(r[0]) for r in rows])
        self.conn.executemany(insert_sql("org").replace("INSERT", "INSERT OR REPLACE", 1), rows)

    def delete_mailboxes(self, addresses: Sequence[str], *, source: str | None = None) -> None:
        if source is None:
            self._fts_delete("mailbox", "address", "address", addresses)
            return
        for chunk in _chunks(addresses):
            marks = ", ".join("?" * len(chunk))
            cond = f"address IN ({marks}) AND source = ?"
            self.conn.execute(
                "INSERT INTO mailbox_tri(mailbox_tri, rowid, address)"  # noqa: S608
                f" SELECT 'delete', pk, address FROM mailbox WHERE {cond}",
                (*chunk, source),
            )
            self.conn.execute(f"DELETE FROM mailbox WHERE {cond}", (*chunk, source))  # noqa: S608

    def insert_mailboxes(self, rows: Iterable[tuple[object, ...]]) -> None:
        self.conn.executemany(insert_sql("mailbox"), rows)

    def prune_orgs(self) -> int:
        cond = (
            "key NOT IN (SELECT org_key FROM activity WHERE org_key IS NOT NULL)"
            " AND key NOT IN (SELECT org_key FROM mailbox WHERE org_key IS NOT NULL)"
        )
        keys = [r[0] for r in self.conn.execute(f"SELECT key FROM org WHERE {cond}")]  # noqa: S608
        self._fts_delete("org", "doc", "key", keys)
        return len(keys)

    def upgrade_search(self) -> int:
        c = self.conn
        n, last = 0, 0
        while True:
            rows = c.execute(
                "SELECT pk, doc FROM person WHERE pk > ? ORDER BY pk LIMIT 50000", (last,)
            ).fetchall()
            if not rows:
                break
            last = rows[-1][0]
            new = [(d, pk) for pk, doc in rows if (d := upgrade_doc(doc or "")) != doc]
            c.executemany("UPDATE person SET doc = ? WHERE pk = ?", new)
            n += len(new)
        # external content: the index is rebuilt from the new docs, with its prefix indexes
        c.execute("DROP TABLE IF EXISTS person_fts")
        c.execute(PERSON_FTS)
        if not self.bulk:
            c.execute("INSERT INTO person_fts(person_fts) VALUES('rebuild')")
        c.execute(
            "INSERT INTO meta (k, v) VALUES ('search_version', ?)"
            " ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            (SEARCH_VERSION,),
        )
        return n

    def finish(self) -> None:
        c = self.conn
        c.execute(
            "INSERT INTO meta (k, v) VALUES ('generation', 1)"
            " ON CONFLICT (k) DO UPDATE SET v = meta.v + 1"
        )
        if self.bulk:
            for sql in BULK_INDEXES.values():
                c.execute(sql)
            for fts in ("person_fts", "org_fts", "mailbox_tri"):
                c.execute(f"INSERT INTO {fts}({fts}, rank) VALUES('hashsize', {FTS_HASHSIZE})")
                c.execute(f"INSERT INTO {fts}({fts}) VALUES('rebuild')")
        else:
            c.execute(
                "INSERT INTO person_fts(rowid, doc) SELECT pk, doc FROM person WHERE pk > ?",
                (self.max_person,),
            )
            c.execute(
                "INSERT INTO org_fts(rowid, doc) SELECT pk, doc FROM org WHERE pk > ?",
                (self.max_org,),
            )
            c.execute(
                "INSERT INTO mailbox_tri(rowid, address) SELECT pk, address FROM mailbox"
                " WHERE pk > ?",
                (self.max_mailbox,),
            )
        self._add_terms()

    def _add_terms(self) -> None:
        if not self.terms:
            return
        c = self.conn
        c.execute("CREATE TEMP TABLE IF NOT EXISTS new_term (term TEXT PRIMARY KEY) WITHOUT ROWID")
        c.execute("DELETE FROM new_term")
        c.executemany("INSERT OR IGNORE INTO new_term VALUES (?)", ((t,) for t in self.terms))
        fresh = [
            r[0]
            for r in c.execute(
                "SELECT term FROM new_term WHERE term NOT IN (SELECT term FROM name_term)"
            )
        ]
        c.executemany("INSERT INTO name_term VALUES (?)", ((t,) for t in fresh))
        c.executemany(
            "INSERT OR IGNORE INTO name_del VALUES (?, ?)",
            ((d, t) for t in fresh if len(t) >= 4 for d in deletes(t)),
        )
        c.execute("DELETE FROM new_term")
