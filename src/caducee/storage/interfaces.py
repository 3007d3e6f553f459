"""Typed storage interfaces, one per role. Engines: ``storage.sqlite`` and ``storage.postgres``.

Every method is a coroutine: engines do their blocking work off the event loop. Every engine
passes the same contract suite (``tests/contract``). Methods raise only ``StorageError``
subclasses (``NotFound``, ``Conflict``) or ``QuotaExceeded``.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from caducee.core.model import (
    Account,
    AuditEvent,
    BlobRef,
    Folder,
    Mailbox,
    MailboxType,
    QueueItem,
    QueueRecipient,
    RecipientState,
    StoredMessage,
)

__all__ = [
    "Acceptance",
    "AccountStore",
    "AuditStore",
    "BlobStore",
    "BlobWriter",
    "ChangeNotifier",
    "ChangeSubscription",
    "ChangeWatch",
    "Delivery",
    "Enqueue",
    "FlagMode",
    "MessageStore",
    "QueueStore",
    "Storage",
]

DEFAULT_FOLDERS: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
)


class BlobWriter(Protocol):
    """Streams one blob in, encrypting as it goes (never the whole plaintext in memory)."""

    async def write(self, chunk: bytes) -> None: ...

    async def commit(self, *, durable: bool = True) -> BlobRef:
        """Make the blob durable and return its reference.

        ``durable=False``: the blob becomes durable with the next durable write of this storage
        that references it (``deliver``, ``append``, ``enqueue``), saving one commit on the
        SMTP hot path; until then a crash may lose it, and a ``deliver``/``enqueue`` naming a
        lost blob fails with ``NotFound`` (never a message without its bytes)."""
        ...

    async def abort(self) -> None:
        """Discard everything written; idempotent."""
        ...


class BlobStore(Protocol):
    """Encrypted blobs (AES-256-GCM, key id stored beside each blob). Nothing in plaintext."""

    def writer(self) -> BlobWriter: ...

    async def put(self, data: bytes, *, durable: bool = True) -> BlobRef:
        """Writes a whole blob; ``durable`` as in ``BlobWriter.commit``."""
        ...

    async def get(self, ref: BlobRef) -> bytes: ...

    def stream(self, ref: BlobRef, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Decrypted bytes ``[start, end)`` in chunks, verifying authenticity as it reads."""
        ...

    async def delete(self, ref: BlobRef) -> None:
        """Deletes the blob unless a message or a queue item still references it."""
        ...

    async def gc_orphans(self, older_than: datetime) -> int:
        """Removes what uploads that never committed left behind (older than ``older_than``);
        how many pieces. Call it now and then (e.g. hourly, with an hour's margin)."""
        ...


class AccountStore(Protocol):
    """Accounts (logins), mailboxes (BALs) and delegations."""

    async def create_account(
        self, login: str, password: str | None, *, display_name: str = "", idnps: str | None = None
    ) -> Account:
        """``password`` None: no password login (token or certificate only)."""
        ...

    async def get_account(self, login: str) -> Account | None: ...

    async def get_account_by_idnps(self, idnps: str) -> Account | None:
        """The account whose ``idnps`` is this one (bearer-token logins map a token's
        SubjectNameID to an account); None when there is none."""
        ...

    async def list_accounts(self) -> list[Account]: ...

    async def set_password(self, login: str, password: str) -> None: ...

    async def verify_password(self, login: str, password: str) -> Account | None:
        """Checks off the event loop; a bounded cache of recent successes keeps it cheap."""
        ...

    async def delete_account(self, login: str) -> None: ...

    async def set_disabled(self, login: str, disabled: bool) -> None:
        """A disabled account fails every password check."""
        ...

    async def create_mailbox(
        self,
        address: str,
        type: MailboxType,
        holder_id: str,
        *,
        display_name: str = "",
        quota_bytes: int = 0,
        owner: str | None = None,
    ) -> Mailbox:
        """Creates the BAL and its DEFAULT_FOLDERS; ``owner`` (a login) gets every right.
        An account whose login equals the address (case-insensitively) owns it implicitly."""
        ...

    async def get_mailbox(self, address: str) -> Mailbox | None:
        """Case-insensitive on the whole address."""
        ...

    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None: ...

    async def list_mailboxes(self, domain: str | None = None) -> list[Mailbox]: ...

    async def delete_mailbox(self, address: str) -> None: ...

    async def grant(self, login: str, address: str, rights: str) -> None:
        """Give ``login`` RFC 4314 ``rights`` (e.g. "lrswipkxtea") on the BAL; replaces."""
        ...

    async def revoke(self, login: str, address: str) -> None: ...

    async def mailboxes_of(self, login: str) -> list[tuple[Mailbox, str]]:
        """The BALs ``login`` holds or is delegated on, with its rights on each."""
        ...

    async def acl_epoch(self) -> int:
        """A number that changes (in the same transaction) with every change that may alter
        any ``mailboxes_of`` answer: accounts, BALs and delegations created, deleted or
        granted. Cheap, so a session can re-read its BALs only when it moved."""
        ...

    async def rights(self, login: str, mailbox_id: int) -> str:
        """The login's rights on the BAL, "" when none."""
        ...

    async def acl(self, mailbox_id: int) -> list[tuple[str, str]]:
        """Explicit (login, rights) entries of the BAL (RFC 4314 GETACL)."""
        ...


