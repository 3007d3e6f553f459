"""The integration pipeline, independent of where documents come from (IMAP message or
ORU^R01): decide the action (new / replace / delete), check version and author (900, 901),
match the patient (902-905), hand the document to every adapter once, record the outcome.

Actions (an [INF] reading of the ANS volet, documented in docs/integration.md):
- a document whose ``setId`` is unknown is new (MDM^T02);
- a document of a known ``setId`` with a higher ``versionNumber`` replaces the latest one
  (MDM^T10, TXA-13 = replaced document id); an equal or lower version is error 900;
- an XDM entry marked ``Deprecated`` (or an ORU with ORC-1 ``CA``) deletes that document
  (MDM^T04); it must be the latest version (900);
- replacement and deletion must come from the same organisation as the original (901).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from dataclasses import dataclass

from caducee.core.errors import CaduceeError
from caducee.documents.cda import CdaDocument
from caducee.documents.validate import validate_cda
from caducee.integration.adapters import Adapter, AdapterRejected, Delivery
from caducee.integration.patients import PatientIndex
from caducee.integration.state import AgentState, DocumentRow

__all__ = ["Pipeline", "Provenance", "control_id"]

log = logging.getLogger("caducee.integration")


def control_id(doc_id: str, action: str) -> str:
    """Stable per document and action: the receiver recognises a replay (HL7 MSH-10)."""
    return hashlib.sha256(f"{doc_id}|{action}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Provenance:
    """Where the document came from (for the hand-off and the state)."""

    key: str
    sender: str | None = None
    recipient: str | None = None
    reply_to: str | None = None
    subject: str | None = None
    body: str | None = None
    pdf: bytes | None = None
    source: str = "mssante"


class Pipeline:
    def __init__(
        self,
        *,
        state: AgentState,
        index: PatientIndex,
        adapters: list[Adapter],
        cda_schema: str | None = None,
        require_conformant: bool = False,
    ) -> None:
        self.state = state
        self.index = index
        self.adapters = adapters
        self.cda_schema = cda_schema
        self.require_conformant = require_conformant
        # One decision + hand-off at a time per document set (IMAP batches and ORU share us).
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _org(self, doc: CdaDocument) -> str | None:
        a = doc.author
        if a is None:
            return None
        if a.organisation_id is not None:
            return str(a.organisation_id)
        return a.organisation

    async def integrate(
        self, doc: CdaDocument, prov: Provenance, *, delete: bool = False
    ) -> int | None:
        """Integrate one document; return None on success or the ANS error code (900-906).

        Raises :class:`AdapterUnavailable` when the practice software is unreachable (retry).
        """
        set_key = str(doc.set_id) if doc.set_id else doc.unique_id
        lock = self._locks.get(set_key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[set_key] = lock
        async with lock:
            return await self._integrate(doc, prov, delete=delete)

    async def _integrate(self, doc: CdaDocument, prov: Provenance, *, delete: bool) -> int | None:
        doc_id = doc.unique_id
        if not doc_id:
            return 906
        set_id = str(doc.set_id) if doc.set_id else doc_id
        existing = self.state.document(doc_id)
        parent: str | None = None
        if delete:
            action = "delete"
            latest = self.state.latest_of_set(set_id)
            if existing is not None and existing.status == "deleted":
                return None  # already done
            if latest is None or latest.doc_id != doc_id or existing is None:
                return 900
            if existing.author_org and self._org(doc) and existing.author_org != self._org(doc):
                return 901
            if existing.version is not None:
                before = self.state.previous_version(set_id, existing.version)
                parent = before.doc_id if before else None
        else:
            if existing is not None and existing.status in ("delivered", "deleted"):
                return None  # idempotent replay
            if existing is not None and existing.status == "delivering":
                action = existing.action
                latest = self.state.latest_of_set(set_id)
                parent = latest.doc_id if latest and action == "replace" else None
            else:
                latest = self.state.latest_of_set(set_id)
                if latest is not None:
                    if (
                        doc.version is None
                        or latest.version is None
                        or doc.version <= latest.version
                    ):
                        return 900
                    if latest.author_org and self._org(doc) and latest.author_org != self._org(doc):
                        return 901
                    action, parent = "replace", latest.doc_id
                else:
                    action = "new"
        if self.require_conformant or self.cda_schema:
            verdict = await asyncio.to_thread(validate_cda, doc, schema=self.cda_schema)
            if not verdict.conformant:
                # Reasons can quote document content: log their number only.
                log.warning("document %s not conformant (%d reasons)", doc_id, len(verdict.reasons))
                if self.require_conformant:
                    return 906
        match = self.index.match(doc.patient)
        if match.error is not None or match.patient is None:
            return match.error or 902
        row = DocumentRow(
            doc_id=doc_id,
            set_id=set_id,
            version=doc.version,
            patient_id=match.patient.id,
            author_org=self._org(doc),
            status="delivering",
            action=action,
        )
        self.state.put_document(row, prov.key)
        delivery = Delivery(
            action=action,
            doc=doc,
            patient=match.patient,
            control_id=control_id(doc_id, action),
            parent_document_id=parent,
            sender=prov.sender,
            recipient=prov.recipient,
            reply_to=prov.reply_to,
            subject=prov.subject,
            body=prov.body,
            pdf=prov.pdf,
            source=prov.source,
        )
        for adapter in self.adapters:
            if self.state.delivered_to(doc_id, action, adapter.name):
                continue
            try:
                await adapter.deliver(delivery)
            except AdapterRejected as exc:
                log.info("document %s refused by %s: %s", doc_id, adapter.name, exc.code)
                if delete and existing is not None:  # the document stays as it was
                    self.state.put_document(existing, prov.key)
                else:
                    self.state.put_document(
                        DocumentRow(**{**row.__dict__, "status": "rejected"}), prov.key
                    )
                return exc.code
            self.state.mark_delivered(doc_id, action, adapter.name)
        done = "deleted" if delete else "delivered"
        self.state.put_document(DocumentRow(**{**row.__dict__, "status": done}), prov.key)
        log.info("document %s integrated (%s)", doc_id, action)
        return None

    async def close(self) -> None:
        for adapter in self.adapters:
            try:
                await adapter.close()
            except CaduceeError:  # pragma: no cover - best effort
                log.warning("adapter %s did not close cleanly", adapter.name)
