"""A small bounded cache of decrypted message bytes and their MIME structure, shared by the
sessions of one server (FETCH and SEARCH of the same messages by many clients)."""

from __future__ import annotations

from collections import OrderedDict

from caducee.imap.mime import Part, parse_message

__all__ = ["MessageCache"]


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
