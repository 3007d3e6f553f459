"""Lab results: HL7 v2 ORU^R01 over MLLP carrying a CR-BIO CDA (CI-SIS volet "transmission de
documents CDA en HL7v2"), integrated through the same pipeline as MSSanté messages.

Each OBX of type ED holding a Base64 CDA is one document; ORC-1 ``CA`` deletes it. The sender
gets ``AA``, ``AE`` with ERR-5 = the 900-906 code, or ``AR`` when the practice software is
unavailable (to be retried).
"""

from __future__ import annotations

import asyncio
import hashlib

from caducee.core.errors import InvalidInput
from caducee.documents.cda import read_cda
from caducee.documents.hl7v2 import MLLP_END, build_ack, mllp_frame, parse_oru
from caducee.documents.mdn import ERRORS
from caducee.integration.adapters import AdapterUnavailable
from caducee.integration.pipeline import Pipeline, Provenance

__all__ = ["OruListener"]


class OruListener:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def handle(self, raw: bytes) -> str:
        """Integrate the CDA(s) of one ORU^R01; return the ACK to send back."""
        try:
            docs = parse_oru(raw)
        except InvalidInput:
            return build_ack(raw, code="AR", error=906, label=ERRORS[906])
        if not docs:
            return build_ack(raw, code="AE", error=906, label="no CDA document in the message")
        key = "oru:" + hashlib.sha256(raw).hexdigest()
        first: int | None = None
        try:
            for d in docs:
                cda = await asyncio.to_thread(read_cda, d.cda)
                err = await self.pipeline.integrate(
                    cda, Provenance(key=key, source="oru"), delete=d.order_control == "CA"
                )
                if first is None:
                    first = err
        except AdapterUnavailable:
            return build_ack(raw, code="AR", error=906, label="practice software unavailable")
        except InvalidInput:
            return build_ack(raw, code="AE", error=906, label=ERRORS[906])
        if first is None:
            return build_ack(raw)
        return build_ack(raw, code="AE", error=first, label=ERRORS.get(first, ERRORS[906]))

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """MLLP: one framed message at a time, each answered before the next is read."""
        try:
            while True:
                try:
                    frame = await reader.readuntil(MLLP_END)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                start = frame.find(b"\x0b")
                ack = await self.handle(frame[start + 1 : -2])
                writer.write(mllp_frame(ack))
                await writer.drain()
        finally:
            writer.close()
