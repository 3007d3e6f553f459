"""Encrypted blobs: streaming, ranges, corruption and truncation detection, key rotation, and
nothing in plaintext at rest (files of the data directory, rows of the database)."""

from __future__ import annotations

import asyncio
import base64
import quopri
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from caducee.core.errors import NotFound, StorageError
from caducee.core.model import BlobRef, Mailbox, MailboxType
from caducee.storage.interfaces import Storage
from caducee.storage.keyring import add_key

Opener = Callable[[], Awaitable[Storage]]

SEG = 64 * 1024
MARKER = "Dossier-Médical-Confidentiel-7f3a9c".encode()


def _pattern(n: int) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(n))


async def _write_streamed(storage: Storage, data: bytes, piece: int) -> BlobRef:
    w = storage.blobs.writer()
    for i in range(0, len(data), piece):
        await w.write(data[i : i + piece])
    return await w.commit()


async def test_roundtrip_sizes(storage: Storage) -> None:
    for size in (0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG + 17):
        data = _pattern(size)
        ref = await _write_streamed(storage, data, 10_000)
        assert ref.size == size
        assert await storage.blobs.get(ref) == data, size


async def test_range_reads(storage: Storage) -> None:
    data = _pattern(5 * SEG + 123)
    ref = await storage.blobs.put(data)
    for start, end in [(0, 10), (SEG - 5, SEG + 5), (2 * SEG, 4 * SEG + 1), (5 * SEG, None),
                       (100, 100), (len(data) - 1, len(data) + 50)]:  # fmt: skip
        got = b"".join([c async for c in storage.blobs.stream(ref, start, end)])
        assert got == data[start:end], (start, end)


async def test_abort_discards(storage: Storage) -> None:
    w = storage.blobs.writer()
    await w.write(_pattern(3 * SEG))
    await w.abort()
    await w.abort()  # idempotent
    with pytest.raises(StorageError):
        await w.write(b"more")


async def test_missing_blob(storage: Storage) -> None:
    with pytest.raises(NotFound):
        await storage.blobs.get(BlobRef("0" * 32, "k", 1))


