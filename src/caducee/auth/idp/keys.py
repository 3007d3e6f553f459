"""The IdP's token-signing keys (ES256, ECDSA P-256; RFC 7518 §3.4).

Kept as a JSON list of private JWKs in ``signing-keys.json`` (mode 0600). The last key signs;
every key is published in the JWKS (RFC 7517) so tokens signed before a rotation stay
verifiable until they expire. ``kid`` is the RFC 7638 thumbprint.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet

__all__ = ["ALG", "SigningKeys"]

ALG = "ES256"
_MAX_KEYS = 3


class SigningKeys:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._keys: list[ECKey] = []
        self._mtime = -1.0
        self._load()
        if not self._keys:
            self.rotate()

    def _load(self) -> None:
        """(Re)reads the key file when it changed: ``caducee idp rotate-key`` run beside a
        serving IdP takes effect without a restart."""
        try:
            mtime = self._path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._mtime:
            return
        keys = [ECKey.import_key(d) for d in json.loads(self._path.read_text(encoding="utf-8"))]
        with self._lock:
            if keys:
                self._keys = keys
            self._mtime = mtime

    @staticmethod
    def _new() -> ECKey:
        key = ECKey.generate_key("P-256", private=True)
        return ECKey.import_key(
            key.as_dict(private=True), {"kid": key.thumbprint(), "use": "sig", "alg": ALG}
        )

    def rotate(self) -> str:
        """Adds a new signing key (kept: the previous ones, up to three); returns its kid."""
        with self._lock:
            self._keys = [*self._keys, self._new()][-_MAX_KEYS:]
            data = [k.as_dict(private=True) for k in self._keys]
            tmp = self._path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            tmp.replace(self._path)
            self._mtime = self._path.stat().st_mtime
            return str(self._keys[-1].kid)

    @property
    def current(self) -> ECKey:
        self._load()
        return self._keys[-1]

    def public_jwks(self) -> dict[str, Any]:
        """The JWKS document: public parts only."""
        self._load()
        return {"keys": [k.as_dict(private=False) for k in self._keys]}

    def public_keyset(self) -> KeySet:
        return KeySet.import_key_set(self.public_jwks())  # type: ignore[arg-type]
