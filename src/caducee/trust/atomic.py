"""Atomic file replacement for the trust files (liste blanche, CRLs, CA material).

A reader (an operator reloading its list, a web server serving a CRL) sees the old file or the
new one, never a partial one: the data goes to a temporary file in the same directory, is
flushed to disk, then renamed over the target (rename is atomic within one file system).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replaces ``path`` with ``data`` atomically, with permissions ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