def _tamper(engine: str, request: pytest.FixtureRequest, tmp_path: Path, ref: BlobRef,
            how: str) -> None:  # fmt: skip
    if engine == "sqlite":
        db = sqlite3.connect(tmp_path / "data" / "caducee.db")
        (data, path) = db.execute(
            "SELECT data, path FROM blobs WHERE blob_id = ?", (ref.blob_id,)
        ).fetchone()
        if data is not None:
            raw = bytearray(data)
            if how == "flip":
                raw[len(raw) // 2] ^= 1
            else:
                del raw[-5:]
            db.execute("UPDATE blobs SET data = ? WHERE blob_id = ?", (bytes(raw), ref.blob_id))
            db.commit()
        else:
            file = tmp_path / "data" / "blobs" / path
            raw = bytearray(file.read_bytes())
            if how == "flip":
                raw[SEG + 100] ^= 1
            else:
                del raw[-(SEG + 16) :]  # drop the whole last segment
            file.write_bytes(bytes(raw))
        db.close()
        return
    with psycopg.connect(request.getfixturevalue("pg_dsn"), autocommit=True) as conn:
        if how == "flip":
            conn.execute(
                "UPDATE blob_chunks SET data = set_byte(data, 10, get_byte(data, 10) # 1)"
                " WHERE blob_id = %s AND seq = 1 OR (blob_id = %s AND seq = 0 AND %s < 65536)",
                (ref.blob_id, ref.blob_id, ref.size),
            )
        else:
            conn.execute(
                "DELETE FROM blob_chunks WHERE blob_id = %s AND seq = (SELECT max(seq) FROM"
                " blob_chunks WHERE blob_id = %s)",
                (ref.blob_id, ref.blob_id),
            )


async def test_corruption_is_detected(
    storage: Storage, engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    for how in ("flip", "truncate"):
        for size in (1000, 3 * SEG + 5):
            ref = await storage.blobs.put(_pattern(size))
            _tamper(engine, request, tmp_path, ref, how)
            with pytest.raises(StorageError):
                await storage.blobs.get(ref)


async def test_key_rotation(opener: Opener, keyring: Path) -> None:
    st = await opener()
    old = await st.blobs.put(b"old secret" * 10_000)
    await st.close()
    new_id = add_key(keyring)
    st = await opener()
    try:
        new = await st.blobs.put(b"new secret")
        assert new.key_id == new_id and old.key_id != new_id
        assert await st.blobs.get(old) == b"old secret" * 10_000
        assert await st.blobs.get(new) == b"new secret"
    finally:
        await st.close()
    # A keyring that lost the old key cannot read the old blob, and says so.
    lines = keyring.read_text().splitlines()
    keyring.write_text("\n".join(ln for ln in lines if not ln.startswith(old.key_id)) + "\n")
    st = await opener()
    try:
        with pytest.raises(StorageError):
            await st.blobs.get(old)
        assert await st.blobs.get(new) == b"new secret"
    finally:
        await st.close()


def _forms(marker: bytes) -> list[bytes]:
    """The marker as it would appear stored raw, base64-encoded (any alignment) or QP."""
    forms = [marker, quopri.encodestring(marker).strip(), marker.hex().encode()]
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + marker)
        forms.append(enc[4 if pad else 0 : -4])
    return forms


async def test_nothing_in_plaintext_at_rest(
    opener: Opener, engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    st = await opener()
    mb: Mailbox = await st.accounts.create_mailbox("dr@x.test", MailboxType.PER, "8100")
    small = b"Subject: test\r\n\r\n" + MARKER + b"\r\n"
    large = b"Subject: big\r\n\r\n" + (MARKER + b"\r\n") * 20_000
    b64 = base64.encodebytes(large)
    for body in (small, large, b64, quopri.encodestring(large)):
        ref = await st.blobs.put(body)
        await st.messages.deliver(ref, [mb.mailbox_id], dedup_key="k" + str(len(body)))
    forms = _forms(MARKER)
    if engine == "sqlite":

        def scan() -> list[str]:
            hits = []
            for f in (tmp_path / "data").rglob("*"):
                if f.is_file():
                    raw = f.read_bytes()
                    hits += [f"{f.name}:{form!r}" for form in forms if form in raw]
            return hits

        assert scan() == []  # while open: database, WAL and blob files
        await st.close()
        assert scan() == []
        return
    await st.close()
    with psycopg.connect(request.getfixturevalue("pg_dsn"), autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]  # fmt: skip
        assert "blob_chunks" in tables
        for table in tables:
            for (text,) in conn.execute(
                sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))
            ).fetchall():
                raw = text.encode()
                assert not [f for f in forms if f in raw], table


async def test_orphans_of_an_unfinished_upload_are_collected(storage: Storage) -> None:
    kept = await storage.blobs.put(_pattern(2 * SEG))
    w = storage.blobs.writer()
    await w.write(_pattern(20 * SEG))  # flushed to disk / chunk rows, never committed
    assert await storage.blobs.gc_orphans(datetime.now(UTC) - timedelta(hours=1)) == 0
    assert await storage.blobs.gc_orphans(datetime.now(UTC) + timedelta(seconds=5)) >= 1
    assert await storage.blobs.get(kept) == _pattern(2 * SEG)
    await w.abort()  # the writer of a crashed process would be gone; here it lets go its file


async def test_non_durable_blob_becomes_durable_with_the_delivery(
    opener: Opener, mailbox: Mailbox
) -> None:
    st = await opener()
    try:
        refs = await asyncio.gather(
            *(st.blobs.put(_pattern(n), durable=False) for n in (10, SEG + 10, 3 * SEG))
        )
        for ref in refs:
            await st.messages.deliver(ref, [mailbox.mailbox_id])
    finally:
        await st.close()
    st = await opener()
    try:
        for ref, n in zip(refs, (10, SEG + 10, 3 * SEG), strict=True):
            assert await st.blobs.get(ref) == _pattern(n)
        with pytest.raises(NotFound):  # a reference to a blob that never was: refused
            await st.messages.deliver(BlobRef("f" * 32, refs[0].key_id, 5), [mailbox.mailbox_id])
    finally:
        await st.close()
