"""Time-based one-time passwords, RFC 6238 (TOTP) over RFC 4226 (HOTP).

Implemented with :mod:`hmac` and :mod:`hashlib` only: the algorithm is twenty lines and a
dependency would add nothing. SHA-1, 6 digits, 30-second steps: what every authenticator
application (FreeOTP, Google Authenticator, ...) uses by default.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

__all__ = ["STEP", "generate_secret", "hotp", "provisioning_uri", "totp", "verify_totp"]

STEP = 30
DIGITS = 6


def generate_secret() -> str:
    """A new random secret (160 bits, RFC 4226 §4 R6), base32 without padding."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii").rstrip("=")


def _key(secret_b32: str) -> bytes:
    s = secret_b32.strip().replace(" ", "").upper()
    return base64.b32decode(s + "=" * (-len(s) % 8))


def hotp(key: bytes, counter: int, digits: int = DIGITS) -> str:
    """RFC 4226 §5.3: HMAC-SHA-1, dynamic truncation, modulo 10^digits."""
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % (10**digits)).zfill(digits)


def totp(secret_b32: str, at: float | None = None, *, step: int = STEP) -> str:
    """RFC 6238 §4.2: HOTP with T = floor((now - T0) / step), T0 = 0."""
    now = time.time() if at is None else at
    return hotp(_key(secret_b32), int(now // step))


def verify_totp(
    secret_b32: str,
    code: str,
    *,
    at: float | None = None,
    window: int = 1,
    last_counter: int = -1,
    step: int = STEP,
) -> int | None:
    """The time-step counter that ``code`` matches within ±``window`` steps (RFC 6238 §5.2,
    clock drift), or None. A counter ``<= last_counter`` never matches: a code is usable once
    (RFC 6238 §5.2, "MUST NOT accept the second attempt of the same OTP")."""
    code = code.strip()
    if len(code) != DIGITS or not code.isdigit():
        return None
    key = _key(secret_b32)
    now = time.time() if at is None else at
    current = int(now // step)
    for counter in range(current - window, current + window + 1):
        if counter > last_counter and hmac.compare_digest(hotp(key, counter), code):
            return counter
    return None


def provisioning_uri(secret_b32: str, account: str, issuer: str) -> str:
    """``otpauth://totp/...`` URI (the Key Uri Format read by authenticator apps)."""
    label = quote(f"{issuer}:{account}")
    query = urlencode({"secret": secret_b32, "issuer": issuer, "algorithm": "SHA1", "digits": 6})
    return f"otpauth://totp/{label}?{query}&period={STEP}"
