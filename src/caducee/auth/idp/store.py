"""The identity provider's own data: users, clients, codes, refresh tokens, sessions.

One small SQLite file in the IdP's data directory. Secrets at rest: passwords as scrypt hashes,
TOTP secrets encrypted with AES-256-GCM under a key file (mode 0600) beside the database, and
codes, refresh tokens and session ids stored only as SHA-256 digests (they are high-entropy
random strings, so a plain hash is enough to make a stolen database useless). Access tokens are
never stored: only the ``jti`` of a revoked one, until it expires.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from caducee.auth.certs import normalise_dn
from caducee.auth.idp.records import Client, CodeRecord, RefreshRecord, Session, User
from caducee.auth.passwords import hash_password, verify_password
from caducee.core.errors import Conflict, InvalidInput, NotFound

__all__ = ["Client", "CodeRecord", "IdpStore", "RefreshRecord", "Session", "User", "digest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    totp_secret BLOB,
    totp_last_counter INTEGER NOT NULL DEFAULT -1,
    idnps TEXT NOT NULL UNIQUE,
    given_name TEXT NOT NULL DEFAULT '',
    family_name TEXT NOT NULL DEFAULT '',
    profession TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    cert_subject TEXT UNIQUE,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY,
    secret_hash TEXT,
    name TEXT NOT NULL DEFAULT '',
    redirect_uris TEXT NOT NULL,
    audience TEXT NOT NULL,
    scope TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    nonce TEXT,
    code_challenge TEXT,
    code_challenge_method TEXT,
    auth_time INTEGER NOT NULL,
    amr TEXT NOT NULL,
    expires REAL NOT NULL,
    family TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family TEXT NOT NULL,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    auth_time INTEGER NOT NULL,
    amr TEXT NOT NULL,
    issued REAL NOT NULL,
    expires REAL NOT NULL,
    rotated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS refresh_family ON refresh_tokens(family);
CREATE TABLE IF NOT EXISTS revoked_families (family TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS revoked_jti (jti TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    sid_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    auth_time INTEGER NOT NULL,
    amr TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""


def digest(value: str) -> str:
    """SHA-256 hex digest of a high-entropy secret (code, refresh token, session id)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


_USER_COLS = (
    "user_id, username, idnps, given_name, family_name, profession, email, cert_subject, "
    "password_hash IS NOT NULL, totp_secret IS NOT NULL, failures, locked_until, disabled"
)


def _user(row: tuple[object, ...]) -> User:
    return User(
        user_id=str(row[0]),
        username=str(row[1]),
        idnps=str(row[2]),
        given_name=str(row[3]),
        family_name=str(row[4]),
        profession=str(row[5]),
        email=str(row[6]),
        cert_subject=None if row[7] is None else str(row[7]),
        has_password=bool(row[8]),
        has_totp=bool(row[9]),
        failures=int(str(row[10])),
        locked_until=float(str(row[11])),
        disabled=bool(row[12]),
    )


