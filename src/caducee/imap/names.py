"""Mailbox names: modified UTF-7 (RFC 3501 §5.1.3), LIST patterns (RFC 9051 §6.3.9) and the
account's view of its BALs.

An account sees the folders of its own BAL at the root (``INBOX``, ``Sent``...) and the BALs
it is delegated on (ORG, CAB...) under the shared namespace ``Partagé/<address>/...``
(RFC 2342 "other users/shared" namespace). A BAL the account has no right on is never named.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from caducee.core.model import Mailbox

__all__ = [
    "DELIM",
    "SHARED_PREFIX",
    "BalView",
    "Resolved",
    "decode_mutf7",
    "encode_mutf7",
    "pattern_regex",
    "resolve_name",
]

DELIM = "/"
SHARED_PREFIX = "Partagé"


def encode_mutf7(name: str) -> str:
    """Unicode -> modified UTF-7."""
    out: list[str] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            raw = "".join(buf).encode("utf-16-be")
            out.append(
                "&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-"
            )
            buf.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


_MUTF7_RUN = re.compile(r"&([A-Za-z0-9+,]*)-")


def decode_mutf7(raw: str) -> str:
    """Modified UTF-7 -> Unicode; raises ValueError when malformed."""

    def one(m: re.Match[str]) -> str:
        body = m.group(1)
        if not body:
            return "&"
        b64 = body.replace(",", "/")
        b64 += "=" * (-len(b64) % 4)
        try:
            return base64.b64decode(b64, validate=True).decode("utf-16-be")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError("invalid modified UTF-7") from exc

    text = _MUTF7_RUN.sub(one, raw)
    if "&" in _MUTF7_RUN.sub("", raw):
        raise ValueError("invalid modified UTF-7")
    return text


def wire_to_name(raw: bytes, utf8: bool) -> str:
    """A mailbox name as the client sent it -> Unicode (RFC 9051 §5.1, RFC 3501 §5.1.3)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("mailbox name is not UTF-8") from exc
    if not utf8 and text.isascii():
        text = decode_mutf7(text)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("control character in mailbox name")
    if text.upper() == "INBOX":
        return "INBOX"
    if text.upper().startswith("INBOX/"):
        return "INBOX" + text[5:]
    return text


def name_to_wire(name: str, utf8: bool) -> str:
    return name if utf8 else encode_mutf7(name)


def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """``*`` matches anything, ``%`` anything but the delimiter; INBOX case-insensitive."""
    full = reference + pattern if not pattern.startswith(DELIM) or not reference else pattern
    out = []
    for ch in full:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    rx = "".join(out)
    if full[:5].upper() == "INBOX":
        rx = "(?i:INBOX)" + "".join(out[5:])
    return re.compile(rx + r"\Z", re.DOTALL)


@dataclass(frozen=True, slots=True)
class BalView:
    """A BAL as this account sees it: where it is mounted and the account's rights."""

    mailbox: Mailbox
    rights: str
    prefix: str  # "" for the account's own BAL, else "Partagé/<address>/"


@dataclass(frozen=True, slots=True)
class Resolved:
    bal: BalView
    folder: str  # folder name inside the BAL ("INBOX", "Sent", "a/b")


def own_and_shared(login: str, bals: list[tuple[Mailbox, str]]) -> list[BalView]:
    """Mount points: the BAL whose address is the login (or the only one) at the root."""
    visible = [(m, r) for m, r in bals if "l" in r or "r" in r]
    key = login.lower()
    own = next((m for m, _ in visible if m.address.lower() == key), None)
    if own is None and len(visible) == 1:
        own = visible[0][0]
    views: list[BalView] = []
    for m, rights in sorted(visible, key=lambda x: x[0].address.lower()):
        prefix = (
            ""
            if own is not None and m.mailbox_id == own.mailbox_id
            else (f"{SHARED_PREFIX}{DELIM}{m.address.lower()}{DELIM}")
        )
        views.append(BalView(m, rights, prefix))
    return views


def resolve_name(views: list[BalView], name: str) -> Resolved | None:
    """The BAL and folder a visible name designates, or None (never says why)."""
    shared = SHARED_PREFIX + DELIM
    if name.startswith(shared):
        rest = name[len(shared) :]
        address, sep, folder = rest.partition(DELIM)
        if not sep or not folder:
            return None
        for v in views:
            if v.prefix and v.mailbox.address.lower() == address.lower():
                if folder.upper() == "INBOX":
                    folder = "INBOX"
                return Resolved(v, folder)
        return None
    for v in views:
        if not v.prefix:
            if name == SHARED_PREFIX:
                return None
            return Resolved(v, name)
    return None
