"""Encrypted blobs on PostgreSQL: one ``blob_chunks`` row per encrypted segment.

Stateless nodes share blobs through the database. A large blob streams in: its chunk rows are
written in batches as segments fill, each batch in a short transaction of its own (no
connection is held while a client is still sending); the ``blobs`` row that makes the blob
exist is inserted, with the last chunks, in the final transaction of ``commit``. Chunks
without a ``blobs`` row (an aborted or crashed upload) are unreachable and removed by
``gc_orphans``. Range reads fetch only the chunk rows covering the range.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial

from caducee.core.errors import NotFound, StorageError
from caducee.core.model import BlobRef
from caducee.storage.blobbase import BlobStoreBase
from caducee.storage.blobcrypto import (
    SEGMENT,
    SEGMENT_CT,
    BlobCipher,
    new_blob_id,
    segment_count,
)
from caducee.storage.keyring import Keyring
from caducee.storage.postgres.runner import PgRunner
from caducee.storage.sql.base import Op, Q, now_us, to_us
from caducee.storage.sql.messages import gc_blobs

__all__ = ["PgBlobStore"]

_BATCH_SEGMENTS = 16


def _chunks(blob_id: str, rows: list[tuple[int, bytes]], created: int) -> Op[None]:
    if rows:
        yield Q(
            "INSERT INTO blob_chunks (blob_id, seq, data, created) VALUES (?, ?, ?, ?)",
            [(blob_id, seq, data, created) for seq, data in rows],
            many=True,
        )


def _commit(
    blob_id: str,
    key_id: str,
    size: int,
    salt: bytes,
    rows: list[tuple[int, bytes]],
    created: int,
    durable: bool,
) -> Op[None]:
    if not durable:
        # The commit does not wait for its WAL flush; the caller's next durable transaction
        # flushes the WAL past it (the log is sequential), making the blob durable with it.
        yield Q("SET LOCAL synchronous_commit = off")
    # One statement: a small message's blob costs one round trip.
    yield Q(
        "WITH b AS (INSERT INTO blobs (blob_id, key_id, size, salt, created)"
        " VALUES (?, ?, ?, ?, ?)) INSERT INTO blob_chunks (blob_id, seq, data, created)"
        " SELECT ?, u.s, u.d, ? FROM unnest(?::bigint[], ?::bytea[]) AS u(s, d)",
        (blob_id, key_id, size, salt, created, blob_id, created,
         [seq for seq, _ in rows], [data for _, data in rows]),
        only=durable,
    )  # fmt: skip


def _delete_chunks(blob_ids: list[str]) -> Op[None]:
    for b in blob_ids:
        yield Q("DELETE FROM blob_chunks WHERE blob_id = ?", (b,))


def _delete(blob_id: str) -> Op[list[str]]:
    freed = yield from gc_blobs([blob_id])
    yield from _delete_chunks(freed)
    return freed


def _meta_and_chunks(
    blob_id: str, lo: int, hi: int
) -> Op[tuple[str, int, bytes, list[tuple[int, bytes]]] | None]:
    """The blob's row and its first chunks in one round trip (a small message: everything)."""
    rows = yield Q(
        "SELECT b.key_id, b.size, b.salt, c.seq, c.data FROM blobs b LEFT JOIN blob_chunks c"
        " ON c.blob_id = b.blob_id AND c.seq >= ? AND c.seq <= ? WHERE b.blob_id = ?"
        " ORDER BY c.seq",
        (lo, hi, blob_id),
        only=True,
    )
    if not rows:
        return None
    chunks = [(int(r[3]), bytes(r[4])) for r in rows if r[3] is not None]
    return rows[0][0], int(rows[0][1]), bytes(rows[0][2]), chunks


def _read(blob_id: str, first: int, last: int) -> Op[list[tuple[int, bytes]]]:
    rows = yield Q(
        "SELECT seq, data FROM blob_chunks WHERE blob_id = ? AND seq >= ? AND seq <= ?"
        " ORDER BY seq",
        (blob_id, first, last),
        only=True,
    )
    return [(int(r[0]), bytes(r[1])) for r in rows]


def _orphans(before: int) -> Op[int]:
    rows = yield Q(
        "DELETE FROM blob_chunks c WHERE c.created < ? AND NOT EXISTS"
        " (SELECT 1 FROM blobs b WHERE b.blob_id = c.blob_id) RETURNING 1",
        (before,),
        only=True,
    )
    return len(rows)


