"""Folders and messages of BALs, with what IMAP needs (``MessageStore``).

RFC 9051 §2.3.1 (UIDs, UIDVALIDITY), RFC 7162 (MODSEQ, CONDSTORE/QRESYNC), RFC 4315 (UIDPLUS),
RFC 6851 (MOVE). Locks are taken in one order everywhere (mailbox rows by id, then folder rows
by id, then message rows) so concurrent writers on PostgreSQL never deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from caducee.core.errors import Conflict, InvalidInput, NotFound, QuotaExceeded
from caducee.core.model import BlobRef, Folder, StoredMessage
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
    "create_folder_op",
    "deliver_op",
    "gc_blobs",
    "norm_flags",
    "norm_folder",
]

SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
_ATOM_SPECIALS = frozenset('(){%*"]\\')
_MSG_COLS = "folder_id, uid, modseq, flags, internal_date, size, blob_id, key_id"
_FOLDER_COLS = (
    "f.folder_id, f.mailbox_id, f.name, f.uidvalidity, f.uidnext, f.highest_modseq,"
    " f.special_use, f.subscribed,"
    " (SELECT COUNT(*) FROM messages m WHERE m.folder_id = f.folder_id),"
    " (SELECT COUNT(*) FROM messages m WHERE m.folder_id = f.folder_id AND m.seen = 0),"
    " (SELECT MIN(uid) FROM messages m WHERE m.folder_id = f.folder_id AND m.seen = 0)"
)


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


def _msg(row: Row) -> StoredMessage:
    flags = frozenset(row[3].split()) if row[3] else frozenset()
    blob = BlobRef(row[6], row[7], int(row[5]))
    return StoredMessage(
        int(row[0]), int(row[1]), int(row[2]), flags, from_us(int(row[4])), int(row[5]), blob
    )


def _folder(row: Row) -> Folder:
    return Folder(
        folder_id=int(row[0]),
        mailbox_id=int(row[1]),
        name=row[2],
        uidvalidity=int(row[3]),
        uidnext=int(row[4]),
        highest_modseq=int(row[5]),
        special_use=row[6],
        subscribed=bool(row[7]),
        message_count=int(row[8]),
        unseen_count=int(row[9]),
        first_unseen=None if row[10] is None else int(row[10]),
    )


def create_folder_op(mailbox_id: int, name: str, special_use: str | None) -> Op[int]:
    """Inserts a folder; its UIDVALIDITY is its never-reused id (stable across restarts,
    different for a re-created name: RFC 9051 §2.3.1.1)."""
    rows = yield Q("SELECT 1 FROM folders WHERE mailbox_id = ? AND name = ?", (mailbox_id, name))
    if rows:
        raise Conflict(f"folder {name!r} already exists")
    rows = yield Q(
        "INSERT INTO folders (mailbox_id, name, uidvalidity, special_use)"
        " VALUES (?, ?, 0, ?) RETURNING folder_id",
        (mailbox_id, name, special_use),
    )
    folder_id = int(rows[0][0])
    yield Q("UPDATE folders SET uidvalidity = folder_id WHERE folder_id = ?", (folder_id,))
    return folder_id


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


def _lock_mailboxes(mailbox_ids: Iterable[int]) -> Op[None]:
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


def _insert(
    folder_id: int, mailbox_id: int, blob: BlobRef, size: int, flags: frozenset[str], idate: int
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
        " internal_date, size, blob_id, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (folder_id, uid, mailbox_id, modseq, text, seen, deleted, idate, size,
         blob.blob_id, blob.key_id),
    )  # fmt: skip
    return StoredMessage(folder_id, uid, modseq, flags, from_us(idate), size, blob)


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
) -> Op[list[tuple[int, StoredMessage]]]:
    """The hot path of SMTP, so few statements: the quota charge locks each mailbox row, in id
    order (no deadlock between deliveries); the message's foreign key proves the blob exists.
    On PostgreSQL one statement per BAL does it all (data-modifying CTEs)."""
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
                yield from _lock_mailboxes([mid])  # NotFound if the mailbox does not exist
                raise QuotaExceeded("mailbox quota exceeded")
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
            yield from _lock_mailboxes([mid])  # NotFound if the mailbox does not exist
            raise QuotaExceeded("mailbox quota exceeded")
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


def append_op(
    folder_id: int, blob: BlobRef, flags: frozenset[str], idate: int
) -> Op[tuple[int, StoredMessage]]:
    size = blob.size
    rows = yield Q("SELECT mailbox_id FROM folders WHERE folder_id = ?", (folder_id,))
    if not rows:
        raise NotFound(f"no folder id {folder_id}")
    mid = int(rows[0][0])
    yield from _lock_mailboxes([mid])
    yield from _charge(mid, size)
    msg = yield from _insert(folder_id, mid, blob, size, flags, idate)
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


def _remove(folder_id: int, rows: list[Row], modseq: int) -> Op[None]:
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
    yield from _lock_mailboxes([mailbox_id])
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
    yield from _remove(folder_id, deleted, highest + 1)
    yield Q(
        "UPDATE mailboxes SET used_bytes = used_bytes - ? WHERE mailbox_id = ?",
        (sum(int(r[1]) for r in deleted), mailbox_id),
    )
    freed = yield from gc_blobs([r[2] for r in deleted])
    return mailbox_id, sorted(int(r[0]) for r in deleted), freed


def copy_op(
    folder_id: int, uids: Sequence[int], dest_id: int, move: bool
) -> Op[tuple[int, int, list[tuple[int, int]]]]:
    if folder_id == dest_id and move:
        raise InvalidInput("cannot move messages to the same folder")
    rows = yield Q(
        "SELECT folder_id, mailbox_id FROM folders WHERE folder_id IN (?, ?)", (folder_id, dest_id)
    )
    owners = {int(r[0]): int(r[1]) for r in rows}
    if folder_id not in owners or dest_id not in owners:
        raise NotFound("no such folder")
    src_mb, dst_mb = owners[folder_id], owners[dest_id]
    yield from _lock_mailboxes({src_mb, dst_mb})
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
             to_us(m.internal_date), m.size, m.blob.blob_id, m.blob.key_id)
        )  # fmt: skip
    yield Q(
        "INSERT INTO messages (folder_id, uid, mailbox_id, modseq, flags, seen, deleted,"
        " internal_date, size, blob_id, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        yield from _remove(folder_id, removed, highest + 1)
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


def list_folders_op(mailbox_id: int) -> Op[list[Folder]]:
    rows = yield Q(
        f"SELECT {_FOLDER_COLS} FROM folders f WHERE f.mailbox_id = ?"
        " ORDER BY f.name <> 'INBOX', f.name",
        (mailbox_id,),
        only=True,
    )
    return [_folder(r) for r in rows]


def get_folder_op(where: str, args: tuple[Any, ...]) -> Op[Folder | None]:
    rows = yield Q(f"SELECT {_FOLDER_COLS} FROM folders f WHERE {where}", args, only=True)
    return _folder(rows[0]) if rows else None


def rename_folder_op(mailbox_id: int, old: str, new: str) -> Op[None]:
    yield from _lock_mailboxes([mailbox_id])
    if new == "INBOX":
        raise Conflict("cannot rename to INBOX")
    rows = yield Q(
        "SELECT folder_id, name, uidnext, highest_modseq, special_use FROM folders"
        " WHERE mailbox_id = ? ORDER BY name",
        (mailbox_id,),
    )
    by_name = {r[1]: r for r in rows}
    if old not in by_name:
        raise NotFound(f"no folder {old!r}")
    if new in by_name:
        raise Conflict(f"folder {new!r} already exists")
    if old == "INBOX":
        # RFC 9051 §6.3.6: messages move to a new folder; INBOX stays, empty.
        inbox = by_name[old]
        new_id = yield from create_folder_op(mailbox_id, new, None)
        yield Q(
            "UPDATE folders SET uidnext = ?, highest_modseq = ? WHERE folder_id = ?",
            (int(inbox[2]), int(inbox[3]), new_id),
        )
        moved = yield Q(
            "UPDATE messages SET folder_id = ? WHERE folder_id = ? RETURNING uid",
            (new_id, int(inbox[0])),
        )
        if moved:
            yield from _remove(int(inbox[0]), moved, int(inbox[3]) + 1)
        return
    prefix = old + "/"
    renames = [(new + name[len(old) :], r) for name, r in by_name.items()
               if name == old or name.startswith(prefix)]  # fmt: skip
    for target, _ in renames:
        if target in by_name:
            raise Conflict(f"folder {target!r} already exists")
    for target, r in renames:
        yield Q("UPDATE folders SET name = ? WHERE folder_id = ?", (target, int(r[0])))


def delete_folder_op(mailbox_id: int, name: str) -> Op[list[str]]:
    if name == "INBOX":
        raise Conflict("INBOX cannot be deleted")
    yield from _lock_mailboxes([mailbox_id])
    rows = yield Q(
        "SELECT folder_id FROM folders WHERE mailbox_id = ? AND name = ?", (mailbox_id, name)
    )
    if not rows:
        raise NotFound(f"no folder {name!r}")
    fid = int(rows[0][0])
    gone = yield Q("DELETE FROM messages WHERE folder_id = ? RETURNING size, blob_id", (fid,))
    yield Q("DELETE FROM expunged WHERE folder_id = ?", (fid,))
    yield Q("DELETE FROM folders WHERE folder_id = ?", (fid,))
    yield Q(
        "UPDATE mailboxes SET used_bytes = used_bytes - ? WHERE mailbox_id = ?",
        (sum(int(r[0]) for r in gone), mailbox_id),
    )
    return (yield from gc_blobs([r[1] for r in gone]))


def subscribe_op(mailbox_id: int, name: str, subscribed: bool) -> Op[None]:
    rows = yield Q(
        "UPDATE folders SET subscribed = ? WHERE mailbox_id = ? AND name = ? RETURNING folder_id",
        (1 if subscribed else 0, mailbox_id, name),
        only=True,
    )
    if not rows:
        raise NotFound(f"no folder {name!r}")


def find_dedup_op(mailbox_id: int, dedup_key: str) -> Op[StoredMessage | None]:
    rows = yield Q(
        f"SELECT {_MSG_COLS} FROM messages WHERE mailbox_id = ? AND dedup_key = ?"
        " ORDER BY folder_id, uid LIMIT 1",
        (mailbox_id, dedup_key),
        only=True,
    )
    return _msg(rows[0]) if rows else None


def idate_us(when: datetime | None) -> int:
    return now_us() if when is None else to_us(when)
