"""In-process change fan-out (``ChangeNotifier``) for IMAP IDLE and the webmail.

A subscription registers at once (no event between ``subscribe()`` and the first ``anext`` is
lost) and coalesces: it holds the set of changed folder ids, not a queue, so a slow or idle
client costs a few hundred bytes whatever the traffic. Folder id 0 means "the folder list
changed" (create, rename, delete).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

__all__ = ["LocalNotifier", "Subscription", "Watch"]


class Subscription(AsyncIterator[int]):
    """Yields changed folder ids of one BAL until ``aclose()``."""

    __slots__ = ("_closed", "_event", "_hub", "_mailbox_id", "_pending")

    def __init__(self, hub: LocalNotifier, mailbox_id: int) -> None:
        self._hub = hub
        self._mailbox_id = mailbox_id
        self._pending: dict[int, None] = {}
        self._event = asyncio.Event()
        self._closed = False
        hub._subs.setdefault(mailbox_id, set()).add(self)

    def _push(self, folder_id: int) -> None:
        self._pending[folder_id] = None
        self._event.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> int:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            self._event.clear()
            await self._event.wait()
        folder_id = next(iter(self._pending))
        del self._pending[folder_id]
        return folder_id

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            subs = self._hub._subs.get(self._mailbox_id)
            if subs is not None:
                subs.discard(self)
                if not subs:
                    del self._hub._subs[self._mailbox_id]
            self._event.set()


class Watch:
    """A callback registration (``LocalNotifier.watch``): no task, no queue; ``close()``."""

    __slots__ = ("_callback", "_hub", "_mailbox_id")

    def __init__(self, hub: LocalNotifier, mailbox_id: int, callback: Callable[[int], None]):
        self._hub = hub
        self._mailbox_id = mailbox_id
        self._callback = callback
        hub._subs.setdefault(mailbox_id, set()).add(self)

    def _push(self, folder_id: int) -> None:
        self._callback(folder_id)

    def close(self) -> None:
        subs = self._hub._subs.get(self._mailbox_id)
        if subs is not None:
            subs.discard(self)
            if not subs:
                del self._hub._subs[self._mailbox_id]


class LocalNotifier:
    """Fan-out within one process (the SQLite engine; the PostgreSQL one adds LISTEN/NOTIFY)."""

    def __init__(self) -> None:
        self._subs: dict[int, set[Subscription | Watch]] = {}

    def fan_out(self, mailbox_id: int, folder_id: int) -> None:
        for sub in list(self._subs.get(mailbox_id, ())):
            sub._push(folder_id)

    def watch(self, mailbox_id: int, callback: Callable[[int], None]) -> Watch:
        """Calls ``callback(folder_id)`` on the event loop, synchronously within the
        publisher's fan-out, for every change of the BAL until ``close()``: what an IMAP
        session needs to mark itself dirty, for the cost of a set entry (no task per
        session, no wake-up of one when the change is its own)."""
        return Watch(self, mailbox_id, callback)

    async def publish(self, mailbox_id: int, folder_id: int) -> None:
        self.fan_out(mailbox_id, folder_id)

    def subscribe(self, mailbox_id: int) -> Subscription:
        return Subscription(self, mailbox_id)

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())
