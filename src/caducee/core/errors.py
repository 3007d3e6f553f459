"""The one domain error tree.

Every front-end (SMTP, IMAP, HTTP/FHIR, CLI) translates these in one place; internal details
never reach a remote peer. Raise the most specific class, chain the cause with ``raise ... from``.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "CaduceeError",
    "ConfigError",
    "Conflict",
    "InvalidInput",
    "NotFound",
    "PermissionDenied",
    "PolicyRefused",
    "QuotaExceeded",
    "StorageError",
    "TrustError",
]


class CaduceeError(Exception):
    """Base of every error Caducée raises on purpose. ``str(err)`` is one clear line."""


class ConfigError(CaduceeError):
    """Configuration is invalid. ``problems`` lists every problem found, each with its key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems) if self.problems else "invalid configuration")


class InvalidInput(CaduceeError):
    """Input (a file, a document, an argument, a protocol line) is malformed or hostile."""


class StorageError(CaduceeError):
    """The storage engine failed (I/O, database, integrity)."""


class NotFound(StorageError):
    """The object does not exist (or the caller may not learn that it does)."""


class Conflict(StorageError):
    """The object already exists, or a concurrent change won."""


class QuotaExceeded(CaduceeError):
    """A mailbox quota or a size limit would be exceeded."""


class AuthenticationFailed(CaduceeError):
    """Credentials, token or certificate did not authenticate anyone."""


class PermissionDenied(CaduceeError):
    """Authenticated, but not allowed to do this."""


class TrustError(CaduceeError):
    """A certificate, CRL, or liste blanche failed verification."""


class PolicyRefused(CaduceeError):
    """A trust-space or operator policy refuses the operation.

    ``code`` is the SMTP reply code and ``enhanced`` the RFC 3463 status (``5.7.1``); other
    front-ends map them as they see fit.
    """

    def __init__(self, message: str, *, code: int = 550, enhanced: str = "5.7.1") -> None:
        self.code = code
        self.enhanced = enhanced
        super().__init__(message)
