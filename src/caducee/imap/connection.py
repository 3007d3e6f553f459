"""A lean asyncio connection: plain TCP or TLS driven through ``ssl.MemoryBIO``.

asyncio's own TLS transport keeps large per-connection buffers (about 285 KB per idle TLS
connection here); driving ``SSLObject`` over memory BIOs ourselves keeps an idle session at a
few tens of KB, which is what lets one node hold 10,000 IDLE sessions. STARTTLS is a switch
of mode on the same object (RFC 9051 §6.2.1: bytes received before the handshake are dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import cast

__all__ = ["Connection", "ConnectionClosed"]

_READ_CHUNK = 16384
_MAX_BACKLOG = 1024 * 1024  # received but unread octets before we stop reading the socket


class ConnectionClosed(Exception):
    """The peer went away (EOF, reset, TLS failure)."""


class Connection(asyncio.Protocol):
    __slots__ = (
        "_closed",
        "_drain_waiter",
        "_eof",
        "_incoming",
        "_interrupted",
        "_outgoing",
        "_paused",
        "_plain",
        "_read_waiter",
        "_sslobj",
        "on_connect",
        "on_lost",
        "peer",
        "transport",
    )

    def __init__(self, on_connect: object) -> None:
        self.on_connect = on_connect
        self.on_lost: object = None
        self.transport: asyncio.Transport | None = None
        self.peer: str = ""
        self._plain = bytearray()  # plaintext received (or raw ciphertext before TLS read)
        self._sslobj: ssl.SSLObject | None = None
        self._incoming: ssl.MemoryBIO | None = None
        self._outgoing: ssl.MemoryBIO | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._eof = False
        self._closed = False
        self._interrupted = False

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving from it
        if not isinstance(transport, asyncio.Transport) and not hasattr(transport, "write"):
            raise TypeError("stream transport expected")
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        callback = self.on_connect
        if callable(callback):
            callback(self)

    def data_received(self, data: bytes) -> None:
        if self._incoming is not None:
            self._incoming.write(data)
            backlog = self._incoming.pending
        else:
            self._plain += data
            backlog = len(self._plain)
        if backlog > _MAX_BACKLOG and self.transport is not None:
            self.transport.pause_reading()  # the session reads again when it has caught up
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        if self._incoming is not None:
            self._incoming.write_eof()
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        callback = self.on_lost
        if callable(callback):
            callback(self)
        self._closed = True
        self._eof = True
        self._wake()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- API used by the session ---------------------------------------------------------
    @property
    def is_tls(self) -> bool:
        return self._sslobj is not None

    @property
    def closed(self) -> bool:
        return self._closed

    async def _wait_data(self) -> None:
        if self._closed:
            raise ConnectionClosed
        loop = asyncio.get_running_loop()
        self._read_waiter = loop.create_future()
        try:
            await self._read_waiter
        finally:
            self._read_waiter = None

    def interrupt(self) -> None:
        """Makes a pending ``read(interruptible=True)`` return None (IDLE notifications)."""
        self._interrupted = True
        self._wake()

    async def read(self, *, interruptible: bool = False) -> bytes | None:
        """Some plaintext bytes; b"" at end of stream; None when interrupted."""
        while True:
            if interruptible and self._interrupted:
                self._interrupted = False
                return None
            if self._sslobj is None:
                if self._plain:
                    data = bytes(self._plain)
                    self._plain.clear()
                    self._resume()
                    return data
                if self._eof:
                    return b""
            else:
                try:
                    data = self._sslobj.read(_READ_CHUNK)
                    self._flush_tls()
                    if self._incoming is not None and self._incoming.pending < _MAX_BACKLOG:
                        self._resume()
                    return data
                except ssl.SSLWantReadError:
                    self._flush_tls()
                    if self._eof:
                        return b""
                except ssl.SSLZeroReturnError:
                    return b""
                except (ssl.SSLError, OSError):
                    return b""
            await self._wait_data()

    def _resume(self) -> None:
        transport = self.transport
        if transport is not None and not self._closed and not transport.is_reading():
            transport.resume_reading()

    def has_buffered(self) -> bool:
        if self._sslobj is None:
            return bool(self._plain)
        return self._sslobj.pending() > 0 or (
            self._incoming is not None and self._incoming.pending > 0
        )

    def write(self, data: bytes) -> None:
        if self._closed or self.transport is None:
            return
        if self._sslobj is None:
            self.transport.write(data)
            return
        view = memoryview(data)
        while view:
            try:
                n = self._sslobj.write(view[:65536])
            except ssl.SSLError:
                self.abort()
                return
            view = view[n:]
            self._flush_tls()

    def _flush_tls(self) -> None:
        out = self._outgoing
        if out is not None and out.pending and self.transport is not None and not self._closed:
            self.transport.write(out.read())

    async def drain(self) -> None:
        if self._closed:
            raise ConnectionClosed
        if not self._paused:
            return
        loop = asyncio.get_running_loop()
        self._drain_waiter = loop.create_future()
        try:
            await self._drain_waiter
        finally:
            self._drain_waiter = None
        if self._closed:
            raise ConnectionClosed

    async def start_tls(self, context: ssl.SSLContext, limit: float = 30.0) -> None:
        """Server-side handshake; plaintext received before is dropped (no injection)."""
        self._plain.clear()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._sslobj = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        try:
            async with asyncio.timeout(limit):
                while True:
                    try:
                        self._sslobj.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        self._flush_tls()
                        if self._eof:
                            raise ConnectionClosed from None
                        await self._wait_data()
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self._flush_tls()
            self.abort()
            raise ConnectionClosed from exc
        self._flush_tls()

    def peer_certificate(self) -> bytes | None:
        if self._sslobj is None:
            return None
        return self._sslobj.getpeercert(binary_form=True)

    def close(self) -> None:
        if self._closed or self.transport is None:
            return
        if self._sslobj is not None:
            with contextlib.suppress(ssl.SSLError, ValueError):
                self._sslobj.unwrap()
            self._flush_tls()
        self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._closed = True
