"""uvicorn embedded in our own event loop, on a socket we bind ourselves.

The webmail and the identity provider run inside a process that owns the signals and the
loop (an operator node, the sandbox): :class:`EmbeddedHttp` binds first (so ``port=0`` gives
the real port before the app, whose URLs depend on it, is built), then serves an ASGI app on
that socket until :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn

__all__ = ["EmbeddedHttp"]


class _NoSignals(uvicorn.Server):
    """uvicorn without its signal handlers: the embedding process owns them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class EmbeddedHttp:
    """One listening socket and the uvicorn server on it."""

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        bound_host, bound_port = sock.getsockname()[:2]
        self.host, self.port = str(bound_host), int(bound_port)
        self.base_url = (
            f"https://{self.host}:{self.port}"
            if family == socket.AF_INET
            else f"https://[{self.host}]:{self.port}"
        )
        self._server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None

    async def serve(self, config: uvicorn.Config) -> None:
        """Starts serving ``config``'s app; returns once uvicorn is accepting connections."""
        self._server = _NoSignals(config)
        self.task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Asks uvicorn to finish (up to 10 s for open requests) and closes the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self.task, timeout=10)
            self.task = None
        self._sock.close()
