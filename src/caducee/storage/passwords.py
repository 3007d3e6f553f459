"""Password hashing (scrypt, RFC 7914) checked off the event loop, with a bounded cache.

Hashes are ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``. Verifying costs ~50 ms of CPU by
design, so it runs in a worker thread, and a bounded LRU of recent successes makes repeated
logins (IMAP clients reconnect often) cheap. The cache key is an HMAC, under a per-process
random secret, of the login, the stored hash and the password: the password itself is never
kept, and a password change anywhere (another node too) changes the stored hash, so stale
entries can never match.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict

__all__ = ["PasswordHasher", "hash_password", "verify_password_hash"]

_LOG2_N = 14
_R = 8
_P = 1
_DKLEN = 32


def hash_password(password: str, *, log2_n: int = _LOG2_N) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=1 << log2_n, r=_R, p=_P, dklen=_DKLEN
    )
    b64 = base64.b64encode
    return f"scrypt${log2_n}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password_hash(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a stored scrypt hash."""
    try:
        scheme, log2_n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(hash_b64)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=1 << int(log2_n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


class PasswordHasher:
    """Verification with a bounded LRU cache of recent successes (thread-safe)."""

    def __init__(self, cache_size: int = 4096, *, log2_n: int = _LOG2_N) -> None:
        self._secret = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._size = cache_size
        self._lock = threading.Lock()
        self.log2_n = log2_n

    def hash(self, password: str) -> str:
        return hash_password(password, log2_n=self.log2_n)

    def cache_key(self, login: str, stored: str, password: str) -> bytes:
        """HMAC of the triple under a per-process secret (the password is never kept)."""
        return self._key(login, stored, password)

    def _key(self, login: str, stored: str, password: str) -> bytes:
        msg = b"\0".join(s.encode("utf-8", "surrogatepass") for s in (login, stored, password))
        return hmac.new(self._secret, msg, hashlib.sha256).digest()

    def cached(self, login: str, stored: str, password: str) -> bool:
        key = self._key(login, stored, password)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return True
        return False

    def verify(self, login: str, stored: str, password: str) -> bool:
        """Blocking: call it from a worker thread."""
        if self.cached(login, stored, password):
            return True
        if not verify_password_hash(password, stored):
            return False
        key = self._key(login, stored, password)
        with self._lock:
            self._cache[key] = None
            self._cache.move_to_end(key)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return True
