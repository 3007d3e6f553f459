"""A minimal SMTP submission server for tests (RFC 5321, STARTTLS RFC 3207, AUTH PLAIN
RFC 4954/4616, DSN RFC 3461 parameters recorded).

It stands in for an operator's submission port, which is being written elsewhere; it is
deliberately small and strict: no AUTH before STARTTLS, no MAIL before AUTH. It runs its own
event loop in a thread so blocking clients (smtplib, the CLI in a subprocess) can use it.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Received:
    mail_from: str
    mail_options: list[str]
    rcpts: list[tuple[str, list[str]]]
    data: bytes
    user: str


@dataclass
class SubmissionServer:
    cert_file: Path
    key_file: Path
    users: dict[str, str]
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.base_events.Server | None = None

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, self.host, 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("SMTP test server did not start")

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(f"expected {count} messages, got {len(self.messages)}")
            return list(self.messages)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        tls = False
        user: str | None = None
        mail_from: str | None = None
        mail_opts: list[str] = []
        rcpts: list[tuple[str, list[str]]] = []

        async def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        try:
            await send("220 localhost ESMTP test submission")
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if verb in ("EHLO", "HELO"):
                    caps = [
                        "250-localhost",
                        "250-PIPELINING",
                        "250-8BITMIME",
                        "250-DSN",
                        "250-SIZE 52428800",
                    ]
                    caps.append("250-AUTH PLAIN" if tls else "250-STARTTLS")
                    caps.append("250 ENHANCEDSTATUSCODES")
                    for c in caps:
                        await send(c)
                elif verb == "STARTTLS" and not tls:
                    await send("220 2.0.0 go ahead")
                    await writer.start_tls(ctx)
                    tls = True
                    user = None
                elif verb == "AUTH":
                    if not tls:
                        await send("530 5.7.0 STARTTLS first")
                        continue
                    mech, _, initial = arg.partition(" ")
                    if mech.upper() != "PLAIN":
                        await send("504 5.5.4 mechanism not supported")
                        continue
                    if not initial:
                        await send("334 ")
                        initial = (await reader.readline()).decode().strip()
                    try:
                        _, u, p = base64.b64decode(initial).decode().split("\x00")
                    except Exception:
                        await send("501 5.5.2 bad AUTH PLAIN")
                        continue
                    if self.users.get(u) == p:
                        user = u
                        await send("235 2.7.0 authenticated")
                    else:
                        await send("535 5.7.8 authentication failed")
                elif verb == "MAIL":
                    if user is None:
                        await send("530 5.7.0 authentication required")
                        continue
                    parts = arg[5:].split()
                    mail_from = parts[0].strip("<>")
                    mail_opts = parts[1:]
                    rcpts = []
                    await send("250 2.1.0 ok")
                elif verb == "RCPT":
                    if mail_from is None:
                        await send("503 5.5.1 MAIL first")
                        continue
                    parts = arg[3:].split()
                    rcpts.append((parts[0].strip("<>"), parts[1:]))
                    await send("250 2.1.5 ok")
                elif verb == "DATA":
                    if not rcpts or mail_from is None or user is None:
                        await send("503 5.5.1 RCPT first")
                        continue
                    await send("354 end with .")
                    chunks: list[bytes] = []
                    while True:
                        data_line = await reader.readline()
                        if data_line in (b".\r\n", b".\n", b""):
                            break
                        if data_line.startswith(b"."):
                            data_line = data_line[1:]
                        chunks.append(data_line)
                    with self.arrived:
                        self.messages.append(
                            Received(mail_from, mail_opts, rcpts, b"".join(chunks), user)
                        )
                        self.arrived.notify_all()
                    mail_from, rcpts = None, []
                    await send("250 2.0.0 queued")
                elif verb == "RSET":
                    mail_from, rcpts = None, []
                    await send("250 2.0.0 ok")
                elif verb == "NOOP":
                    await send("250 2.0.0 ok")
                elif verb == "QUIT":
                    await send("221 2.0.0 bye")
                    return
                else:
                    await send("502 5.5.2 not implemented")
        except (ConnectionError, ssl.SSLError):
            return
        finally:
            writer.close()
