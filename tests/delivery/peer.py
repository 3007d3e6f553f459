"""A scriptable SMTP peer for outbound tests: a real TLS server on 127.0.0.1, port 0.

It plays a remote operator's relay-in: STARTTLS with its certificate, requires a client
certificate chained to the given CA, announces PIPELINING/8BITMIME/DSN (configurable), and
answers RCPT and end-of-DATA with scripted replies so tests can drive 4xx/5xx paths. Not a
fake of our own server: a minimal independent peer, so the client is tested against something
it was not written with.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Received:
    sender: str
    mail_params: str
    rcpts: list[str]
    rcpt_params: list[str]
    data: bytes
    client_cert: bytes | None


@dataclass
class Peer:
    cert_chain: Path
    key: Path
    ca_bundle: Path
    extensions: tuple[str, ...] = ("PIPELINING", "8BITMIME", "DSN", "SIZE 50000000")
    offer_starttls: bool = True
    rcpt_reply: Callable[[str], str] = lambda addr: "250 2.1.5 ok"
    data_reply: Callable[[int], str] = lambda n: "250 2.0.0 queued"
    received: list[Received] = field(default_factory=list)
    sessions: int = 0
    data_attempts: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    port: int = 0
    _server: asyncio.Server | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca_bundle))
        ctx.load_cert_chain(str(self.cert_chain), str(self.key))
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_for(self, pred: Callable[[Peer], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: pred(self))

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        tls = False
        client_cert: bytes | None = None

        async def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        sender, mail_params = "", ""
        rcpts: list[str] = []
        rcpt_params: list[str] = []
        try:
            await say("220 peer.test ESMTP")
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                line = raw.decode().rstrip("\r\n")
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    exts = list(self.extensions) if tls else []
                    if not tls and self.offer_starttls:
                        exts.append("STARTTLS")
                    lines = ["peer.test", *exts]
                    for i, text in enumerate(lines):
                        sep = " " if i == len(lines) - 1 else "-"
                        writer.write(f"250{sep}{text}\r\n".encode())
                    await writer.drain()
                elif verb == "STAR":
                    await say("220 2.0.0 go ahead")
                    await writer.start_tls(self.context())
                    tls = True
                    ssl_obj = writer.get_extra_info("ssl_object")
                    client_cert = ssl_obj.getpeercert(binary_form=True)
                elif not tls and verb in ("MAIL", "RCPT", "DATA"):
                    await say("530 5.7.0 must issue STARTTLS first")
                elif verb == "MAIL":
                    rest = line[10:]
                    addr, _, mail_params = rest.partition(">")
                    sender = addr.lstrip("<")
                    rcpts, rcpt_params = [], []
                    await say("250 2.1.0 ok")
                elif verb == "RCPT":
                    addr, _, params = line[8:].partition(">")
                    addr = addr.lstrip("<")
                    reply = self.rcpt_reply(addr)
                    if reply.startswith("2"):
                        rcpts.append(addr)
                        rcpt_params.append(params.strip())
                    await say(reply)
                elif verb == "DATA":
                    if not rcpts:
                        await say("554 5.5.1 no valid recipients")
                        continue
                    await say("354 go")
                    chunks: list[bytes] = []
                    while True:
                        dl = await reader.readline()
                        if dl in (b".\r\n", b""):
                            break
                        chunks.append(dl[1:] if dl.startswith(b".") else dl)
                    self.data_attempts += 1
                    reply = self.data_reply(self.data_attempts)
                    if reply.startswith("2"):
                        self.received.append(
                            Received(
                                sender,
                                mail_params.strip(),
                                rcpts,
                                rcpt_params,
                                b"".join(chunks),
                                client_cert,
                            )
                        )
                    await say(reply)
                    await self._notify()
                elif verb == "RSET":
                    sender, rcpts, rcpt_params = "", [], []
                    await say("250 2.0.0 ok")
                elif verb == "QUIT":
                    await say("221 2.0.0 bye")
                    return
                else:
                    await say("502 5.5.2 not implemented")
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            await self._notify()
