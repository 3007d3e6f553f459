"""Encrypted blobs on SQLite: small ones inline in the database, large ones in files.

A blob of at most one segment (64 KiB) is stored encrypted in its ``blobs`` row, so a small
message costs no file and no extra fsync. A larger one streams, segment by segment, into a
temporary file under ``data_dir/blobs/tmp``; on commit the file is fsynced, renamed into
``data_dir/blobs/<2 hex>/<blob id>`` and its directory fsynced BEFORE the row that names it is
committed, so a committed blob always has its bytes. Format: ``caducee.storage.blobcrypto``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from caducee.core.errors import NotFound, StorageError
from caducee.core.model import BlobRef
from caducee.storage.blobbase import BlobStoreBase
from caducee.storage.blobcrypto import (
    SEGMENT,
    SEGMENT_CT,
    TAG,
    BlobCipher,
    new_blob_id,
    segment_count,
)
from caducee.storage.keyring import Keyring
from caducee.storage.sql.base import Op, Q, now_us
from caducee.storage.sql.messages import gc_blobs
from caducee.storage.sqlite.runner import SqliteRunner

__all__ = ["SqliteBlobStore", "ciphertext_length"]

_FLUSH = 1024 * 1024


def ciphertext_length(size: int) -> int:
    return size + segment_count(size) * TAG


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _insert(
    blob_id: str, key_id: str, size: int, salt: bytes, data: bytes | None, path: str | None
) -> Op[None]:
    yield Q(
        "INSERT INTO blobs (blob_id, key_id, size, salt, data, path, created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (blob_id, key_id, size, salt, data, path, now_us()),
    )


def _meta(blob_id: str) -> Op[tuple[str, int, bytes, bytes | None, str | None] | None]:
    rows = yield Q("SELECT key_id, size, salt, data, path FROM blobs WHERE blob_id = ?", (blob_id,))
    if not rows:
        return None
    r = rows[0]
    return r[0], int(r[1]), bytes(r[2]), None if r[3] is None else bytes(r[3]), r[4]


def _existing(names: list[str]) -> Op[set[str]]:
    ids = [n for n in names if not n.endswith(".part")]
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        rows = yield Q(
            f"SELECT blob_id FROM blobs WHERE blob_id IN ({','.join('?' * len(part))})", part
        )
        found.update(r[0] for r in rows)
    return found


class _Writer:
    """``BlobWriter``: encrypts as it goes; at most one segment of plaintext in memory."""

    def __init__(self, store: SqliteBlobStore) -> None:
        self._store = store
        self._blob_id = new_blob_id()
        self._key_id = store.keyring.active
        self._salt = BlobCipher.new_salt()
        self._cipher = BlobCipher(store.keyring.active_key, self._blob_id, self._salt)
        self._plain = bytearray()
        self._index = 0
        self._size = 0
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._file: BinaryIO | None = None
        self._tmp: Path | None = None
        self._done = False

    async def write(self, chunk: bytes) -> None:
        if self._done:
            raise StorageError("blob writer already committed or aborted")
        self._plain += chunk
        self._size += len(chunk)
        while len(self._plain) > SEGMENT:
            seg = bytes(self._plain[:SEGMENT])
            del self._plain[:SEGMENT]
            self._pending.append(self._cipher.seal(self._index, seg, last=False))
            self._pending_len += SEGMENT_CT
            self._index += 1
        if self._pending_len >= _FLUSH:
            await asyncio.to_thread(self._flush)

    def _flush(self) -> None:
        if self._file is None:
            self._tmp = self._store.tmp_dir / f"{self._blob_id}.part"
            self._file = self._tmp.open("xb")
        self._file.write(b"".join(self._pending))
        self._pending.clear()
        self._pending_len = 0

    def _finish_file(self) -> str:
        self._flush()
        assert self._file is not None and self._tmp is not None  # noqa: S101
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        rel = f"{self._blob_id[:2]}/{self._blob_id}"
        final = self._store.blob_dir / rel
        final.parent.mkdir(exist_ok=True)
        self._tmp.rename(final)
        _fsync_dir(final.parent)
        self._tmp = None
        return rel

    async def commit(self, *, durable: bool = True) -> BlobRef:
        if self._done:
            raise StorageError("blob writer already committed or aborted")
        self._done = True
        try:
            last = self._cipher.seal(self._index, bytes(self._plain), last=True)
            self._plain.clear()
            if self._index == 0:
                data: bytes | None = last
                rel: str | None = None
            else:
                self._pending.append(last)
                data = None
                rel = await asyncio.to_thread(self._finish_file)
            args = (self._blob_id, self._key_id, self._size, self._salt, data, rel)
            if durable:
                await self._store.runner.write(lambda: _insert(*args))
            else:
                # Queued before any later write of the caller, so committed in the same batch
                # or an earlier one: the later write's durability covers it.
                self._store.runner.write_nowait(lambda: _insert(*args))
        except BaseException:
            await asyncio.to_thread(self._discard)
            raise
        return BlobRef(self._blob_id, self._key_id, self._size)

    def _discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    async def abort(self) -> None:
        self._done = True
        self._plain.clear()
        self._pending.clear()
        await asyncio.to_thread(self._discard)


class SqliteBlobStore(BlobStoreBase):
    put_chunk = SEGMENT

    """``BlobStore`` for the SQLite engine."""

    def __init__(self, runner: SqliteRunner, keyring: Keyring, data_dir: Path) -> None:
        self.runner = runner
        self.keyring = keyring
        self.blob_dir = data_dir / "blobs"
        self.tmp_dir = self.blob_dir / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def writer(self) -> _Writer:
        return _Writer(self)

    async def stream(
        self, ref: BlobRef, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        meta = await self.runner.read(lambda: _meta(ref.blob_id))
        if meta is None:
            raise NotFound("blob not found")
        key_id, size, salt, data, rel = meta
        cipher = BlobCipher(self._key(key_id), ref.blob_id, salt)
        end = size if end is None else min(end, size)
        start = max(0, start)
        if start >= end and size > 0:
            return
        nseg = segment_count(size)
        expected = ciphertext_length(size)
        first, last_seg = start // SEGMENT, max(0, (end - 1)) // SEGMENT
        if data is not None:
            if len(data) != expected:
                raise StorageError(f"blob {ref.blob_id} has the wrong length (truncated?)")
            for i in range(first, last_seg + 1):
                ct = data[i * SEGMENT_CT : min((i + 1) * SEGMENT_CT, expected)]
                plain = cipher.open(i, ct, last=i == nseg - 1)
                yield _slice(plain, i, start, end)
            return
        if rel is None:
            raise StorageError(f"blob {ref.blob_id} has neither data nor file")
        path = self.blob_dir / rel
        fh = await asyncio.to_thread(_open_checked, path, expected, ref.blob_id)
        try:
            i = first
            while i <= last_seg:
                count = min(16, last_seg - i + 1)
                raw = await asyncio.to_thread(_read_at, fh, i * SEGMENT_CT, count * SEGMENT_CT)
                for j in range(count):
                    ct = raw[j * SEGMENT_CT : (j + 1) * SEGMENT_CT]
                    plain = cipher.open(i + j, ct, last=i + j == nseg - 1)
                    yield _slice(plain, i + j, start, end)
                i += count
        finally:
            fh.close()

    async def delete(self, ref: BlobRef) -> None:
        """Deletes the blob unless a message or a queue item still references it."""
        freed = await self.runner.write(lambda: gc_blobs([ref.blob_id]))
        await self.remove_files(freed)

    async def remove_files(self, blob_ids: list[str]) -> None:
        """Unlinks the files of blobs whose rows were deleted (inline ones have none). A few
        are unlinked at once (a missing file costs one failed system call: an EXPUNGE of small
        messages need not hop to a thread for that); many go to a thread."""
        if len(blob_ids) <= 8:
            self._unlink(blob_ids)
        else:
            await asyncio.to_thread(self._unlink, blob_ids)

    async def gc_orphans(self, older_than: datetime) -> int:
        """Removes blob files no row names (a crash between rename and commit, or an upload
        that never committed) last modified before ``older_than``; how many."""
        cutoff = older_than.timestamp()
        candidates = await asyncio.to_thread(self._old_files, cutoff)
        if not candidates:
            return 0
        known = await self.runner.read(lambda: _existing([c.name for c in candidates]))
        orphans = [c for c in candidates if c.name not in known]
        await asyncio.to_thread(_unlink_all, orphans)
        return len(orphans)

    def _old_files(self, cutoff: float) -> list[Path]:
        out: list[Path] = []
        for sub in self.blob_dir.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if f.is_file() and f.stat().st_mtime < cutoff:
                    out.append(f)
        return out

    def _unlink(self, blob_ids: list[str]) -> None:
        for b in blob_ids:
            (self.blob_dir / b[:2] / b).unlink(missing_ok=True)


def _unlink_all(paths: list[Path]) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _slice(plain: bytes, index: int, start: int, end: int) -> bytes:
    base = index * SEGMENT
    lo = max(0, start - base)
    hi = min(len(plain), end - base)
    return plain[lo:hi] if (lo, hi) != (0, len(plain)) else plain


def _open_checked(path: Path, expected: int, blob_id: str) -> BinaryIO:
    try:
        fh = path.open("rb")
    except FileNotFoundError as exc:
        raise StorageError(f"blob {blob_id}: file missing") from exc
    if os.fstat(fh.fileno()).st_size != expected:
        fh.close()
        raise StorageError(f"blob {blob_id} has the wrong length (truncated?)")
    return fh


def _read_at(fh: BinaryIO, offset: int, length: int) -> bytes:
    return os.pread(fh.fileno(), length, offset)
