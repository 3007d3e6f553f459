"""Password hashing with scrypt (RFC 7914) from :mod:`hashlib`.

Stored form: ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``; the parameters travel with the
hash so they can be raised later without breaking old hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["hash_password", "verify_password"]

_LOG2_N = 14  # n = 16384, r = 8: 16 MiB and ~50 ms per check on a small server core
_R = 8
_P = 1
_DKLEN = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """A new salted scrypt hash of ``password``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=1 << _LOG2_N, r=_R, p=_P, dklen=_DKLEN
    )
    return f"scrypt${_LOG2_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time comparison against a stored hash; False for any malformed hash."""
    try:
        scheme, log2_n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        n, rr, pp = 1 << int(log2_n), int(r), int(p)
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
        if not (10 <= int(log2_n) <= 20 and 1 <= rr <= 32 and 1 <= pp <= 16):
            return False
    except ValueError:
        return False
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=rr,
        p=pp,
        dklen=len(expected),
        maxmem=256 * 1024 * 1024,
    )
    return hmac.compare_digest(digest, expected)