class FlagMode(enum.StrEnum):
    ADD = "add"
    REMOVE = "remove"
    REPLACE = "replace"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One ``deliver`` inside ``MessageStore.accept``. ``skip_over_quota``: a full BAL is
    skipped (the delivery's index is then in ``Acceptance.over_quota``) instead of failing the
    whole accept (the sender's Sent copy: the message still goes without it)."""

    mailbox_ids: tuple[int, ...]
    folder: str = "INBOX"
    flags: frozenset[str] = frozenset()
    dedup_key: str | None = None
    skip_over_quota: bool = False


@dataclass(frozen=True, slots=True)
class Enqueue:
    """One ``QueueStore.enqueue`` inside ``MessageStore.accept`` (same blob)."""

    sender: str
    recipients: tuple[QueueRecipient, ...]
    domain: str
    expires: datetime
    envid: str | None = None
    ret: str | None = None


@dataclass(frozen=True, slots=True)
class Acceptance:
    """What ``MessageStore.accept`` did: messages stored per ``Delivery`` (in order), the
    indexes of deliveries skipped over quota, the queue item ids per ``Enqueue``."""

    messages: tuple[tuple[StoredMessage, ...], ...] = ()
    over_quota: tuple[int, ...] = ()
    queue_ids: tuple[int, ...] = ()


class MessageStore(Protocol):
    """Folders and messages of BALs, with what IMAP needs (UIDs, MODSEQ, flags)."""

    async def list_folders(self, mailbox_id: int) -> list[Folder]: ...

    async def get_folder(self, mailbox_id: int, name: str) -> Folder | None:
        """``INBOX`` is case-insensitive. Counts (messages, unseen) are fresh."""
        ...

    async def get_folder_by_id(self, folder_id: int) -> Folder | None: ...

    async def claim_recent(self, folder_id: int, upto: int | None = None) -> int:
        """RFC 3501 §2.3.2 ``\\Recent``: raises the folder's persistent mark (the highest UID
        already recent for some session) to ``upto`` (default: UIDNEXT - 1; never lowered) and
        returns the previous mark, atomically. Messages above the returned mark are recent
        for the caller and for no one else. ``NotFound`` for an unknown folder."""
        ...

    async def create_folder(
        self, mailbox_id: int, name: str, *, special_use: str | None = None
    ) -> Folder: ...

    async def rename_folder(self, mailbox_id: int, old: str, new: str) -> None:
        """Renames children too (RFC 9051 §6.3.6); a new UIDVALIDITY for INBOX's copy."""
        ...

    async def delete_folder(self, mailbox_id: int, name: str) -> None: ...

    async def set_subscribed(self, mailbox_id: int, name: str, subscribed: bool) -> None:
        """SUBSCRIBE/UNSUBSCRIBE a folder; unsubscribing also drops an orphan name."""
        ...

    async def orphan_subscriptions(self, mailbox_id: int) -> list[str]:
        """Subscribed names whose folder was deleted (RFC 3501 §6.3.6: a subscription is not
        removed with its mailbox); re-creating the folder subscribes it again."""
        ...

    async def deliver(
        self,
        blob: BlobRef,
        mailbox_ids: Sequence[int],
        *,
        folder: str = "INBOX",
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
        dedup_key: str | None = None,
    ) -> list[StoredMessage]:
        """Atomically adds the message to ``folder`` of every BAL (one transaction, durable on
        return). With ``dedup_key``, a BAL that already got that key is skipped: re-delivery
        after a crash never puts a message twice. Raises ``QuotaExceeded`` (nothing stored)."""
        ...

    async def accept(
        self,
        blob: BlobRef,
        deliveries: Sequence[Delivery] = (),
        enqueues: Sequence[Enqueue] = (),
        audit: Sequence[AuditEvent] = (),
    ) -> Acceptance:
        """Everything an SMTP acceptance stores, in ONE transaction (durable on return; one
        group commit on SQLite): local deliveries (as ``deliver``), queue items (as
        ``QueueStore.enqueue``) and audit events. All or nothing, so a retry after a failure
        never duplicates; raises ``QuotaExceeded`` (nothing stored) for a full BAL of a
        delivery without ``skip_over_quota``."""
        ...

    async def append(
        self,
        folder_id: int,
        blob: BlobRef,
        *,
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
    ) -> StoredMessage: ...

    async def list_messages(
        self, folder_id: int, uid_min: int = 1, uid_max: int | None = None
    ) -> list[StoredMessage]:
        """In UID order."""
        ...

    async def store_flags(
        self,
        folder_id: int,
        uids: Sequence[int],
        flags: Iterable[str],
        mode: FlagMode,
        *,
        unchanged_since: int | None = None,
    ) -> tuple[list[StoredMessage], list[int]]:
        """Returns (changed messages with new MODSEQ, UIDs that failed UNCHANGEDSINCE)."""
        ...

    async def expunge(self, folder_id: int, uids: Sequence[int] | None = None) -> list[int]:
        """Removes messages flagged \\Deleted (restricted to ``uids`` if given); their UIDs."""
        ...

    async def copy(
        self, folder_id: int, uids: Sequence[int], dest_folder_id: int, *, move: bool = False
    ) -> list[tuple[int, int]]:
        """(source UID, destination UID) pairs, for COPYUID (RFC 4315)."""
        ...

    async def get_messages(self, folder_id: int, uids: Sequence[int]) -> list[StoredMessage]:
        """The messages among ``uids`` that exist, in UID order."""
        ...

    async def changed_since(self, folder_id: int, modseq: int) -> list[StoredMessage]:
        """Messages whose MODSEQ is above ``modseq`` (RFC 7162 CHANGEDSINCE), UID order."""
        ...

    async def vanished_since(self, folder_id: int, modseq: int) -> list[int]:
        """UIDs expunged (or moved away) after ``modseq`` (RFC 7162 §3.2.10 VANISHED)."""
        ...

    async def find_by_dedup(self, mailbox_id: int, dedup_key: str) -> StoredMessage | None:
        """The message a ``deliver(dedup_key=...)`` put in this BAL, if still there."""
        ...

    async def purge_dedup(self, older_than: datetime) -> int:
        """Forgets dedup keys recorded before ``older_than`` (keep them longer than the queue
        lifetime of any sender, e.g. 30 days); how many."""
        ...


class ChangeSubscription(Protocol):
    """An async iterator of changed folder ids of one BAL (0: the folder list changed),
    coalesced; registered at creation, so no change after ``subscribe()`` returns is missed."""

    def __aiter__(self) -> ChangeSubscription: ...

    async def __anext__(self) -> int: ...

    async def aclose(self) -> None: ...


class ChangeWatch(Protocol):
    def close(self) -> None: ...


class ChangeNotifier(Protocol):
    """Wakes IMAP IDLE and webmail when a folder changes; across nodes on PostgreSQL."""

    async def publish(self, mailbox_id: int, folder_id: int) -> None: ...

    def subscribe(self, mailbox_id: int) -> ChangeSubscription:
        """Yields folder ids of the BAL as they change, until the iterator is closed."""
        ...

    def watch(self, mailbox_id: int, callback: Callable[[int], None]) -> ChangeWatch:
        """Calls ``callback(folder_id)`` on the event loop for every change of the BAL, from
        the moment of the call until ``close()``; the callback must be quick and not raise."""
        ...


class QueueStore(Protocol):
    """Durable outbound queue: one item per (message, destination domain)."""

    async def enqueue(
        self,
        sender: str,
        recipients: Sequence[QueueRecipient],
        blob: BlobRef,
        domain: str,
        *,
        expires: datetime,
        envid: str | None = None,
        ret: str | None = None,
    ) -> int:
        """Durable on return (engines may group-commit concurrent callers)."""
        ...

    async def claim(self, node: str, *, limit: int, lease_seconds: float) -> list[QueueItem]:
        """Due items not leased by another node (PostgreSQL: FOR UPDATE SKIP LOCKED)."""
        ...

    async def set_recipient_state(
        self, item_id: int, address: str, state: RecipientState, diagnostic: str = ""
    ) -> None: ...

    async def reschedule(self, item_id: int, next_attempt: datetime, error: str) -> None: ...

    async def finish(self, item_id: int, *, audit: Sequence[AuditEvent] = ()) -> None:
        """Removes the item, records ``audit`` in the same transaction, and deletes its blob
        when no message and no other queue item references it any more."""
        ...

    async def get(self, item_id: int) -> QueueItem | None: ...

    async def list(self) -> list[QueueItem]: ...

    async def retry_now(self, item_id: int) -> None: ...

    async def release(self, item_id: int) -> None:
        """Gives a claimed item's lease back without counting an attempt (shutdown)."""
        ...

    async def release_node(self, node: str) -> int:
        """Gives back every lease held by ``node`` (at its start-up after a crash); how many."""
        ...


class AuditStore(Protocol):
    """Append-only audit trail."""

    async def record(self, event: AuditEvent) -> None: ...

    async def query(
        self,
        *,
        kind_prefix: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Newest first."""
        ...


class Storage(Protocol):
    """All the stores of one node, on one engine."""

    accounts: AccountStore
    messages: MessageStore
    queue: QueueStore
    blobs: BlobStore
    audit: AuditStore
    notifier: ChangeNotifier

    async def migrate(self) -> None:
        """Applies pending versioned migrations; idempotent."""
        ...

    async def close(self) -> None: ...
