"""The agent's small local state (SQLite): what was integrated, so nothing is done twice.

Tables:
- ``messages``: one row per received message (key: Message-ID, else SHA-256 of the bytes) with
  its stage: ``integrated`` (outcome known) -> ``answered`` (MDN sent or not needed) ->
  ``filed`` (moved to its IMAP folder);
- ``documents``: one row per CDA document id with setId, version, patient and status
  (``delivering`` before the hand-off, ``delivered`` after every adapter acknowledged,
  ``deleted``), so a replay or a restart never hands a document over twice;
- ``deliveries``: per-adapter acknowledgement of each document.

Every change is one committed transaction (WAL journal, ``synchronous=NORMAL``: a committed
change survives a crash of the process; after a power loss the last changes may be replayed,
which the idempotent adapters absorb).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AgentState", "DocumentRow", "MessageRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
  key TEXT PRIMARY KEY, stage TEXT NOT NULL, error INTEGER, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
  doc_id TEXT PRIMARY KEY, set_id TEXT, version INTEGER, patient_id TEXT, author_org TEXT,
  status TEXT NOT NULL, action TEXT NOT NULL, message_key TEXT, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_set ON documents(set_id, version);
CREATE TABLE IF NOT EXISTS deliveries (
  doc_id TEXT NOT NULL, action TEXT NOT NULL, adapter TEXT NOT NULL, updated REAL NOT NULL,
  PRIMARY KEY (doc_id, action, adapter)
);
"""


@dataclass(frozen=True)
class MessageRow:
    key: str
    stage: str
    error: int | None


@dataclass(frozen=True)
class DocumentRow:
    doc_id: str
    set_id: str | None
    version: int | None
    patient_id: str | None
    author_org: str | None
    status: str
    action: str


class AgentState:
    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # messages
    def message(self, key: str) -> MessageRow | None:
        with self._lock:
            row = self._db.execute(
                "SELECT key, stage, error FROM messages WHERE key = ?", (key,)
            ).fetchone()
        return MessageRow(row[0], row[1], row[2]) if row else None

    def set_message(self, key: str, stage: str, error: int | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO messages(key, stage, error, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET stage = excluded.stage, error = excluded.error, "
                "updated = excluded.updated",
                (key, stage, error, time.time()),
            )

    # documents
    def document(self, doc_id: str) -> DocumentRow | None:
        with self._lock:
            row = self._db.execute(
                "SELECT doc_id, set_id, version, patient_id, author_org, status, action "
                "FROM documents WHERE doc_id = ?",
                (doc_id,),
            ).fetchone()
        return DocumentRow(*row) if row else None

    def latest_of_set(self, set_id: str) -> DocumentRow | None:
        with self._lock:
            row = self._db.execute(
                "SELECT doc_id, set_id, version, patient_id, author_org, status, action "
                "FROM documents WHERE set_id = ? AND status IN ('delivered', 'deleted') "
                "ORDER BY version DESC LIMIT 1",
                (set_id,),
            ).fetchone()
        return DocumentRow(*row) if row else None

    def previous_version(self, set_id: str, version: int) -> DocumentRow | None:
        """The delivered document of ``set_id`` just below ``version`` (the one it replaced)."""
        with self._lock:
            row = self._db.execute(
                "SELECT doc_id, set_id, version, patient_id, author_org, status, action "
                "FROM documents WHERE set_id = ? AND version < ? AND status = 'delivered' "
                "ORDER BY version DESC LIMIT 1",
                (set_id, version),
            ).fetchone()
        return DocumentRow(*row) if row else None

    def put_document(self, row: DocumentRow, message_key: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO documents(doc_id, set_id, version, patient_id, author_org, status, "
                "action, message_key, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(doc_id) DO UPDATE SET status = excluded.status, "
                "action = excluded.action, patient_id = excluded.patient_id, "
                "updated = excluded.updated",
                (
                    row.doc_id,
                    row.set_id,
                    row.version,
                    row.patient_id,
                    row.author_org,
                    row.status,
                    row.action,
                    message_key,
                    time.time(),
                ),
            )

    def delivered_to(self, doc_id: str, action: str, adapter: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM deliveries WHERE doc_id = ? AND action = ? AND adapter = ?",
                (doc_id, action, adapter),
            ).fetchone()
        return row is not None

    def mark_delivered(self, doc_id: str, action: str, adapter: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO deliveries(doc_id, action, adapter, updated) "
                "VALUES (?, ?, ?, ?)",
                (doc_id, action, adapter, time.time()),
            )
