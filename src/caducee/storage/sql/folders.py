"""Folders (IMAP mailboxes) of BALs: create, list, rename with children, delete, subscribe.

RFC 9051 §6.3 (CREATE, DELETE, RENAME, SUBSCRIBE, LIST, STATUS). Counts come from the message
rows (indexed), so they are never out of step with them.
"""

from __future__ import annotations

from typing import Any

from caducee.core.errors import Conflict, NotFound
from caducee.core.model import Folder
from caducee.storage.sql.base import Op, Q, Row
from caducee.storage.sql.messages import gc_blobs, lock_mailboxes, record_removed

__all__ = [
    "claim_recent_op",
    "create_folder_op",
    "delete_folder_op",
    "get_folder_op",
    "list_folders_op",
    "rename_folder_op",
    "subscribe_op",
]

_FOLDER_COLS = (
    "f.folder_id, f.mailbox_id, f.name, f.uidvalidity, f.uidnext, f.highest_modseq,"
    " f.special_use, f.subscribed, f.recent_uid,"
    " (SELECT COUNT(*) FROM messages m WHERE m.folder_id = f.folder_id),"
    " (SELECT COUNT(*) FROM messages m WHERE m.folder_id = f.folder_id AND m.seen = 0),"
    " (SELECT MIN(uid) FROM messages m WHERE m.folder_id = f.folder_id AND m.seen = 0)"
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
    # a name still subscribed from a deleted folder: the new folder takes the subscription
    yield Q(
        "DELETE FROM orphan_subscriptions WHERE mailbox_id = ? AND name = ?", (mailbox_id, name)
    )
    return folder_id


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
        recent_uid=int(row[8]),
        message_count=int(row[9]),
        unseen_count=int(row[10]),
        first_unseen=None if row[11] is None else int(row[11]),
    )


def claim_recent_op(folder_id: int, upto: int | None) -> Op[int]:
    """Raises the folder's \\Recent mark to ``upto`` (default UIDNEXT - 1), never lowers it;
    the previous mark. The first UPDATE locks the row (PostgreSQL: a concurrent claim waits,
    then reads the mark this one set), so two sessions never both get the same messages."""
    rows = yield Q(
        "UPDATE folders SET recent_uid = recent_uid WHERE folder_id = ?"
        " RETURNING recent_uid, uidnext",
        (folder_id,),
    )
    if not rows:
        raise NotFound(f"no folder {folder_id}")
    old, uidnext = int(rows[0][0]), int(rows[0][1])
    new = uidnext - 1 if upto is None else min(upto, uidnext - 1)
    if new > old:
        yield Q("UPDATE folders SET recent_uid = ? WHERE folder_id = ?", (new, folder_id))
    return old


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
    yield from lock_mailboxes([mailbox_id])
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
            yield from record_removed(int(inbox[0]), moved, int(inbox[3]) + 1)
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
    yield from lock_mailboxes([mailbox_id])
    rows = yield Q(
        "SELECT folder_id, subscribed FROM folders WHERE mailbox_id = ? AND name = ?",
        (mailbox_id, name),
    )
    if not rows:
        raise NotFound(f"no folder {name!r}")
    fid = int(rows[0][0])
    if int(rows[0][1]):  # RFC 3501 §6.3.6: the subscription outlives the folder
        yield Q(
            "INSERT INTO orphan_subscriptions (mailbox_id, name) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            (mailbox_id, name),
        )
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
    )
    if not rows and not subscribed:
        rows = yield Q(
            "DELETE FROM orphan_subscriptions WHERE mailbox_id = ? AND name = ? RETURNING name",
            (mailbox_id, name),
        )
    if not rows:
        raise NotFound(f"no folder {name!r}")


def orphan_subscriptions_op(mailbox_id: int) -> Op[list[str]]:
    rows = yield Q(
        "SELECT name FROM orphan_subscriptions WHERE mailbox_id = ? ORDER BY name",
        (mailbox_id,),
        only=True,
    )
    return [str(r[0]) for r in rows]
