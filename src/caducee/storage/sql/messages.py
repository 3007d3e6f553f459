"""Folders and messages of BALs, with what IMAP needs (``MessageStore``).

RFC 9051 §2.3.1 (UIDs, UIDVALIDITY), RFC 7162 (MODSEQ, CONDSTORE/QRESYNC), RFC 4315 (UIDPLUS),
RFC 6851 (MOVE). Locks are taken in one order everywhere (mailbox rows by id, then folder rows
by id, then message rows) so concurrent writers on PostgreSQL never deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from caducee.core.errors import InvalidInput, NotFound, QuotaExceeded
from caducee.core.model import BlobRef, StoredMessage
from caducee.storage.sql.base import (
    Dialect,
    Op,
    Q,
    Row,
    chunks,
    from_us,
    now_us,
    placeholders,
    to_us,
)

__all__ = [
    "SYSTEM_FLAGS",
    "copy_op",
    "deliver_op",
    "gc_blobs",
    "lock_mailboxes",
    "norm_flags",
    "norm_folder",
    "record_removed",
]

SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
_ATOM_SPECIALS = frozenset('(){%*"]\\')
_MSG_COLS = "folder_id, uid, modseq, flags, internal_date, size, blob_id, key_id, internal_tz"


def norm_folder(name: str) -> str:
    """INBOX is case-insensitive (RFC 9051 §5.1), also as a hierarchy prefix."""
    if name.upper() == "INBOX":
        return "INBOX"
    if name[:6].upper() == "INBOX/":
        return "INBOX/" + name[6:]
    if not name or len(name) > 1000 or any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise InvalidInput("invalid folder name")
    if name.startswith("/") or name.endswith("/") or "//" in name:
        raise InvalidInput("invalid folder name")
    return name


def norm_flags(flags: Iterable[str]) -> frozenset[str]:
    """System flags canonically capitalised; ``\\Recent`` is per session, never stored."""
    out: set[str] = set()
    for f in flags:
        body = f[1:] if f.startswith("\\") else f
        if not body or any(c in _ATOM_SPECIALS or ord(c) < 0x21 or ord(c) > 0x7E for c in body):
            raise InvalidInput(f"invalid flag {f!r}")
        low = f.lower()
        if low == "\\recent":
            continue
        if f.startswith("\\"):
            if low not in SYSTEM_FLAGS:
                raise InvalidInput(f"invalid system flag {f!r}")
            out.add(SYSTEM_FLAGS[low])
        else:
            out.add(f)
    return frozenset(out)


def _flag_cols(flags: frozenset[str]) -> tuple[str, int, int]:
    return " ".join(sorted(flags)), int("\\Seen" in flags), int("\\Deleted" in flags)


_FLAG_SETS: dict[str, frozenset[str]] = {}


def _flag_set(text: str) -> frozenset[str]:
    """Parsed flag columns, shared: a folder has few distinct flag combinations."""
    got = _FLAG_SETS.get(text)
    if got is None:
        got = frozenset(text.split())
        if len(_FLAG_SETS) < 4096:
            _FLAG_SETS[text] = got
    return got


def _msg(row: Row) -> StoredMessage:
    folder_id, uid, modseq, flags, idate, size, blob_id, key_id, tz = row
    return StoredMessage(
        folder_id, uid, modseq, _flag_set(flags), _in_zone(from_us(idate), tz), size,
        BlobRef(blob_id, key_id, size),
    )  # fmt: skip


def gc_blobs(blob_ids: Sequence[str]) -> Op[list[str]]:
    """Deletes the blob rows no message or queue item references any more; their ids."""
    freed: list[str] = []
    for part in chunks(sorted(set(blob_ids))):
        rows = yield Q(
            f"DELETE FROM blobs WHERE blob_id IN ({placeholders(len(part))}) AND NOT EXISTS"
            " (SELECT 1 FROM messages m WHERE m.blob_id = blobs.blob_id) AND NOT EXISTS"
            " (SELECT 1 FROM queue_items q WHERE q.blob_id = blobs.blob_id) RETURNING blob_id",
            part,
        )
        freed.extend(r[0] for r in rows)
    return freed


def lock_mailboxes(mailbox_ids: Iterable[int]) -> Op[None]:
    for mid in sorted(set(mailbox_ids)):
        rows = yield Q(
            "UPDATE mailboxes SET used_bytes = used_bytes WHERE mailbox_id = ? RETURNING 1",
            (mid,),
        )
        if not rows:
            raise NotFound(f"no mailbox id {mid}")


def _charge(mailbox_id: int, size: int) -> Op[None]:
    rows = yield Q(
        "UPDATE mailboxes SET used_bytes = used_bytes + ? WHERE mailbox_id = ?"
        " AND (quota_bytes = 0 OR used_bytes + ? <= quota_bytes) RETURNING used_bytes",
        (size, mailbox_id, size),
    )
    if not rows:
        raise QuotaExceeded("mailbox quota exceeded")


def _folder_row(folder_id: int) -> Op[tuple[int, int, int]]:
    """Locks the folder; (mailbox_id, uidnext, highest_modseq)."""
    rows = yield Q(
        "UPDATE folders SET uidnext = uidnext WHERE folder_id = ?"
        " RETURNING mailbox_id, uidnext, highest_modseq",
        (folder_id,),
    )
    if not rows:
        raise NotFound(f"no folder id {folder_id}")
    return int(rows[0][0]), int(rows[0][1]), int(rows[0][2])


def _in_zone(when: datetime, tz_minutes: int) -> datetime:
    """The stored instant shown in the zone APPEND gave (RFC 9051 §2.3.3)."""
    if not tz_minutes:
        return when
    return when.astimezone(timezone(timedelta(minutes=tz_minutes)))


def zone_minutes(when: datetime | None) -> int:
    off = when.utcoffset() if when is not None and when.tzinfo is not None else None
    return 0 if off is None else int(off.total_seconds()) // 60


def _insert(
    folder_id: int,
    mailbox_id: int,
    blob: BlobRef,
    size: int,
    flags: frozenset[str],
    idate: int,
    tz: int = 0,
) -> Op[StoredMessage]:
    rows = yield Q(
        "UPDATE folders SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1"
        " WHERE folder_id = ? RETURNING uidnext - 1, highest_modseq",
        (folder_id,),
    )
    uid, modseq = int(rows[0][0]), int(rows[0][1])
    text, seen, deleted = _flag_cols(flags)
    yield Q(
        "INSERT INTO messages (folder_id, uid, mailbox_id, modseq, flags, seen, deleted,"
        " internal_date, size, blob_id, key_id, internal_tz)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (folder_id, uid, mailbox_id, modseq, text, seen, deleted, idate, size,
         blob.blob_id, blob.key_id, tz),
    )  # fmt: skip
    return StoredMessage(folder_id, uid, modseq, flags, _in_zone(from_us(idate), tz), size, blob)


_PG_DELIVER = (
    "WITH d AS ({dedup}),"
    " c AS (UPDATE mailboxes SET used_bytes = used_bytes + ?::bigint"
    " WHERE mailbox_id = (SELECT mailbox_id FROM d)"
    " AND (quota_bytes = 0 OR used_bytes + ?::bigint <= quota_bytes) RETURNING mailbox_id),"
    " f AS (UPDATE folders SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1"
    " WHERE mailbox_id = (SELECT mailbox_id FROM c) AND name = ?::text"
    " RETURNING folder_id, uidnext - 1 AS uid, highest_modseq AS modseq),"
    " m AS (INSERT INTO messages (folder_id, uid, mailbox_id, modseq, flags, seen, deleted,"
    " internal_date, size, blob_id, key_id, dedup_key) SELECT folder_id, uid, ?::bigint, modseq,"
    " ?::text, ?::bigint, ?::bigint, ?::bigint, ?::bigint, ?::text, ?::text, ?::text FROM f"
    " RETURNING folder_id, uid, modseq)"
    " SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM c), m.folder_id, m.uid, m.modseq"
    " FROM (SELECT 1) AS one LEFT JOIN m ON true"
)
_PG_WITH_DEDUP = _PG_DELIVER.format(
    dedup="INSERT INTO dedup (mailbox_id, dedup_key, created) VALUES (?::bigint, ?::text,"
    " ?::bigint) ON CONFLICT DO NOTHING RETURNING mailbox_id"
)
_PG_NO_DEDUP = _PG_DELIVER.format(dedup="SELECT ?::bigint AS mailbox_id")


def deliver_op(
    blob: BlobRef,
    mailbox_ids: Sequence[int],
    folder: str,
    flags: frozenset[str],
    idate: int,
    dedup_key: str | None,
    dialect: Dialect = "sqlite",
    over_quota: list[int] | None = None,
) -> Op[list[tuple[int, StoredMessage]]]:
    """The hot path of SMTP, so few statements: the quota charge locks each mailbox row, in id
    order (no deadlock between deliveries); the message's foreign key proves the blob exists.
    On PostgreSQL one statement per BAL does it all (data-modifying CTEs).

    ``over_quota`` given: a full BAL is skipped (its id appended there, its dedup row undone)
    instead of raising ``QuotaExceeded``."""
    size = blob.size
    text, seen, deleted = _flag_cols(flags)
    out: list[tuple[int, StoredMessage]] = []
    for mid in sorted(set(mailbox_ids)):
        if dialect == "postgres":
            row_args = (size, size, folder, mid, text, seen, deleted, idate, size,
                        blob.blob_id, blob.key_id, dedup_key)  # fmt: skip
            if dedup_key is None:
                rows = yield Q(_PG_NO_DEDUP, (mid, *row_args))
            else:
                rows = yield Q(_PG_WITH_DEDUP, (mid, dedup_key, now_us(), *row_args))
            n_dedup, n_charged, folder_id, uid, modseq = rows[0]
            if not n_dedup:
                continue
            if not n_charged:
                yield from lock_mailboxes([mid])  # NotFound if the mailbox does not exist
                if over_quota is None:
                    raise QuotaExceeded("mailbox quota exceeded")
                yield from _undo_dedup(mid, dedup_key)
                over_quota.append(mid)
                continue
            if folder_id is None:
                raise NotFound(f"no folder {folder!r} in mailbox id {mid}")
            msg = StoredMessage(int(folder_id), int(uid), int(modseq), flags, from_us(idate),
                                size, blob)  # fmt: skip
            out.append((mid, msg))
            continue
        if dedup_key is not None:
            rows = yield Q(
                "INSERT INTO dedup (mailbox_id, dedup_key, created) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING RETURNING mailbox_id",
                (mid, dedup_key, now_us()),
            )
            if not rows:
                continue
        rows = yield Q(
            "UPDATE mailboxes SET used_bytes = used_bytes + ? WHERE mailbox_id = ?"
            " AND (quota_bytes = 0 OR used_bytes + ? <= quota_bytes) RETURNING used_bytes",
            (size, mid, size),
        )
        if not rows:
            yield from lock_mailboxes([mid])  # NotFound if the mailbox does not exist
            if over_quota is None:
                raise QuotaExceeded("mailbox quota exceeded")
            yield from _undo_dedup(mid, dedup_key)
            over_quota.append(mid)
            continue
        rows = yield Q(
            "UPDATE folders SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1"
            " WHERE mailbox_id = ? AND name = ? RETURNING folder_id, uidnext - 1, highest_modseq",
            (mid, folder),
        )
        if not rows:
            raise NotFound(f"no folder {folder!r} in mailbox id {mid}")
        folder_id, uid, modseq = int(rows[0][0]), int(rows[0][1]), int(rows[0][2])
        yield Q(
            "INSERT INTO messages (folder_id, uid, mailbox_id, modseq, flags, seen, deleted,"
            " internal_date, size, blob_id, key_id, dedup_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (folder_id, uid, mid, modseq, text, seen, deleted, idate, size,
             blob.blob_id, blob.key_id, dedup_key),
        )  # fmt: skip
        msg = StoredMessage(folder_id, uid, modseq, flags, from_us(idate), size, blob)
        out.append((mid, msg))
    return out


def _undo_dedup(mailbox_id: int, dedup_key: str | None) -> Op[None]:
    if dedup_key is not None:
        yield Q("DELETE FROM dedup WHERE mailbox_id = ? AND dedup_key = ?", (mailbox_id, dedup_key))


def append_op(
    folder_id: int, blob: BlobRef, flags: frozenset[str], idate: int, tz: int = 0
) -> Op[tuple[int, StoredMessage]]:
    size = blob.size
    rows = yield Q("SELECT mailbox_id FROM folders WHERE folder_id = ?", (folder_id,))
    if not rows:
        raise NotFound(f"no folder id {folder_id}")
    mid = int(rows[0][0])
    yield from lock_mailboxes([mid])
    yield from _charge(mid, size)
    msg = yield from _insert(folder_id, mid, blob, size, flags, idate, tz)
    return mid, msg


def list_op(folder_id: int, uid_min: int, uid_max: int | None) -> Op[list[StoredMessage]]:
    rows = yield Q(
        f"SELECT {_MSG_COLS} FROM messages WHERE folder_id = ? AND uid >= ? AND uid <= ?"
        " ORDER BY uid",
        (folder_id, uid_min, uid_max if uid_max is not None else 2**62),
        only=True,
    )
    return [_msg(r) for r in rows]


def get_messages_op(folder_id: int, uids: Sequence[int]) -> Op[list[StoredMessage]]:
    out: list[StoredMessage] = []
    for part in chunks(sorted(set(uids))):
        rows = yield Q(
            f"SELECT {_MSG_COLS} FROM messages WHERE folder_id = ?"
            f" AND uid IN ({placeholders(len(part))}) ORDER BY uid",
            (folder_id, *part),
        )
        out.extend(_msg(r) for r in rows)
    return out


def store_flags_op(
    folder_id: int,
    uids: Sequence[int],
    flags: frozenset[str],
    mode: str,
    unchanged_since: int | None,
) -> Op[tuple[int, list[StoredMessage], list[int]]]:
    mailbox_id, _, highest = yield from _folder_row(folder_id)
    current = yield from get_messages_op(folder_id, uids)
    changed: list[StoredMessage] = []
    failed: list[int] = []
    new_modseq = highest + 1
    for m in current:
        if unchanged_since is not None and m.modseq > unchanged_since:
            failed.append(m.uid)
            continue
        if mode == "add":
            new = m.flags | flags
        elif mode == "remove":
            new = m.flags - flags
        else:
            new = flags
        if new == m.flags:
            continue
        text, seen, deleted = _flag_cols(new)
        yield Q(
            "UPDATE messages SET flags = ?, seen = ?, deleted = ?, modseq = ?"
            " WHERE folder_id = ? AND uid = ?",
            (text, seen, deleted, new_modseq, folder_id, m.uid),
        )
        changed.append(
            StoredMessage(m.folder_id, m.uid, new_modseq, new, m.internal_date, m.size, m.blob)
        )
    if changed:
        yield Q(
            "UPDATE folders SET highest_modseq = ? WHERE folder_id = ?", (new_modseq, folder_id)
        )
    return mailbox_id, changed, failed


def record_removed(folder_id: int, rows: list[Row], modseq: int) -> Op[None]:
    yield Q(
        "INSERT INTO expunged (folder_id, uid, modseq) VALUES (?, ?, ?)"
        " ON CONFLICT (folder_id, uid) DO UPDATE SET modseq = excluded.modseq",
        [(folder_id, int(r[0]), modseq) for r in rows],
        many=True,
    )
    yield Q("UPDATE folders SET highest_modseq = ? WHERE folder_id = ?", (modseq, folder_id))


def expunge_op(folder_id: int, uids: Sequence[int] | None) -> Op[tuple[int, list[int], list[str]]]:
    rows = yield Q("SELECT mailbox_id FROM folders WHERE folder_id = ?", (folder_id,))
    if not rows:
        raise NotFound(f"no folder id {folder_id}")
    mailbox_id = int(rows[0][0])
    yield from lock_mailboxes([mailbox_id])
    _, _, highest = yield from _folder_row(folder_id)
    deleted: list[Row] = []
    if uids is None:
        deleted = yield Q(
            "DELETE FROM messages WHERE folder_id = ? AND deleted = 1 RETURNING uid, size, blob_id",
            (folder_id,),
        )
    else:
        for part in chunks(sorted(set(uids))):
            got = yield Q(
                f"DELETE FROM messages WHERE folder_id = ? AND deleted = 1"
                f" AND uid IN ({placeholders(len(part))}) RETURNING uid, size, blob_id",
                (folder_id, *part),
            )
            deleted.extend(got)
    if not deleted:
        return mailbox_id, [], []
    yield from record_removed(folder_id, deleted, highest + 1)
    yield Q(
        "UPDATE mailboxes SET used_bytes = used_bytes - ? WHERE mailbox_id = ?",
        (sum(int(r[1]) for r in deleted), mailbox_id),
    )
    freed = yield from gc_blobs([r[2] for r in deleted])
    return mailbox_id, sorted(int(r[0]) for r in deleted), freed


def copy_op(
    folder_id: int, uids: Sequence[int], dest_id: int, move: bool
) -> Op[tuple[int, int, list[tuple[int, int]]]]:
    # MOVE into the same folder (RFC 6851 allows it): new UIDs, then the old ones go
    rows = yield Q(
        "SELECT folder_id, mailbox_id FROM folders WHERE folder_id IN (?, ?)", (folder_id, dest_id)
    )
    owners = {int(r[0]): int(r[1]) for r in rows}
    if folder_id not in owners or dest_id not in owners:
        raise NotFound("no such folder")
    src_mb, dst_mb = owners[folder_id], owners[dest_id]
    yield from lock_mailboxes({src_mb, dst_mb})
    for fid in sorted({folder_id, dest_id}):
        yield from _folder_row(fid)
    msgs = yield from get_messages_op(folder_id, uids)
    if not msgs:
        return src_mb, dst_mb, []
    total = sum(m.size for m in msgs)
    if not (move and src_mb == dst_mb):
        yield from _charge(dst_mb, total)
    rows = yield Q(
        "UPDATE folders SET uidnext = uidnext + ?, highest_modseq = highest_modseq + 1"
        " WHERE folder_id = ? RETURNING uidnext, highest_modseq",
        (len(msgs), dest_id),
    )
    first_uid, modseq = int(rows[0][0]) - len(msgs), int(rows[0][1])
    pairs: list[tuple[int, int]] = []
    params: list[tuple[Any, ...]] = []
    for i, m in enumerate(msgs):
        text, seen, deleted = _flag_cols(m.flags)
        pairs.append((m.uid, first_uid + i))
        params.append(
            (dest_id, first_uid + i, dst_mb, modseq, text, seen, deleted,
             to_us(m.internal_date), m.size, m.blob.blob_id, m.blob.key_id,
             zone_minutes(m.internal_date))
        )  # fmt: skip
    yield Q(
        "INSERT INTO messages (folder_id, uid, mailbox_id, modseq, flags, seen, deleted,"
        " internal_date, size, blob_id, key_id, internal_tz)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params,
        many=True,
    )
    if move:
        removed: list[Row] = []
        for part in chunks([m.uid for m in msgs]):
            got = yield Q(
                f"DELETE FROM messages WHERE folder_id = ? AND uid IN ({placeholders(len(part))})"
                " RETURNING uid, size",
                (folder_id, *part),
            )
            removed.extend(got)
        _, _, highest = yield from _folder_row(folder_id)
        yield from record_removed(folder_id, removed, highest + 1)
        if src_mb != dst_mb:
            yield Q(
                "UPDATE mailboxes SET used_bytes = used_bytes - ? WHERE mailbox_id = ?",
                (sum(int(r[1]) for r in removed), src_mb),
            )
    return src_mb, dst_mb, pairs


def changed_since_op(folder_id: int, modseq: int) -> Op[list[StoredMessage]]:
    rows = yield Q(
        f"SELECT {_MSG_COLS} FROM messages WHERE folder_id = ? AND modseq > ? ORDER BY uid",
        (folder_id, modseq),
        only=True,
    )
    return [_msg(r) for r in rows]


def vanished_since_op(folder_id: int, modseq: int) -> Op[list[int]]:
    rows = yield Q(
        "SELECT uid FROM expunged WHERE folder_id = ? AND modseq > ? ORDER BY uid",
        (folder_id, modseq),
        only=True,
    )
    return [int(r[0]) for r in rows]


def find_dedup_op(mailbox_id: int, dedup_key: str) -> Op[StoredMessage | None]:
    rows = yield Q(
        f"SELECT {_MSG_COLS} FROM messages WHERE mailbox_id = ? AND dedup_key = ?"
        " ORDER BY folder_id, uid LIMIT 1",
        (mailbox_id, dedup_key),
        only=True,
    )
    return _msg(rows[0]) if rows else None


def purge_dedup_op(before: int) -> Op[int]:
    rows = yield Q("DELETE FROM dedup WHERE created < ? RETURNING mailbox_id", (before,), only=True)
    return len(rows)


def idate_us(when: datetime | None) -> int:
    return now_us() if when is None else to_us(when)
