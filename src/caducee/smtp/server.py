"""Connection layer of the SMTP servers: an asyncio protocol with bounded buffers, and a listener.

:class:`Connection` turns the transport's callbacks into awaitable reads (``readline``,
``read_chunk``) with our own timeouts, batches replies so that pipelined commands get their
replies in one write (RFC 2920 §3.1: flushed whenever the server would wait for input), applies
backpressure (reading pauses above :data:`READ_HIGH_WATER` bytes, so memory per connection is
bounded whatever the message size), and upgrades to TLS in place (RFC 3207). Design notes:

- TCP_NODELAY on every accepted socket (delayed-ACK stalls of ~40 ms otherwise);
- TLS is driven through ``ssl.MemoryBIO`` by this protocol (not asyncio's SSL transport and
  its 256 KiB buffer per connection); the handshake is bounded by our own timer, never by
  ``wait_for`` (on Python 3.11 ``wait_for(start_tls)`` can lose the ClientHello under load);
- plaintext bytes buffered when STARTTLS is accepted are discarded (command injection,
  CVE-2011-0411 class).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

from caducee.core.errors import InvalidInput

__all__ = ["READ_HIGH_WATER", "Connection", "LineTooLong", "Listener", "parse_listen"]

READ_HIGH_WATER = 256 * 1024
READ_CHUNK = 256 * 1024


class LineTooLong(InvalidInput):
    """A line exceeded its limit; the rest of it up to LF has been discarded."""


class _Closed(Exception):
    """The peer went away (EOF or connection lost) while we waited for it."""


class Connection(asyncio.Protocol):
    """One accepted TCP connection seen as an awaitable byte stream (see module docstring)."""

    def __init__(self, run: Callable[[Connection], Coroutine[Any, Any, None]]) -> None:
        self._run = run
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._eof = False
        self._lost = False
        self._paused = False
        self._write_paused = False
        self.peer: tuple[str, int] = ("?", 0)
        self.task: asyncio.Task[None] | None = None
        # TLS, driven here through memory BIOs (see start_tls).
        self._ssl: ssl.SSLObject | None = None
        self._bio_in = ssl.MemoryBIO()
        self._bio_out = ssl.MemoryBIO()
        self._handshake: asyncio.Future[None] | None = None
        self._broken = False  # TLS failed: nothing may be written any more
        self._hold_out = False  # TLS 1.3 session ticket held for the next reply (one send)

    # -- asyncio.Protocol callbacks --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):
            raise TypeError("SMTP needs a stream transport")
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (str(peer[0]), int(peer[1]))
        self.task = self._loop.create_task(self._run(self))

    def data_received(self, data: bytes) -> None:
        if self._broken:
            return
        if self._ssl is not None:
            self._bio_in.write(data)
            hs = self._handshake
            if hs is not None and not hs.done():
                self._do_handshake(hs)
                if not hs.done() or hs.exception() is not None:
                    return
            data = self._tls_read()
            if not data and not self._eof:
                return
        self._buf += data
        if len(self._buf) > READ_HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._fail_handshake("peer closed the connection during the TLS handshake")
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._eof = True
        self._fail_handshake("connection lost during the TLS handshake")
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _fail_handshake(self, why: str) -> None:
        hs = self._handshake
        if hs is not None and not hs.done():
            hs.set_exception(ConnectionResetError(why))

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- reading -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._lost

    async def _wait_data(self, idle: float) -> None:
        """Flushes pending replies, then waits for more input (or EOF) at most ``idle`` seconds."""
        if self._eof:
            raise _Closed
        await self.flush()
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_later(idle, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def readline(self, limit: int, idle: float) -> bytes:
        """The next line including its LF. Raises ``LineTooLong`` (line discarded),
        ``TimeoutError``, or ``ConnectionError`` at EOF."""
        scanned = 0
        too_long = False
        while True:
            idx = self._buf.find(b"\n", scanned)
            if idx >= 0:
                if too_long or idx + 1 > limit:
                    del self._buf[: idx + 1]
                    raise LineTooLong(f"line longer than {limit} octets")
                line = bytes(self._buf[: idx + 1])
                del self._buf[: idx + 1]
                return line
            if len(self._buf) > limit:
                too_long = True
                del self._buf[:]
            scanned = len(self._buf)
            try:
                await self._wait_data(idle)
            except _Closed:
                raise ConnectionResetError("peer closed the connection") from None

    async def read_chunk(self, idle: float) -> bytes:
        """Whatever is buffered (at most :data:`READ_CHUNK`), waiting for some if empty;
        b"" at EOF."""
        if not self._buf:
            try:
                await self._wait_data(idle)
            except _Closed:
                return b""
            if not self._buf:
                return b""
        if len(self._buf) <= READ_CHUNK:
            data = bytes(self._buf)
            self._buf.clear()
        else:
            data = bytes(self._buf[:READ_CHUNK])
            del self._buf[:READ_CHUNK]
        return data

    def unread(self, data: bytes) -> None:
        """Puts bytes back in front of the buffer (pipelined commands after DATA's end)."""
        if data:
            self._buf[:0] = data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def discard_buffer(self) -> int:
        n = len(self._buf)
        self._buf.clear()
        return n

    # -- writing -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queues bytes; they go out at the next :meth:`flush` (or before the next wait)."""
        self._out.append(data)

    async def flush(self) -> None:
        if not self._out or self.transport is None or self._broken:
            self._out.clear()
            return
        data = b"".join(self._out)
        self._out.clear()
        if self._lost or self.transport.is_closing():
            return
        self._hold_out = False
        if self._ssl is not None:
            try:
                self._ssl.write(data)
            except ssl.SSLError as exc:
                raise ConnectionResetError(f"TLS write failed: {exc}") from exc
            data = self._bio_out.read()
        self.transport.write(data)
        if self._write_paused:
            self._drain = self._loop.create_future()
            try:
                await self._drain
            finally:
                self._drain = None

    # -- TLS and closing -----------------------------------------------------------------

    async def start_tls(self, ctx: ssl.SSLContext, handshake_timeout: float) -> None:
        """Upgrades to TLS (server side), in place. Buffered plaintext is discarded first
        (RFC 3207 §4, command injection). Raises ``ssl.SSLError`` (after the TLS alert is
        sent), ``ConnectionError`` or ``TimeoutError`` on failure.

        TLS runs through ``ssl.MemoryBIO`` driven by this protocol rather than asyncio's SSL
        transport: one less protocol layer per read and write, no 256 KiB buffer per
        connection, and the handshake bounded by our own timer (never ``wait_for``)."""
        await self.flush()
        self._buf.clear()
        if self.transport is None or self._lost or self._eof:
            raise ConnectionResetError("connection closed before TLS")
        self._ssl = ctx.wrap_bio(self._bio_in, self._bio_out, server_side=True)
        hs: asyncio.Future[None] = self._loop.create_future()
        self._handshake = hs
        timer = self._loop.call_later(handshake_timeout, _expire, hs)
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
        try:
            await hs
        except BaseException:
            self._broken = True  # never fall back to plaintext after a failed handshake
            raise
        finally:
            timer.cancel()
            self._handshake = None
        if self._buf:  # data that came with the client's Finished: already application data
            self._wake()

    def _do_handshake(self, hs: asyncio.Future[None]) -> None:
        assert self._ssl is not None  # noqa: S101 - only called in TLS mode
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._tls_flush_out()
            return
        except (ssl.SSLError, OSError) as exc:
            self._tls_flush_out()  # the alert, so the peer learns why
            if not hs.done():
                hs.set_exception(exc)
            return
        if self._ssl.version() == "TLSv1.3":
            # Only the session ticket is left to send: it goes with our next reply (one
            # send fewer per connection; a TLS 1.3 client never waits for a ticket).
            self._hold_out = True
        else:
            self._tls_flush_out()  # TLS 1.2: our Finished, which the client waits for
        if not hs.done():
            hs.set_result(None)

    def _tls_read(self) -> bytes:
        """Decrypts what the input BIO holds; sets EOF on close_notify or a TLS error."""
        assert self._ssl is not None  # noqa: S101 - only called in TLS mode
        chunks = []
        while True:
            try:
                chunk = self._ssl.read(16384)  # at most one TLS record per read
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLError):
                self._eof = True
                break
            if not chunk:
                self._eof = True
                break
            chunks.append(chunk)
        self._tls_flush_out()
        return b"".join(chunks)

    def _tls_flush_out(self) -> None:
        if self._hold_out or not self._bio_out.pending or self.transport is None:
            return
        if not self.transport.is_closing():
            self.transport.write(self._bio_out.read())

    def get_extra_info(self, name: str) -> object:
        if name == "ssl_object":
            return self._ssl
        return None if self.transport is None else self.transport.get_extra_info(name)

    async def close(self) -> None:
        if self._ssl is not None and not self._broken and not self._lost:
            # The last reply and our close_notify in one send; we do not wait for the peer's.
            data = b"".join(self._out)
            self._out.clear()
            self._hold_out = False
            with contextlib.suppress(ssl.SSLError, ValueError):
                if data:
                    self._ssl.write(data)
                self._ssl.unwrap()
            self._tls_flush_out()
        else:
            with contextlib.suppress(Exception):
                await self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no data from peer in time"))


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidInput(f"listen address must be host:port, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - explicit config value


class Listener:
    """Accepts connections on one address and runs ``session(conn)`` for each, bounded by
    ``max_sessions`` (extra connections get ``busy`` and are closed)."""

    def __init__(
        self,
        listen: str,
        session: Callable[[Connection], Coroutine[Any, Any, None]],
        *,
        max_sessions: int = 1000,
        busy: bytes = b"421 4.3.2 Too many connections, try again later\r\n",
    ) -> None:
        self._host, self._port = parse_listen(listen)
        self._session = session
        self._max = max_sessions
        self._busy = busy
        self._server: asyncio.Server | None = None
        self._conns: set[Connection] = set()

    async def _run(self, conn: Connection) -> None:
        self._conns.add(conn)
        try:
            if len(self._conns) > self._max:
                conn.write(self._busy)
                await conn.close()
                return
            await self._session(conn)
        finally:
            self._conns.discard(conn)

    async def start(self) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self._run), self._host, self._port, reuse_address=True, backlog=512
        )
        out = []
        for sock in self._server.sockets:
            name = sock.getsockname()
            out.append((str(name[0]), int(name[1])))
        return out

    async def stop(self) -> None:
        """Stops accepting, aborts open sessions (their blob writers abort), waits for them."""
        if self._server is not None:
            self._server.close()
        tasks = [c.task for c in list(self._conns) if c.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for c in list(self._conns):
            c.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def session_count(self) -> int:
        return len(self._conns)
