"""A small bounded cache of decrypted message bytes and their MIME structure, shared by the
sessions of one server (FETCH and SEARCH of the same messages by many clients)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

from caducee.imap.mime import Part, parse_message

__all__ = ["MessageCache", "SharedReads"]

T = TypeVar("T")


class MessageCache:
    """LRU by blob id, bounded in total bytes; messages above ``max_item`` are not kept."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024, max_item: int = 2 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.max_item = max_item
        self._items: OrderedDict[str, tuple[bytes, Part | None]] = OrderedDict()
        self._size = 0

    def get(self, blob_id: str) -> tuple[bytes, Part | None] | None:
        item = self._items.get(blob_id)
        if item is not None:
            self._items.move_to_end(blob_id)
        return item

    def put(self, blob_id: str, data: bytes, root: Part | None = None) -> None:
        if len(data) > self.max_item:
            return
        old = self._items.pop(blob_id, None)
        if old is not None:
            self._size -= len(old[0])
        self._items[blob_id] = (data, root)
        self._size += len(data)
        while self._size > self.max_bytes and self._items:
            _, (evicted, _r) = self._items.popitem(last=False)
            self._size -= len(evicted)

    def structure(self, blob_id: str, data: bytes) -> Part:
        item = self._items.get(blob_id)
        if item is not None and item[1] is not None:
            return item[1]
        root = parse_message(data)
        if item is not None:
            self._items[blob_id] = (item[0], root)
        return root


class SharedReads:
    """Single-flight reads of folder state, shared by the sessions of one server: when a
    delivery wakes hundreds of IDLE sessions of one BAL, they share one read of the folder
    and of its changes instead of each doing its own.

    A session may only join a read that *started after* the change it was told about (the
    store commits before it notifies), so it never gets a state older than that change:
    ``mark()`` numbers both the notifications a session receives and the reads started.
    """

    def __init__(self) -> None:
        self._seq = 0
        self._inflight: dict[Hashable, tuple[int, asyncio.Future[Any]]] = {}

    def mark(self) -> int:
        self._seq += 1
        return self._seq

    async def read(self, key: Hashable, after: int, factory: Callable[[], Awaitable[T]]) -> T:
        entry = self._inflight.get(key)
        if entry is not None and entry[0] > after:
            return cast(T, await asyncio.shield(entry[1]))
        start = self.mark()
        fut: asyncio.Future[T] = asyncio.ensure_future(factory())
        self._inflight[key] = (start, fut)
        fut.add_done_callback(lambda _f: self._drop(key, fut))
        return await asyncio.shield(fut)

    def _drop(self, key: Hashable, fut: asyncio.Future[Any]) -> None:
        entry = self._inflight.get(key)
        if entry is not None and entry[1] is fut:
            del self._inflight[key]
