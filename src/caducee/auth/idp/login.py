"""End-user authentication at the IdP: password + TOTP (RFC 6238), or a client certificate.

Failed attempts are counted per account (lockout after ``max_failures`` for
``lockout_seconds``) and per client address (a sliding-window rate limit), so neither a
password guesser on one account nor a sprayer across accounts gets far. Audit lines name the
account and the reason, never the password or the code.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time

from caducee.auth.certs import subject_dn
from caducee.auth.idp.oauth import IdpSettings
from caducee.auth.idp.store import IdpStore, User
from caducee.auth.passwords import hash_password, verify_password
from caducee.auth.totp import verify_totp
from caducee.core.errors import AuthenticationFailed

__all__ = ["LoginService", "RateLimited"]

_AMR_PASSWORD = ("pwd",)
_AMR_PASSWORD_OTP = ("pwd", "otp", "mfa")
_AMR_CARD = ("sc", "hwk")  # RFC 8176: smart card, hardware-held key


class RateLimited(AuthenticationFailed):
    """Too many attempts from one address; try again later."""


class _Window:
    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._hits: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> bool:
        """Counts one attempt; False when over the limit."""
        now = time.monotonic()
        with self._lock:
            dq = self._hits.setdefault(key, collections.deque())
            while dq and dq[0] <= now - self.seconds:
                dq.popleft()
            if len(dq) >= self.limit:
                return False
            dq.append(now)
            if len(self._hits) > 10000:  # bound memory under a spray of addresses
                self._hits = {k: v for k, v in self._hits.items() if v}
            return True


class LoginService:
    """Synchronous (scrypt is CPU work): call from a thread pool."""

    def __init__(self, store: IdpStore, settings: IdpSettings) -> None:
        self.store = store
        self.settings = settings
        self._window = _Window(settings.rate_limit, settings.rate_window)
        self._dummy_hash: str | None = None  # made on first need: startup stays fast

    def password_login(
        self, username: str, password: str, code: str, client_ip: str
    ) -> tuple[User, tuple[str, ...]]:
        """The user and the RFC 8176 ``amr`` values; ``AuthenticationFailed`` otherwise.

        The error text is the same for every cause (unknown user, bad password, bad code,
        locked account) so the page reveals nothing; the audit trail has the real reason."""
        if not self._window.hit(client_ip):
            self.store.audit("idp.login.password", "refused", username[:64], "rate limited")
            raise RateLimited("too many attempts")
        user = self.store.get_user(username=username)
        if user is None or user.disabled:
            if self._dummy_hash is None:
                self._dummy_hash = hash_password(secrets.token_urlsafe(16))
            verify_password(password, self._dummy_hash)  # same cost as a real check
            self.store.audit("idp.login.password", "refused", username[:64], "unknown user")
            raise AuthenticationFailed("bad credentials")
        if user.locked_until > time.time():
            self.store.audit("idp.login.password", "refused", user.username, "locked")
            raise AuthenticationFailed("bad credentials")
        ok = self.store.check_password(user.user_id, password)
        amr: tuple[str, ...] = _AMR_PASSWORD
        reason = "bad password"
        if ok:
            totp = self.store.totp_secret(user.user_id)
            if totp is not None:
                secret, last = totp
                counter = verify_totp(
                    secret, code, window=self.settings.totp_window, last_counter=last
                )
                ok = counter is not None and self.store.use_totp_counter(user.user_id, counter)
                amr = _AMR_PASSWORD_OTP
                reason = "bad one-time code"
        if not ok:
            n = self.store.record_failure(
                user.user_id,
                max_failures=self.settings.max_failures,
                lockout_seconds=self.settings.lockout_seconds,
            )
            locked = n >= self.settings.max_failures
            self.store.audit(
                "idp.login.password",
                "refused",
                user.username,
                reason + ("; account locked" if locked else ""),
            )
            raise AuthenticationFailed("bad credentials")
        self.store.record_success(user.user_id)
        self.store.audit("idp.login.password", "ok", user.username, ",".join(amr))
        return user, amr

    def certificate_login(
        self, cert_der: bytes | None, client_ip: str
    ) -> tuple[User, tuple[str, ...]]:
        """Maps the TLS client certificate (already chain-checked by the handshake) to a user
        by its subject DN."""
        if not self._window.hit(client_ip):
            raise RateLimited("too many attempts")
        if not cert_der:
            self.store.audit("idp.login.card", "refused", "-", "no client certificate")
            raise AuthenticationFailed("no certificate")
        dn = subject_dn(cert_der)
        user = self.store.get_user(cert_subject=dn)
        if user is None or user.disabled or user.locked_until > time.time():
            self.store.audit("idp.login.card", "refused", dn[:200], "no user for certificate")
            raise AuthenticationFailed("unknown certificate")
        self.store.audit("idp.login.card", "ok", user.username, dn[:200])
        return user, _AMR_CARD
