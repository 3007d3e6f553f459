"""A practice-software stand-in: an MLLP listener that parses each MDM with the ``hl7``
library, extracts the CDA, and acknowledges like a real LPS would (HL7 v2 Appendix C).

A repeated MSH-10 (a replay after a crash) is acknowledged without a second integration,
as the idempotence contract of the adapters asks. ``reject`` maps a document id to an ANS
error code answered in ERR-5; ``before_ack`` runs before the ACK is written (to crash the
agent at the worst moment).
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import hl7


@dataclass(frozen=True)
class Received:
    control_id: str
    trigger: str
    order_control: str
    document_id: str
    parent_id: str
    pid3: str
    cda: bytes
    subject: str


@dataclass
class MllpListener:
    reject: dict[str, int] = field(default_factory=dict)
    before_ack: Callable[[Received, int], None] | None = None
    port: int = 0
    frames: list[str] = field(default_factory=list)
    integrated: list[Received] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, limit=64 * 1024 * 1024)
            )
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("MLLP listener did not start")

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def wait_integrated(self, count: int, timeout: float = 30.0) -> list[Received]:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.integrated) >= count, timeout):
                raise TimeoutError(f"expected {count} integrations, got {len(self.integrated)}")
            return list(self.integrated)

    def _parse(self, text: str) -> Received:
        msg = hl7.parse(text)
        msh9 = msg.segment("MSH")[9]
        trigger = str(msh9[0][1])
        assert str(msh9[0][0]) == "MDM", f"not an MDM: {msh9}"
        assert str(msg.segment("MSH")[12]) == "2.6"
        txa = msg.segment("TXA")
        obx = msg.segments("OBX")[0]
        ed = obx[5][0]
        assert str(ed[2]) == "XML" and str(ed[3]) == "Base64"
        cda = base64.b64decode(str(ed[4]))
        subject = ""
        if len(msg.segments("OBX")) > 1:
            subject = str(msg.segments("OBX")[1][3][0][1])
        return Received(
            control_id=str(msg.segment("MSH")[10]),
            trigger=trigger,
            order_control=str(msg.segment("ORC")[1]),
            document_id=str(txa[12][0][0]),
            parent_id=str(txa[13]),
            pid3=str(msg.segment("PID")[3]),
            cda=cda,
            subject=subject,
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    frame = await reader.readuntil(b"\x1c\r")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                text = frame[frame.find(b"\x0b") + 1 : -2].decode("utf-8")
                received = self._parse(text)
                with self.changed:
                    self.frames.append(received.control_id)
                    seen = sum(1 for r in self.integrated if r.control_id == received.control_id)
                    nth = len(self.frames)
                if self.before_ack is not None:
                    self.before_ack(received, nth)
                code = self.reject.get(received.document_id)
                if code is None and not seen:
                    with self.changed:
                        self.integrated.append(received)
                        self.changed.notify_all()
                ack = (
                    "MSH|^~\\&|LPS|CAB|CADUCEE|CADUCEE|20260101000000||ACK^"
                    f"{received.trigger}^ACK|A{nth}|P|2.6\r"
                    f"MSA|{'AA' if code is None else 'AE'}|{received.control_id}\r"
                )
                if code is not None:
                    ack += f"ERR|||207^Application error^HL70357|E|{code}^refused^L\r"
                writer.write(b"\x0b" + ack.encode() + b"\x1c\r")
                await writer.drain()
        finally:
            writer.close()
