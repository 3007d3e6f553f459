"""RFC 4226 / RFC 6238 test vectors, the drift window, replay refusal; scrypt hashes."""

from __future__ import annotations

import base64

from caducee.auth.passwords import hash_password, verify_password
from caducee.auth.totp import hotp, provisioning_uri, totp, verify_totp

RFC_KEY = b"12345678901234567890"
RFC_SECRET = base64.b32encode(RFC_KEY).decode()


def test_hotp_rfc4226_appendix_d() -> None:
    expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922"]
    assert [hotp(RFC_KEY, c) for c in range(7)] == expected


def test_totp_rfc6238_appendix_b_sha1() -> None:
    # (time, 8-digit TOTP) for SHA-1 from RFC 6238 Appendix B
    vectors = [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ]
    for t, code in vectors:
        assert hotp(RFC_KEY, t // 30, digits=8) == code
        assert totp(RFC_SECRET, at=t) == code[-6:]


def test_totp_window_accepts_one_step_of_drift_only() -> None:
    t = 1_700_000_000.0
    code = totp(RFC_SECRET, at=t)
    assert verify_totp(RFC_SECRET, code, at=t) == int(t // 30)
    assert verify_totp(RFC_SECRET, code, at=t + 30) == int(t // 30)
    assert verify_totp(RFC_SECRET, code, at=t - 30) == int(t // 30)
    assert verify_totp(RFC_SECRET, code, at=t + 90) is None
    assert verify_totp(RFC_SECRET, code, at=t + 90, window=3) == int(t // 30)


def test_totp_used_counter_is_refused() -> None:
    t = 1_700_000_000.0
    code = totp(RFC_SECRET, at=t)
    counter = verify_totp(RFC_SECRET, code, at=t)
    assert counter is not None
    assert verify_totp(RFC_SECRET, code, at=t, last_counter=counter) is None


def test_totp_rejects_malformed_codes() -> None:
    for code in ("", "12345", "1234567", "abcdef", "12 456"):
        assert verify_totp(RFC_SECRET, code) is None


def test_provisioning_uri() -> None:
    uri = provisioning_uri(RFC_SECRET, "jdupont", "Caducée")
    assert uri.startswith("otpauth://totp/Caduc%C3%A9e%3Ajdupont?secret=")
    assert "period=30" in uri


def test_scrypt_hash_roundtrip_and_salting() -> None:
    h1, h2 = hash_password("s3cret é"), hash_password("s3cret é")
    assert h1 != h2 and h1.startswith("scrypt$14$8$1$")
    assert verify_password("s3cret é", h1)
    assert not verify_password("s3cret e", h1)
    assert not verify_password("x", "not-a-hash")
    assert not verify_password("x", "scrypt$40$8$1$AAAA$AAAA")  # absurd cost refused
