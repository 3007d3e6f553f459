"""Outbound SMTP client: one session to a peer operator's relay, several messages per session.

RFC 5321 client side with the extensions the trust space needs: STARTTLS (RFC 3207) is
mandatory (no message is ever sent in clear), our client certificate is presented, PIPELINING
(RFC 2920) sends MAIL, every RCPT and DATA in one write, DSN parameters (RFC 3461) are passed on
when the peer announces DSN, RSET between messages. Message bytes are streamed from the blob
store with dot-stuffing and line endings normalised to CRLF (never the whole message in memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DotStuffer",
    "OutboundSession",
    "PeerError",
    "Reply",
    "SendResult",
    "xtext",
]

_LINE_LIMIT = 4096
_REPLY_LINES_LIMIT = 100
_WRITE_CHUNK = 256 * 1024


class PeerError(Exception):
    """The session with the peer failed; ``temporary`` says whether retrying makes sense."""

    def __init__(self, message: str, *, temporary: bool = True, reply: Reply | None = None):
        super().__init__(message)
        self.temporary = temporary
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500


@dataclass(slots=True)
class SendResult:
    """Per-recipient replies of one transaction; ``data`` None when DATA was not reached."""

    mail: Reply
    rcpts: list[Reply] = field(default_factory=list)
    data: Reply | None = None


def xtext(value: str) -> str:
    """RFC 3461 §4 xtext encoding of a parameter value."""
    return "".join(c if ("!" <= c <= "~" and c not in "+=") else f"+{ord(c):02X}" for c in value)


class DotStuffer:
    """Streaming transparency (RFC 5321 §4.5.2) with line endings normalised to CRLF.

    Feed chunks, then call ``end()`` for the terminating ``CRLF.CRLF``. A bare CR or LF becomes
    CRLF, so nothing the peer could read as an end of data (smuggling) ever leaves us.
    """

    _EOL = re.compile(rb"\r\n|\r|\n")

    def __init__(self) -> None:
        self._pending_cr = False
        self._at_line_start = True

    def feed(self, chunk: bytes) -> bytes:
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk.endswith(b"\r"):
            self._pending_cr = True
            chunk = chunk[:-1]
        if not chunk:
            return b""
        data = self._EOL.sub(b"\r\n", chunk)
        if self._at_line_start and data.startswith(b"."):
            data = b"." + data
        data = data.replace(b"\r\n.", b"\r\n..")
        self._at_line_start = data.endswith(b"\r\n")
        return data

    def end(self) -> bytes:
        tail = b""
        if self._pending_cr:
            self._pending_cr = False
            tail = b"\r\n"
            self._at_line_start = True
        if not self._at_line_start:
            tail += b"\r\n"
        return tail + b".\r\n"


class OutboundSession:
    """One SMTP session to a peer, over TLS once ``connect`` returns."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        port: int,
        timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.host = host
        self.port = port
        self.timeout = timeout
        self.extensions: dict[str, str] = {}
        self.peer_cert_der: bytes | None = None
        self.messages_sent = 0
        self.broken = False
        self._used = False

    # -- connection -----------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        helo_name: str,
        timeout: float = 30.0,  # noqa: ASYNC109 - applies to each step, not the whole call
    ) -> OutboundSession:
        """Connects, reads the greeting, EHLO, STARTTLS (mandatory), EHLO again.

        Raises ``PeerError`` (temporary) on any failure, ``ssl.SSLError`` on a failed handshake
        (the caller describes it with the trust policy).
        """
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=_LINE_LIMIT * 4), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise PeerError(f"cannot connect to {host}:{port}: {exc}") from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = cls(reader, writer, host, port, timeout)
        try:
            greeting = await session._read_reply()
            if greeting.code != 220:
                raise PeerError(f"greeting refused: {greeting}", temporary=greeting.temporary)
            await session._ehlo(helo_name)
            if "STARTTLS" not in session.extensions:
                raise PeerError(f"{host}:{port} does not offer STARTTLS")
            reply = await session._command(b"STARTTLS\r\n")
            if reply.code != 220:
                raise PeerError(f"STARTTLS refused: {reply}", temporary=reply.code < 500)
            # Not wrapped in wait_for: on Python 3.11 that can lose the ClientHello under load;
            # the handshake has its own timeout.
            await writer.start_tls(ssl_context, server_hostname=host, ssl_handshake_timeout=timeout)
            ssl_obj = writer.get_extra_info("ssl_object")
            if not isinstance(ssl_obj, ssl.SSLObject):
                raise PeerError("TLS was not established")
            session.peer_cert_der = ssl_obj.getpeercert(binary_form=True)
            await session._ehlo(helo_name)
        except ssl.SSLError:
            session.abort()
            raise
        except (OSError, TimeoutError) as exc:
            session.abort()
            raise PeerError(f"session with {host}:{port} failed: {exc!r}") from exc
        except BaseException:
            session.abort()
            raise
        return session

    async def _ehlo(self, name: str) -> None:
        reply = await self._command(f"EHLO {name}\r\n".encode("ascii"))
        if reply.code != 250:
            raise PeerError(f"EHLO refused: {reply}", temporary=reply.code < 500)
        ext: dict[str, str] = {}
        for line in reply.lines[1:]:
            keyword, _, params = line.partition(" ")
            ext[keyword.upper()] = params
        self.extensions = ext

    # -- I/O ----------------------------------------------------------------------------

    async def _read_reply(self) -> Reply:
        # asyncio.timeout, not wait_for: no task per line read (several lines per reply,
        # several replies per pipelined transaction).
        try:
            async with asyncio.timeout(self.timeout):
                return await self._read_reply_lines()
        except TimeoutError as exc:
            self.broken = True
            raise PeerError(f"reading reply from {self.host}: {exc!r}") from exc

    async def _read_reply_lines(self) -> Reply:
        lines: list[str] = []
        code = 0
        while True:
            try:
                raw = await self._reader.readline()
            except (ValueError, OSError) as exc:
                self.broken = True
                raise PeerError(f"reading reply from {self.host}: {exc!r}") from exc
            if not raw.endswith(b"\n"):
                self.broken = True
                raise PeerError(f"connection to {self.host} closed")
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit():
                self.broken = True
                raise PeerError(f"malformed reply from {self.host}")
            code = int(line[:3])
            lines.append(line[4:])
            if len(lines) > _REPLY_LINES_LIMIT:
                self.broken = True
                raise PeerError(f"reply from {self.host} too long")
            if len(line) == 3 or line[3] == " ":
                return Reply(code, tuple(lines))

    async def _write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            if self._writer.transport.get_write_buffer_size() > 0:
                async with asyncio.timeout(self.timeout):
                    await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            self.broken = True
            raise PeerError(f"writing to {self.host}: {exc!r}") from exc

    async def _command(self, line: bytes) -> Reply:
        await self._write(line)
        return await self._read_reply()

    # -- transactions -------------------------------------------------------------------

    def _mail_line(
        self, sender: str, size: int | None, envid: str | None, ret: str | None, utf8: bool
    ) -> bytes:
        params: list[str] = []
        if size is not None and "SIZE" in self.extensions:
            params.append(f"SIZE={size}")
        if "8BITMIME" in self.extensions:
            params.append("BODY=8BITMIME")
        if utf8 and "SMTPUTF8" in self.extensions:
            params.append("SMTPUTF8")
        if "DSN" in self.extensions:
            if ret:
                params.append(f"RET={ret.upper()}")
            if envid:
                params.append(f"ENVID={xtext(envid)}")
        tail = (" " + " ".join(params)) if params else ""
        return f"MAIL FROM:<{sender}>{tail}\r\n".encode()

    def _rcpt_line(self, address: str, notify: frozenset[str], orcpt: str | None) -> bytes:
        params: list[str] = []
        if "DSN" in self.extensions:
            if notify:
                params.append("NOTIFY=" + ",".join(sorted(n.upper() for n in notify)))
            if orcpt:
                kind, sep, addr = orcpt.partition(";")
                value = f"{kind};{xtext(addr)}" if sep else f"rfc822;{xtext(orcpt)}"
                params.append(f"ORCPT={value}")
        tail = (" " + " ".join(params)) if params else ""
        return f"RCPT TO:<{address}>{tail}\r\n".encode()

    async def send(
        self,
        sender: str,
        recipients: Sequence[tuple[str, frozenset[str], str | None]],
        body: AsyncIterable[bytes],
        *,
        size: int | None = None,
        envid: str | None = None,
        ret: str | None = None,
    ) -> SendResult:
        """One transaction. ``recipients``: (address, NOTIFY, ORCPT). Pipelined when offered.

        Returns the replies; raises ``PeerError`` when the session broke (the outcome of the
        transaction is then unknown, so the caller retries: the peer deduplicates).
        """
        if self.broken:
            raise PeerError("session is broken")
        utf8 = not (sender.isascii() and all(r[0].isascii() for r in recipients))
        mail = self._mail_line(sender, size, envid, ret, utf8)
        rcpts = [self._rcpt_line(a, n, o) for a, n, o in recipients]
        result: SendResult
        if "PIPELINING" in self.extensions:
            # RSET between messages of one session, pipelined with the next transaction so it
            # costs no round trip.
            reset = b"RSET\r\n" if self._used else b""
            self._used = True
            await self._write(reset + mail + b"".join(rcpts) + b"DATA\r\n")
            if reset and (await self._read_reply()).code != 250:
                self.broken = True
                raise PeerError(f"RSET refused by {self.host}")
            result = SendResult(await self._read_reply())
            for _ in rcpts:
                result.rcpts.append(await self._read_reply())
            data_reply = await self._read_reply()
            accepted = result.mail.ok and any(r.ok for r in result.rcpts)
            if data_reply.code != 354:
                if accepted:
                    result.data = data_reply
                await self._reset()
                return result
            if not accepted:
                # RFC 2920 §3.1: the server accepted DATA though no RCPT was; send an empty
                # message body end so the session stays in step, then reset.
                await self._write(b".\r\n")
                await self._read_reply()
                await self._reset()
                return result
        else:
            result = SendResult(await self._command(mail))
            if not result.mail.ok:
                await self._reset()
                return result
            for line in rcpts:
                result.rcpts.append(await self._command(line))
            if not any(r.ok for r in result.rcpts):
                await self._reset()
                return result
            data_reply = await self._command(b"DATA\r\n")
            if data_reply.code != 354:
                result.data = data_reply
                await self._reset()
                return result
        # Coalesce writes (one TLS record and one send for a small message, bounded for a big
        # one): each write costs a system call.
        stuffer = DotStuffer()
        pending = bytearray()
        async for chunk in body:
            pending += stuffer.feed(chunk)
            if len(pending) >= _WRITE_CHUNK:
                await self._write(bytes(pending))
                pending.clear()
        pending += stuffer.end()
        await self._write(bytes(pending))
        result.data = await self._read_reply()
        self.messages_sent += 1
        return result

    async def _reset(self) -> None:
        reply = await self._command(b"RSET\r\n")
        if reply.code != 250:
            self.broken = True

    async def rset(self) -> None:
        """RSET between messages (RFC 5321 §4.1.1.5)."""
        await self._reset()

    async def quit(self) -> None:
        """QUIT politely, then close; never raises."""
        if not self.broken:
            with contextlib.suppress(PeerError, OSError, ssl.SSLError):
                await self._command(b"QUIT\r\n")
        self.broken = True
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)

    def abort(self) -> None:
        self.broken = True
        transport = self._writer.transport
        transport.abort()