class IdpStore:
    """Synchronous and thread-safe (one connection behind a lock); callers on an event loop
    run it in a thread pool. Every write is committed before the method returns."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._aead = AESGCM(_load_or_create_key(data_dir / "idp-secrets.key"))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(data_dir / "idp.sqlite3", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            cur = self._db.execute(sql, args)
            self._db.commit()
            return cur

    def _one(self, sql: str, args: tuple[object, ...] = ()) -> tuple[object, ...] | None:
        with self._lock:
            row: tuple[object, ...] | None = self._db.execute(sql, args).fetchone()
            return row

    # -- users -------------------------------------------------------------------------
    def add_user(
        self,
        username: str,
        idnps: str,
        *,
        password: str | None = None,
        totp_secret: str | None = None,
        given_name: str = "",
        family_name: str = "",
        profession: str = "",
        email: str = "",
        cert_subject: str | None = None,
    ) -> User:
        """``idnps``: type digit + national id ("8" + RPPS, "0" + ADELI), as PSC's
        SubjectNameID. At least one login method (password or certificate) is required."""
        if not username or not idnps.isdigit() or len(idnps) < 9:
            raise InvalidInput("username and a numeric IDNPS (type digit + RPPS/ADELI) needed")
        if password is None and cert_subject is None:
            raise InvalidInput("a user needs a password or a certificate subject")
        if cert_subject is not None:
            cert_subject = normalise_dn(cert_subject)
        user_id = str(uuid.uuid4())
        pw = None if password is None else hash_password(password)
        enc = None if totp_secret is None else self._encrypt(totp_secret, user_id)
        try:
            self._exec(
                "INSERT INTO users (user_id, username, password_hash, totp_secret, idnps, "
                "given_name, family_name, profession, email, cert_subject) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    user_id,
                    username,
                    pw,
                    enc,
                    idnps,
                    given_name,
                    family_name,
                    profession,
                    email,
                    cert_subject,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"user {username!r} (or its IDNPS / certificate) exists") from exc
        found = self.get_user(user_id=user_id)
        assert found is not None  # noqa: S101 - just inserted
        return found

    def get_user(
        self,
        *,
        user_id: str | None = None,
        username: str | None = None,
        cert_subject: str | None = None,
    ) -> User | None:
        if user_id is not None:
            row = self._one(f"SELECT {_USER_COLS} FROM users WHERE user_id=?", (user_id,))  # noqa: S608
        elif username is not None:
            row = self._one(f"SELECT {_USER_COLS} FROM users WHERE username=?", (username,))  # noqa: S608
        elif cert_subject is not None:
            row = self._one(
                f"SELECT {_USER_COLS} FROM users WHERE cert_subject=?",  # noqa: S608
                (cert_subject,),
            )
        else:
            return None
        return None if row is None else _user(row)

    def list_users(self) -> list[User]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_USER_COLS} FROM users ORDER BY username"  # noqa: S608
            ).fetchall()
        return [_user(r) for r in rows]

    def check_password(self, user_id: str, password: str) -> bool:
        row = self._one("SELECT password_hash FROM users WHERE user_id=?", (user_id,))
        if row is None or row[0] is None:
            return False
        return verify_password(password, str(row[0]))

    def set_password(self, username: str, password: str) -> None:
        cur = self._exec(
            "UPDATE users SET password_hash=? WHERE username=?", (hash_password(password), username)
        )
        if cur.rowcount == 0:
            raise NotFound(f"no user {username!r}")

    def totp_secret(self, user_id: str) -> tuple[str, int] | None:
        """The decrypted TOTP secret and the last counter used, or None without TOTP."""
        row = self._one(
            "SELECT totp_secret, totp_last_counter FROM users WHERE user_id=?", (user_id,)
        )
        if row is None or row[0] is None:
            return None
        blob = row[0]
        assert isinstance(blob, bytes)  # noqa: S101 - schema
        return self._decrypt(blob, user_id), int(str(row[1]))

    def use_totp_counter(self, user_id: str, counter: int) -> bool:
        """Records ``counter`` as used; False when it (or a later one) already was (replay)."""
        cur = self._exec(
            "UPDATE users SET totp_last_counter=? WHERE user_id=? AND totp_last_counter < ?",
            (counter, user_id, counter),
        )
        return cur.rowcount == 1

    def record_failure(self, user_id: str, *, max_failures: int, lockout_seconds: float) -> int:
        """Counts a failed login; locks the account when ``max_failures`` is reached."""
        with self._lock:
            self._db.execute("UPDATE users SET failures=failures+1 WHERE user_id=?", (user_id,))
            row = self._db.execute(
                "SELECT failures FROM users WHERE user_id=?", (user_id,)
            ).fetchone()
            failures = int(row[0]) if row else 0
            if failures >= max_failures:
                self._db.execute(
                    "UPDATE users SET locked_until=?, failures=0 WHERE user_id=?",
                    (time.time() + lockout_seconds, user_id),
                )
            self._db.commit()
        return failures

    def record_success(self, user_id: str) -> None:
        self._exec("UPDATE users SET failures=0, locked_until=0 WHERE user_id=?", (user_id,))

    def unlock(self, username: str) -> None:
        self._exec("UPDATE users SET failures=0, locked_until=0 WHERE username=?", (username,))

    # -- clients -----------------------------------------------------------------------
    def add_client(
        self,
        client_id: str,
        redirect_uris: list[str],
        *,
        audience: list[str],
        secret: str | None = None,
        name: str = "",
        scope: str = "openid profile scope_all",
    ) -> Client:
        """``secret`` None: a public client (native or browser app), PKCE is then its only
        proof. Client secrets are random strings made by us, hashed with SHA-256."""
        try:
            self._exec(
                "INSERT INTO clients VALUES (?,?,?,?,?,?)",
                (
                    client_id,
                    None if secret is None else digest(secret),
                    name,
                    json.dumps(redirect_uris),
                    json.dumps(audience),
                    scope,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"client {client_id!r} exists") from exc
        client = self.get_client(client_id)
        assert client is not None  # noqa: S101 - just inserted
        return client

    def get_client(self, client_id: str) -> Client | None:
        row = self._one("SELECT * FROM clients WHERE client_id=?", (client_id,))
        if row is None:
            return None
        return Client(
            client_id=str(row[0]),
            secret_hash=None if row[1] is None else str(row[1]),
            name=str(row[2]),
            redirect_uris=tuple(json.loads(str(row[3]))),
            audience=tuple(json.loads(str(row[4]))),
            scope=str(row[5]),
        )

    def list_clients(self) -> list[Client]:
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT client_id FROM clients ORDER BY 1")]
        return [c for c in (self.get_client(i) for i in ids) if c is not None]

    # -- authorization codes -------------------------------------------------------------
    def save_code(self, code: str, rec: CodeRecord) -> None:
        self._exec(
            "INSERT INTO codes VALUES (?,?,?,?,?,?,?,?,?,?,?,?,0)",
            (
                digest(code),
                rec.client_id,
                rec.user_id,
                rec.redirect_uri,
                rec.scope,
                rec.nonce,
                rec.code_challenge,
                rec.code_challenge_method,
                rec.auth_time,
                json.dumps(list(rec.amr)),
                rec.expires,
                rec.family,
            ),
        )

    def take_code(self, code: str) -> CodeRecord | None:
        """Marks the code used and returns it (single use, RFC 6749 §4.1.2); None if unknown.

        A code presented a second time revokes the grant made with it (RFC 6749 §4.1.2:
        "SHOULD revoke ... all tokens previously issued based on that authorization code")."""
        with self._lock:
            row = self._db.execute(
                "UPDATE codes SET used=1 WHERE code_hash=? AND used=0 RETURNING client_id, "
                "user_id, redirect_uri, scope, nonce, code_challenge, code_challenge_method, "
                "auth_time, amr, expires, family",
                (digest(code),),
            ).fetchone()
            reused = None
            if row is None:
                reused = self._db.execute(
                    "SELECT family, expires FROM codes WHERE code_hash=?", (digest(code),)
                ).fetchone()
            self._db.commit()
        if reused is not None:
            self.revoke_family(str(reused[0]), float(reused[1]) + 86400)
            self.audit("idp.code.reused", "refused", "-", "grant revoked")
            return None
        if row is None:
            return None
        return CodeRecord(
            client_id=row[0],
            user_id=row[1],
            redirect_uri=row[2],
            scope=row[3],
            nonce=row[4],
            code_challenge=row[5],
            code_challenge_method=row[6],
            auth_time=int(row[7]),
            amr=tuple(json.loads(row[8])),
            expires=float(row[9]),
            family=str(row[10]),
        )

    # -- refresh tokens ------------------------------------------------------------------
    def save_refresh(self, token: str, rec: RefreshRecord) -> None:
        self._exec(
            "INSERT INTO refresh_tokens VALUES (?,?,?,?,?,?,?,?,?,0)",
            (
                digest(token),
                rec.family,
                rec.client_id,
                rec.user_id,
                rec.scope,
                rec.auth_time,
                json.dumps(list(rec.amr)),
                rec.issued,
                rec.expires,
            ),
        )

    def get_refresh(self, token: str) -> RefreshRecord | None:
        row = self._one(
            "SELECT family, client_id, user_id, scope, auth_time, amr, issued, expires, rotated "
            "FROM refresh_tokens WHERE token_hash=?",
            (digest(token),),
        )
        if row is None:
            return None
        return RefreshRecord(
            family=str(row[0]),
            client_id=str(row[1]),
            user_id=str(row[2]),
            scope=str(row[3]),
            auth_time=int(str(row[4])),
            amr=tuple(json.loads(str(row[5]))),
            issued=float(str(row[6])),
            expires=float(str(row[7])),
            rotated=bool(row[8]),
        )

    def mark_rotated(self, token: str) -> bool:
        """Marks a refresh token used; False when it already was (a replay)."""
        cur = self._exec(
            "UPDATE refresh_tokens SET rotated=1 WHERE token_hash=? AND rotated=0",
            (digest(token),),
        )
        return cur.rowcount == 1

    def revoke_family(self, family: str, expires: float) -> None:
        """Revokes a grant: every refresh token of the family and the access tokens (``sid``)."""
        self._exec(
            "INSERT OR REPLACE INTO revoked_families VALUES (?, ?)",
            (family, expires),
        )
        self._exec("UPDATE refresh_tokens SET rotated=1 WHERE family=?", (family,))

    def family_revoked(self, family: str) -> bool:
        return self._one("SELECT 1 FROM revoked_families WHERE family=?", (family,)) is not None

    def revoke_jti(self, jti: str, expires: float) -> None:
        self._exec("INSERT OR REPLACE INTO revoked_jti VALUES (?, ?)", (jti, expires))

    def jti_revoked(self, jti: str) -> bool:
        return self._one("SELECT 1 FROM revoked_jti WHERE jti=?", (jti,)) is not None

    # -- browser sessions ----------------------------------------------------------------
    def create_session(self, user_id: str, amr: tuple[str, ...], lifetime: float) -> str:
        sid = secrets.token_urlsafe(32)
        now = time.time()
        self._exec(
            "INSERT INTO sessions VALUES (?,?,?,?,?)",
            (digest(sid), user_id, int(now), json.dumps(list(amr)), now + lifetime),
        )
        return sid

    def get_session(self, sid: str) -> Session | None:
        row = self._one(
            "SELECT user_id, auth_time, amr, expires FROM sessions WHERE sid_hash=?",
            (digest(sid),),
        )
        if row is None or float(str(row[3])) < time.time():
            return None
        amr = tuple(json.loads(str(row[2])))
        return Session(str(row[0]), int(str(row[1])), amr, float(str(row[3])))

    def delete_session(self, sid: str) -> None:
        self._exec("DELETE FROM sessions WHERE sid_hash=?", (digest(sid),))

    # -- housekeeping and audit --------------------------------------------------------------
    def purge_expired(self) -> None:
        now = time.time()
        with self._lock:
            for table in ("codes", "refresh_tokens", "revoked_families", "revoked_jti", "sessions"):
                self._db.execute(f"DELETE FROM {table} WHERE expires < ?", (now,))  # noqa: S608
            self._db.commit()

    def audit(self, kind: str, outcome: str, actor: str, detail: str = "") -> None:
        """An audit line (never a password, code or token: only ids and reasons)."""
        row = (time.time(), kind, outcome, actor, detail)
        self._exec("INSERT INTO audit VALUES (?,?,?,?,?)", row)

    def audit_events(self, limit: int = 100) -> list[tuple[float, str, str, str, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT time, kind, outcome, actor, detail FROM audit ORDER BY rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [(float(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows]

    # -- encryption of TOTP secrets ----------------------------------------------------
    def _encrypt(self, secret: str, user_id: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, secret.encode("ascii"), user_id.encode())

    def _decrypt(self, blob: bytes, user_id: str) -> str:
        return self._aead.decrypt(blob[:12], blob[12:], user_id.encode()).decode("ascii")


def _load_or_create_key(path: Path) -> bytes:
    if path.exists():
        key = path.read_bytes()
        if len(key) != 32:
            raise InvalidInput(f"{path.name}: not a 32-byte key")
        return key
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key
