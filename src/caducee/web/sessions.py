"""Webmail sessions, kept in the server's memory only, and the login rate limiter.

A session is a random 256-bit id in a ``__Host-`` cookie (``Secure``, ``HttpOnly``,
``SameSite=Lax``, path ``/``); the server keeps the login, a CSRF token, and the user's token
set from the identity provider (ECO.1.2.5: tokens are never written anywhere). A session ends
after ``idle_seconds`` without a request, after ``max_seconds`` in all, at logout, or when the
identity provider refuses to refresh its tokens (ECO.1.2.6). A restart of the process ends every
session (users log in again through the identity provider).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

from caducee.auth.client import AuthorizationRequest, TokenSet

__all__ = ["LoginThrottle", "PendingLogin", "SessionStore", "WebSession"]


@dataclass
class WebSession:
    sid: str = field(repr=False)
    login: str
    display_name: str
    csrf: str = field(repr=False)
    tokens: TokenSet | None = field(default=None, repr=False)
    created: float = field(default_factory=lambda: time.monotonic())
    last_seen: float = field(default_factory=lambda: time.monotonic())
    current: str = ""  # the mailbox (address) shown

    def check_csrf(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.csrf.encode())


@dataclass
class PendingLogin:
    """An authorization request on its way through the identity provider."""

    request: AuthorizationRequest
    created: float = field(default_factory=lambda: time.monotonic())


class SessionStore:
    """Sessions and pending logins of one webmail process."""

    def __init__(self, idle_seconds: float, max_seconds: float, pending_seconds: float = 600):
        self.idle = idle_seconds
        self.max = max_seconds
        self.pending_ttl = pending_seconds
        self._sessions: dict[str, WebSession] = {}
        self._pending: dict[str, PendingLogin] = {}

    def create(self, login: str, display_name: str, tokens: TokenSet | None) -> WebSession:
        self._purge()
        sid = secrets.token_urlsafe(32)
        s = WebSession(sid, login, display_name, secrets.token_urlsafe(32), tokens)
        self._sessions[sid] = s
        return s

    def get(self, sid: str | None) -> WebSession | None:
        if not sid:
            return None
        s = self._sessions.get(sid)
        if s is None:
            return None
        now = time.monotonic()
        if now - s.last_seen > self.idle or now - s.created > self.max:
            self._sessions.pop(sid, None)
            return None
        s.last_seen = now
        return s

    def end(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    def end_all(self, login: str) -> int:
        gone = [k for k, s in self._sessions.items() if s.login == login]
        for k in gone:
            del self._sessions[k]
        return len(gone)

    def add_pending(self, request: AuthorizationRequest) -> str:
        self._purge()
        key = secrets.token_urlsafe(24)
        self._pending[key] = PendingLogin(request)
        return key

    def take_pending(self, key: str | None) -> PendingLogin | None:
        if not key:
            return None
        p = self._pending.pop(key, None)
        if p is None or time.monotonic() - p.created > self.pending_ttl:
            return None
        return p

    def _purge(self) -> None:
        now = time.monotonic()
        for k, s in list(self._sessions.items()):
            if now - s.last_seen > self.idle or now - s.created > self.max:
                del self._sessions[k]
        for k, p in list(self._pending.items()):
            if now - p.created > self.pending_ttl:
                del self._pending[k]
        # a flood of unfinished logins cannot grow memory without bound
        while len(self._pending) > 10000:
            self._pending.pop(next(iter(self._pending)))

    def __len__(self) -> int:
        return len(self._sessions)


class LoginThrottle:
    """Per client address: at most ``limit`` login attempts per ``window`` seconds, and a
    lockout of ``lockout`` seconds after ``max_failures`` failed logins in a row."""

    def __init__(
        self, limit: int, window: float = 60.0, max_failures: int = 5, lockout: float = 900.0
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_failures = max_failures
        self.lockout = lockout
        self._hits: dict[str, deque[float]] = {}
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        if self._locked_until.get(client, 0.0) > now:
            return False
        hits = self._hits.setdefault(client, deque())
        while hits and now - hits[0] > self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        if len(self._hits) > 100000:  # bounded memory under address floods
            self._hits.clear()
        return True

    def failed(self, client: str) -> None:
        n = self._failures.get(client, 0) + 1
        self._failures[client] = n
        if n >= self.max_failures:
            self._locked_until[client] = time.monotonic() + self.lockout
            self._failures[client] = 0

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def locked(self, client: str) -> bool:
        return self._locked_until.get(client, 0.0) > time.monotonic()
