"""Hand-off of an integrated document to practice software (the adapter interface).

An adapter receives a :class:`Delivery` and either returns (the practice software took the
document), raises :class:`AdapterRejected` with an ANS error code 900-906 (a permanent
refusal, answered by an MDN error), or raises :class:`AdapterUnavailable` (transient: the
message stays in the mailbox and is retried).

Idempotence contract: the same document and action are always delivered with the same
``control_id`` (HL7 MSH-10, FHIR resource ids, file names), so a replay after a crash is
recognisable by the receiver and never creates a second copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from caducee.core.errors import CaduceeError
from caducee.documents.cda import CdaDocument
from caducee.integration.patients import PatientRecord

__all__ = ["Adapter", "AdapterRejected", "AdapterUnavailable", "Delivery"]


@dataclass(frozen=True)
class Delivery:
    action: str  # "new" (T02) | "replace" (T10) | "delete" (T04)
    doc: CdaDocument
    patient: PatientRecord
    control_id: str
    parent_document_id: str | None = None
    sender: str | None = None
    recipient: str | None = None
    reply_to: str | None = None
    subject: str | None = None
    body: str | None = None
    pdf: bytes | None = None
    source: str = "mssante"  # or "oru"


class AdapterRejected(CaduceeError):
    """The practice software refused the document; ``code`` is the ANS error (900-906)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


class AdapterUnavailable(CaduceeError):
    """The practice software could not be reached or did not answer: retry later."""


class Adapter(Protocol):
    name: str

    async def deliver(self, delivery: Delivery) -> None:
        """Hand ``delivery`` over; return only once the practice software has it."""

    async def close(self) -> None:
        """Release connections."""