class _Writer:
    def __init__(self, store: PgBlobStore) -> None:
        self._store = store
        self._blob_id = new_blob_id()
        self._key_id = store.keyring.active
        self._salt = BlobCipher.new_salt()
        self._cipher = BlobCipher(store.keyring.active_key, self._blob_id, self._salt)
        self._plain = bytearray()
        self._index = 0
        self._size = 0
        self._rows: list[tuple[int, bytes]] = []
        self._created = now_us()
        self._wrote_chunks = False
        self._done = False

    async def write(self, chunk: bytes) -> None:
        if self._done:
            raise StorageError("blob writer already committed or aborted")
        self._plain += chunk
        self._size += len(chunk)
        while len(self._plain) > SEGMENT:
            seg = bytes(self._plain[:SEGMENT])
            del self._plain[:SEGMENT]
            self._rows.append((self._index, self._cipher.seal(self._index, seg, last=False)))
            self._index += 1
        if len(self._rows) >= _BATCH_SEGMENTS:
            rows, self._rows = self._rows, []
            self._wrote_chunks = True
            await self._store.runner.write(lambda: _chunks(self._blob_id, rows, self._created))

    async def commit(self, *, durable: bool = True) -> BlobRef:
        if self._done:
            raise StorageError("blob writer already committed or aborted")
        self._done = True
        last = self._cipher.seal(self._index, bytes(self._plain), last=True)
        self._plain.clear()
        rows, self._rows = [*self._rows, (self._index, last)], []
        args = (self._blob_id, self._key_id, self._size, self._salt, rows, self._created, durable)
        try:
            await self._store.runner.write(lambda: _commit(*args))
        except BaseException:
            await self._cleanup()
            raise
        return BlobRef(self._blob_id, self._key_id, self._size)

    async def _cleanup(self) -> None:
        if self._wrote_chunks:
            await self._store.runner.write(lambda: _delete_chunks([self._blob_id]))

    async def abort(self) -> None:
        if self._done and not self._rows and not self._wrote_chunks:
            return
        self._done = True
        self._plain.clear()
        self._rows = []
        await self._cleanup()
        self._wrote_chunks = False


class PgBlobStore(BlobStoreBase):
    put_chunk = SEGMENT * _BATCH_SEGMENTS

    def __init__(self, runner: PgRunner, keyring: Keyring) -> None:
        self.runner = runner
        self.keyring = keyring

    def writer(self) -> _Writer:
        return _Writer(self)

    async def stream(
        self, ref: BlobRef, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        start = max(0, start)
        lo = start // SEGMENT
        hi = lo + _BATCH_SEGMENTS - 1
        found = await self.runner.read(partial(_meta_and_chunks, ref.blob_id, lo, hi))
        if found is None:
            raise NotFound("blob not found")
        key_id, size, salt, rows = found
        cipher = BlobCipher(self._key(key_id), ref.blob_id, salt)
        end = size if end is None else min(end, size)
        if start >= end and size > 0:
            return
        nseg = segment_count(size)
        last_seg = max(0, end - 1) // SEGMENT
        while lo <= last_seg:
            hi = min(last_seg, hi)
            rows = [(seq, ct) for seq, ct in rows if seq <= hi]
            if [seq for seq, _ in rows] != list(range(lo, hi + 1)):
                raise StorageError(f"blob {ref.blob_id}: segments missing (truncated?)")
            for seq, ct in rows:
                expected = SEGMENT_CT if seq < nseg - 1 else size - seq * SEGMENT + 16
                if len(ct) != expected:
                    raise StorageError(f"blob {ref.blob_id}: segment {seq} has the wrong length")
                plain = cipher.open(seq, ct, last=seq == nseg - 1)
                base = seq * SEGMENT
                yield plain[max(0, start - base) : min(len(plain), end - base)]
            lo, hi = hi + 1, hi + _BATCH_SEGMENTS
            if lo <= last_seg:
                rows = await self.runner.read(partial(_read, ref.blob_id, lo, min(hi, last_seg)))

    async def delete(self, ref: BlobRef) -> None:
        """Deletes the blob unless a message or a queue item still references it."""
        await self.runner.write(lambda: _delete(ref.blob_id))

    async def remove_chunks(self, blob_ids: list[str]) -> None:
        """Removes the chunks of blobs whose rows were deleted by a message operation."""
        if blob_ids:
            await self.runner.write(lambda: _delete_chunks(blob_ids))

    async def gc_orphans(self, older_than: datetime) -> int:
        """Removes chunks of uploads that never committed; how many."""
        before = to_us(older_than.astimezone(UTC))
        return await self.runner.write(lambda: _orphans(before))
