"""What both engines' blob stores share: key lookup, whole-blob ``put`` and ``get`` built on
each engine's streaming ``writer`` and ``stream``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from caducee.core.errors import ConfigError, StorageError
from caducee.core.model import BlobRef
from caducee.storage.blobcrypto import SEGMENT
from caducee.storage.interfaces import BlobWriter
from caducee.storage.keyring import Keyring

__all__ = ["BlobStoreBase"]


class BlobStoreBase:
    """Subclasses provide ``writer()`` and ``stream()``; ``put_chunk`` is how much plaintext
    ``put`` hands the writer at a time."""

    keyring: Keyring
    put_chunk: int = SEGMENT

    def writer(self) -> BlobWriter:
        raise NotImplementedError

    def stream(self, ref: BlobRef, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        raise NotImplementedError

    def _key(self, key_id: str) -> bytes:
        try:
            return self.keyring.key(key_id)
        except ConfigError as exc:
            raise StorageError(f"blob key {key_id!r} is not in the keyring") from exc

    async def put(self, data: bytes, *, durable: bool = True) -> BlobRef:
        w = self.writer()
        view = memoryview(data)
        for start in range(0, len(data), self.put_chunk):
            await w.write(bytes(view[start : start + self.put_chunk]))
        return await w.commit(durable=durable)

    async def get(self, ref: BlobRef) -> bytes:
        return b"".join([part async for part in self.stream(ref)])
