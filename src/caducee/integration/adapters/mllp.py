"""HL7 v2.6 MDM^T02/T10/T04 over MLLP, waiting for the ACK (ANS volet "transmission à un LPS
d'un document CDA reçu par courriel MSSanté"). ``AA`` accepts; ``AE``/``AR`` with ERR-5 900-906
is a permanent refusal with that code; no answer or a broken connection is transient.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from caducee.core.errors import InvalidInput
from caducee.documents.hl7v2 import MLLP_END, MdmRequest, build_mdm, mllp_frame, parse_ack
from caducee.integration.adapters import AdapterRejected, AdapterUnavailable, Delivery

__all__ = ["MllpAdapter"]

_MAX_ACK = 1024 * 1024


class MllpAdapter:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 30.0,
        tls: ssl.SSLContext | None = None,
        sending_app: str = "CADUCEE",
        sending_facility: str = "CADUCEE",
        receiving_app: str = "LPS",
        receiving_facility: str = "LPS",
        name: str = "mllp",
        connections: int = 1,
    ) -> None:
        self.name = name
        self.host, self.port, self.timeout, self.tls = host, port, timeout, tls
        self.apps = (sending_app, sending_facility, receiving_app, receiving_facility)
        # Each connection carries one message at a time and waits for its ACK (original mode).
        self._conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = [None] * max(
            1, connections
        )
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(len(self._conns)):
            self._free.put_nowait(slot)

    async def _connect(self, slot: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        conn = self._conns[slot]
        if conn is None:
            try:
                conn = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, ssl=self.tls), self.timeout
                )
            except (OSError, TimeoutError) as exc:
                raise AdapterUnavailable(
                    f"MLLP {self.host}:{self.port} unreachable: {exc}"
                ) from exc
            self._conns[slot] = conn
        return conn

    async def _drop(self, slot: int) -> None:
        conn = self._conns[slot]
        if conn is not None:
            self._conns[slot] = None
            conn[1].close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await conn[1].wait_closed()

    async def deliver(self, delivery: Delivery) -> None:
        req = MdmRequest(
            action=delivery.action,
            control_id=delivery.control_id,
            parent_document_id=delivery.parent_document_id,
            sender_email=delivery.sender,
            recipient_email=delivery.recipient,
            reply_to=delivery.reply_to,
            subject=delivery.subject,
            body=delivery.body,
            sending_app=self.apps[0],
            sending_facility=self.apps[1],
            receiving_app=self.apps[2],
            receiving_facility=self.apps[3],
        )
        frame = mllp_frame(build_mdm(delivery.doc, req))
        slot = await self._free.get()
        try:
            raw = await self._exchange(slot, frame)
            try:
                ack = parse_ack(raw[:_MAX_ACK])
            except InvalidInput as exc:
                await self._drop(slot)
                raise AdapterUnavailable(f"MLLP peer did not answer an ACK: {exc}") from exc
            if ack.control_id != delivery.control_id:
                await self._drop(slot)
                raise AdapterUnavailable("MLLP ACK does not acknowledge the message sent")
        finally:
            self._free.put_nowait(slot)
        if ack.accepted:
            return
        code = int(ack.app_error) if ack.app_error and ack.app_error.isdigit() else 906
        if not 900 <= code <= 906:
            code = 906
        raise AdapterRejected(code, f"practice software refused the document ({ack.code} {code})")

    async def _exchange(self, slot: int, frame: bytes) -> bytes:
        for attempt in (1, 2):
            reader, writer = await self._connect(slot)
            try:
                writer.write(frame)
                await writer.drain()
                return await asyncio.wait_for(reader.readuntil(MLLP_END), self.timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                await self._drop(slot)
                if attempt == 2:
                    raise AdapterUnavailable(f"MLLP connection failed: {exc}") from exc
            except TimeoutError as exc:
                await self._drop(slot)
                raise AdapterUnavailable("MLLP peer did not acknowledge in time") from exc
        raise AdapterUnavailable("MLLP connection failed")  # pragma: no cover

    async def close(self) -> None:
        for slot in range(len(self._conns)):
            await self._drop(slot)
