"""A progress bar for long imports and generation, on stderr (only when asked or on a tty)."""

from __future__ import annotations

import sys
import time
from typing import IO

__all__ = ["Progress"]


class Progress:
    """``Progress(total, label)``; call :meth:`update` with the amount done, :meth:`close` at
    the end. Silent when disabled; redraws at most five times a second."""

    def __init__(self, total: int, label: str, *, enabled: bool, stream: IO[str] | None = None):
        self.total = max(total, 1)
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self._last = 0.0
        self.done = 0

    @staticmethod
    def wanted(flag: bool) -> bool:
        return flag or sys.stderr.isatty()

    def update(self, done: int, extra: str = "") -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2 and done < self.total:
            return
        self._last = now
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        self.stream.write(
            f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}% {now - self.start:6.1f}s {extra}"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.update(self.total)
            self.stream.write("\n")
            self.stream.flush()
