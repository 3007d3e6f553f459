"""The data-key ring: which AES-256 keys encrypt blobs, and which one encrypts new ones.

File format (``crypto.keyring_file``): one ``key_id:base64(32 bytes)`` per line, ``#`` comments
allowed; the LAST key encrypts new blobs, every key still decrypts (rotation without rewrite).
The file is created with mode 0600 and never logged.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from caducee.core.errors import ConfigError

__all__ = ["KEY_BYTES", "Keyring", "add_key", "create_keyring", "load_keyring"]

KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class Keyring:
    """Loaded keys by id; ``active`` encrypts new blobs."""

    keys: dict[str, bytes]
    active: str

    def key(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            msg = f"keyring: no key with id {key_id!r} (was the keyring replaced?)"
            raise ConfigError([msg]) from None

    @property
    def active_key(self) -> bytes:
        return self.keys[self.active]

    def __repr__(self) -> str:  # never show key material
        return f"Keyring(active={self.active!r}, ids={sorted(self.keys)!r})"


def _new_key_id() -> str:
    return f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"


def _line(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode('ascii')}\n"


def create_keyring(path: Path) -> None:
    """Writes a new key ring with one fresh key (mode 0600). Refuses to overwrite a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError([f"{path}: keyring already exists"]) from exc
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write("# Caducee blob keys: key_id:base64(32 bytes); the last line encrypts.\n")
        fh.write(_line(_new_key_id()))
        fh.flush()
        os.fsync(fh.fileno())


def add_key(path: Path) -> str:
    """Appends a fresh key that becomes the active one (rotation); returns its id."""
    ring = load_keyring(path)
    key_id = _new_key_id()
    while key_id in ring.keys:
        key_id = _new_key_id()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    with os.fdopen(fd, "a", encoding="ascii") as fh:
        fh.write(_line(key_id))
        fh.flush()
        os.fsync(fh.fileno())
    return key_id


def load_keyring(path: Path) -> Keyring:
    """Parses the key ring; every problem is reported with its line number."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError as exc:
        raise ConfigError([f"{path}: keyring file not found"]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read keyring: {type(exc).__name__}"]) from exc
    keys: dict[str, bytes] = {}
    active = ""
    problems: list[str] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key_id, sep, b64 = line.partition(":")
        key_id = key_id.strip()
        if not sep or not key_id or any(c in key_id for c in " \t:"):
            problems.append(f"{path}:{n}: expected key_id:base64")
            continue
        try:
            key = base64.b64decode(b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"{path}:{n}: key {key_id!r} is not valid base64")
            continue
        if len(key) != KEY_BYTES:
            problems.append(f"{path}:{n}: key {key_id!r} must be {KEY_BYTES} bytes")
            continue
        if key_id in keys:
            problems.append(f"{path}:{n}: duplicate key id {key_id!r}")
            continue
        keys[key_id] = key
        active = key_id
    if not keys and not problems:
        problems.append(f"{path}: keyring holds no key")
    if problems:
        raise ConfigError(problems)
    return Keyring(keys, active)
