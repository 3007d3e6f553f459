"""IMAP4rev2 / IMAP4rev1 access to BALs (RFC 9051, RFC 3501 and the extensions in docs/imap.md)."""

from caducee.imap.server import ImapServer, ImapSettings

__all__ = ["ImapServer", "ImapSettings"]
