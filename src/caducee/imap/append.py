"""APPEND and MULTIAPPEND storing (RFC 9051 §6.3.12, RFC 3502): all messages or none."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from caducee.core.errors import NotFound, QuotaExceeded
from caducee.core.model import BlobRef, Folder, StoredMessage
from caducee.imap.parser import AppendArgs
from caducee.storage.interfaces import FlagMode

if TYPE_CHECKING:
    from caducee.imap.session import Session

__all__ = ["append_all"]


def _reply(status: str, code: str, text: str) -> Exception:
    from caducee.imap.session import Reply

    return Reply(status, code, text)


async def append_all(
    s: Session, args: AppendArgs, rights: str, folder: Folder
) -> list[StoredMessage]:
    """Stores every message of an APPEND, or none (RFC 3502 §6.3.11 MULTIAPPEND): on a failure
    the messages already stored are expunged again and the unused spooled literals dropped.
    Other sessions may briefly see them come and go; the end state has none of them."""
    storage = s.ctx.storage
    unused = [m.literal.spool for m in args.messages if isinstance(m.literal.spool, BlobRef)]
    appended: list[StoredMessage] = []
    try:
        for m in args.messages:
            if isinstance(m.literal.spool, BlobRef):
                ref = m.literal.spool
            else:
                data = m.literal.data or b""
                if len(data) > s.ctx.settings.max_literal:
                    raise _reply("NO", "TOOBIG", "Message too large")
                # committed with the message row that follows (same batch or an earlier one)
                ref = await storage.blobs.put(data, durable=False)
                unused.append(ref)
            flags = [f for f in m.flags if f.lower() != "\\recent"]
            if "t" not in rights:
                flags = [f for f in flags if f != "\\Deleted"]
            if "s" not in rights:
                flags = [f for f in flags if f != "\\Seen"]
            date = m.date or datetime.now(UTC)
            try:
                stored = await storage.messages.append(
                    folder.folder_id, ref, flags=flags, internal_date=date
                )
            except QuotaExceeded:
                raise _reply("NO", "OVERQUOTA", "Quota exceeded") from None
            except NotFound:
                raise _reply("NO", "TRYCREATE", "Mailbox does not exist") from None
            unused.remove(ref)
            appended.append(stored)
    except Exception:
        for ref in unused:
            await storage.blobs.delete(ref)
        if appended:  # EXPUNGE removes only \\Deleted messages
            uids = [m.uid for m in appended]
            await storage.messages.store_flags(folder.folder_id, uids, ["\\Deleted"], FlagMode.ADD)
            await storage.messages.expunge(folder.folder_id, uids)
        raise
    return appended
