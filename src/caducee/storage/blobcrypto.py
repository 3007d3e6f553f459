"""The encrypted blob format (AES-256-GCM, streamed in segments).

A blob is cut into segments of ``SEGMENT`` plaintext bytes (the last one may be shorter, or
empty for an empty blob). Each blob has a random 16-byte salt; its data key is
``HKDF-SHA256(master key, salt, info="caducee-blob-v1:" + blob_id)``, so nonces never repeat
across blobs. Segment ``i`` is sealed with nonce ``i`` (96-bit big-endian) and associated data
``blob_id || i || last-flag``: a swapped, reordered, truncated or extended blob fails
authentication. Ciphertext of segment ``i`` starts at ``i * (SEGMENT + TAG)``, so a byte range
is read by decrypting only the segments it covers. The master key's id is stored beside each
blob (``BlobRef.key_id``), so keys rotate without rewriting old blobs.
"""

from __future__ import annotations

import secrets
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from caducee.core.errors import StorageError

__all__ = [
    "SALT",
    "SEGMENT",
    "SEGMENT_CT",
    "TAG",
    "BlobCipher",
    "new_blob_id",
    "segment_count",
]

SEGMENT = 64 * 1024
TAG = 16
SEGMENT_CT = SEGMENT + TAG
SALT = 16


def new_blob_id() -> str:
    return secrets.token_hex(16)


def segment_count(size: int) -> int:
    """Number of segments of a blob of ``size`` plaintext bytes (at least one)."""
    return max(1, -(-size // SEGMENT))


class BlobCipher:
    """Seals and opens the segments of one blob."""

    __slots__ = ("_aead", "_blob_id")

    def __init__(self, master_key: bytes, blob_id: str, salt: bytes) -> None:
        kdf = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=salt,
            info=b"caducee-blob-v1:" + blob_id.encode("ascii"),
        )
        self._aead = AESGCM(kdf.derive(master_key))
        self._blob_id = blob_id.encode("ascii")

    @staticmethod
    def new_salt() -> bytes:
        return secrets.token_bytes(SALT)

    def _aad(self, index: int, last: bool) -> bytes:
        return self._blob_id + struct.pack(">QB", index, 1 if last else 0)

    @staticmethod
    def _nonce(index: int) -> bytes:
        return struct.pack(">IQ", 0, index)

    def seal(self, index: int, plaintext: bytes, last: bool) -> bytes:
        if len(plaintext) > SEGMENT or (not last and len(plaintext) != SEGMENT):
            raise ValueError("bad segment length")
        return self._aead.encrypt(self._nonce(index), plaintext, self._aad(index, last))

    def open(self, index: int, ciphertext: bytes, last: bool) -> bytes:
        try:
            return self._aead.decrypt(self._nonce(index), ciphertext, self._aad(index, last))
        except InvalidTag as exc:
            raise StorageError(
                f"blob {self._blob_id.decode()} segment {index} failed authentication "
                "(corrupted, truncated or tampered)"
            ) from exc
