"""Domain objects shared by every part of the operator. Plain data, no I/O."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from caducee.core.errors import InvalidInput

__all__ = [
    "Account",
    "Address",
    "AuditEvent",
    "BlobRef",
    "Folder",
    "Mailbox",
    "MailboxType",
    "QueueItem",
    "QueueRecipient",
    "RecipientState",
    "StoredMessage",
]


class MailboxType(enum.StrEnum):
    """MSSanté mailbox (BAL) types, code system TRE_R257-TypeBAL."""

    PER = "PER"  # personal: one professional, holder RPPS/ADELI (IDNPS)
    ORG = "ORG"  # organisational: a service of a structure, holder SIRET/FINESS, delegated
    APP = "APP"  # applicative: software (e.g. a lab system), holder SIRET/FINESS, certificate auth
    CAB = "CAB"  # cabinet: a practice's shared mailbox, holder SIRET/FINESS, delegated


@dataclass(frozen=True, slots=True)
class Address:
    """An RFC 5321 mailbox address. The domain is kept lower-case; the local part as given."""

    local: str
    domain: str

    @classmethod
    def parse(cls, text: str) -> Address:
        text = text.strip()
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1]
        local, sep, domain = text.rpartition("@")
        if not sep or not local or not domain or any(c in text for c in " \t\r\n<>"):
            raise InvalidInput(f"not a mailbox address: {text!r}")
        return cls(local, domain.lower().rstrip("."))

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def key(self) -> str:
        """Canonical lookup key: the whole address in lower case."""
        return f"{self.local.lower()}@{self.domain}"


@dataclass(frozen=True, slots=True)
class BlobRef:
    """Where an encrypted blob lives. ``key_id`` names the data key, so keys can rotate."""

    blob_id: str
    key_id: str
    size: int  # plaintext size in bytes


@dataclass(frozen=True, slots=True)
class Account:
    """A login (a person or a piece of software) that holds or is delegated on mailboxes."""

    account_id: int
    login: str
    display_name: str = ""
    idnps: str | None = None  # national professional id (type digit + RPPS/ADELI), for tokens
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A BAL: one address of one of the four MSSanté types, with its holder."""

    mailbox_id: int
    address: str
    type: MailboxType
    holder_id: str  # IDNPS (RPPS/ADELI) for PER; SIRET or FINESS for ORG/APP/CAB
    display_name: str = ""
    quota_bytes: int = 0  # 0 = unlimited
    used_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Folder:
    """An IMAP mailbox (folder) of a BAL. UIDVALIDITY is stable across restarts."""

    folder_id: int
    mailbox_id: int
    name: str  # hierarchy delimiter "/", names stored as UTF-8 (IMAP4rev2)
    uidvalidity: int
    uidnext: int
    highest_modseq: int
    special_use: str | None = None  # "\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"
    subscribed: bool = True
    message_count: int = 0
    unseen_count: int = 0  # messages without \\Seen (STATUS UNSEEN)
    first_unseen: int | None = None  # lowest UID without \\Seen (SELECT's [UNSEEN n] wants its
    # sequence number: the IMAP layer maps it)
    recent_uid: int = 0  # highest UID already \\Recent for some session (RFC 3501 §2.3.2)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message in one folder. The bytes are in the blob store."""

    folder_id: int
    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: datetime
    size: int
    blob: BlobRef


class RecipientState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class QueueRecipient:
    """One envelope recipient with its RFC 3461 DSN parameters."""

    address: str
    notify: frozenset[str] = frozenset()  # {"SUCCESS","FAILURE","DELAY"} or {"NEVER"}
    orcpt: str | None = None
    state: RecipientState = RecipientState.PENDING
    diagnostic: str = ""


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A message waiting for outbound delivery (to other operators) or for a DSN."""

    item_id: int
    sender: str  # "" for the null reverse-path (DSNs)
    recipients: tuple[QueueRecipient, ...]
    blob: BlobRef
    domain: str  # destination domain: one item per (message, destination domain)
    created: datetime
    next_attempt: datetime
    expires: datetime
    attempts: int = 0
    envid: str | None = None
    ret: str | None = None  # "FULL" | "HDRS"
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """A typed audit event. ``details`` never holds message bodies, secrets or full INS."""

    kind: str  # dotted, e.g. "smtp.relay.refused", "mailbox.created", "message.read"
    outcome: str  # "ok" | "refused" | "error"
    actor: str  # login, certificate DN, or "system"
    target: str = ""  # mailbox address, message id, domain...
    details: Mapping[str, str] = field(default_factory=dict)
    time: datetime | None = None  # set by the store when None
    node: str = ""
