"""Delivery status notifications (RFC 3464), pure functions.

A DSN is a ``multipart/report; report-type=delivery-status`` message (RFC 6522) of three parts:
a human-readable explanation (here in French, then English), the machine-readable
``message/delivery-status`` part (RFC 3464 §2: per-message fields, then one block of
per-recipient fields), and the returned content: the headers only (``text/rfc822-headers``) for
RET=HDRS, for success notices and by default, or the whole message (``message/rfc822``) for
RET=FULL (RFC 3461 §4.3).

Three kinds: ``failed`` (permanent failure or expiry), ``delayed`` (still trying) and
``delivered`` / ``relayed`` (NOTIFY=SUCCESS: the MSSanté "accusé de réception", mssante-notes
§3.3). A DSN is sent with the null reverse-path and ``Auto-Submitted: auto-replied`` (RFC 3834),
never in reply to a message that itself had a null reverse-path (RFC 3461 §6.2).
"""

from __future__ import annotations

import quopri
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime

__all__ = [
    "RecipientStatus",
    "build_dsn",
    "decode_xtext",
    "header_block",
    "should_notify",
]

_ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
_STATUS_RE = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """One per-recipient block of a DSN (RFC 3464 §2.3)."""

    final_recipient: str  # the address as delivered to (no "rfc822;" prefix)
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # RFC 3463 "x.y.z"
    original_recipient: str | None = None  # ORCPT as received: "rfc822;addr" (xtext allowed)
    diagnostic: str | None = None  # the remote reply, e.g. "550 5.1.1 unknown user"
    remote_mta: str | None = None
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None  # for "delayed"

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise ValueError(f"not a DSN action: {self.action!r}")
        if _STATUS_RE.fullmatch(self.status) is None:
            raise ValueError(f"not an RFC 3463 status: {self.status!r}")


def decode_xtext(text: str) -> str:
    """RFC 3461 §4 xtext: ``+XX`` is the byte of hex XX."""

    def repl(m: re.Match[str]) -> str:
        return chr(int(m.group(1), 16))

    return re.sub(r"\+([0-9A-Fa-f]{2})", repl, text)


def should_notify(notify: frozenset[str], action: str) -> bool:
    """Whether NOTIFY (RFC 3461 §4.1) asks for a DSN of this action.

    Without NOTIFY the default is failure (and, at the MTA's discretion, delay) only; we
    send failures and not delays then.
    """
    upper = {n.upper() for n in notify}
    if "NEVER" in upper:
        return False
    if action == "failed":
        return not upper or "FAILURE" in upper
    if action == "delayed":
        return "DELAY" in upper
    if action in ("delivered", "relayed", "expanded"):
        return "SUCCESS" in upper
    return False


def header_block(message: bytes) -> bytes:
    """The header section of a message (up to the first empty line), CRLF-terminated."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = message.find(sep)
        if idx >= 0:
            head = message[:idx]
            break
    else:
        head = message
    lines = re.split(rb"\r\n|\n|\r", head)
    return b"".join(line + b"\r\n" for line in lines if line)


def _clean(text: str, limit: int = 400, *, ascii_only: bool = True) -> str:
    """One printable line: a remote operator's text is never passed through raw."""
    text = re.sub(r"[\r\n\t]+", " ", text)
    if ascii_only:
        text = "".join(c if " " <= c <= "~" else "?" for c in text).strip()
    else:
        text = "".join(c if c.isprintable() else "?" for c in text).strip()
    return text[:limit]


def _fold(name: str, value: str) -> str:
    """A header field folded at spaces below 78 characters when possible (RFC 5322 §2.2.3)."""
    words = value.split(" ")
    lines: list[str] = []
    current = f"{name}: "
    for word in words:
        if len(current) + len(word) > 76 and current.strip() and not current.endswith(": "):
            lines.append(current.rstrip())
            current = " "
        current += word + " "
    lines.append(current.rstrip())
    return "\r\n".join(lines) + "\r\n"


def _date(dt: datetime) -> str:
    return format_datetime(dt if dt.tzinfo else dt.replace(tzinfo=UTC))


_TITLES = {
    "failed": ("Échec de remise", "Undelivered mail returned to sender"),
    "delayed": ("Remise retardée", "Delivery delayed"),
    "delivered": ("Accusé de réception", "Delivery receipt"),
    "relayed": ("Accusé de relais", "Relayed to the recipient's operator"),
    "expanded": ("Accusé de réception", "Delivery receipt (expanded)"),
}


def _human_text(
    reporting_mta: str, recipients: Sequence[RecipientStatus], subject: str | None
) -> str:
    fr: list[str] = []
    en: list[str] = []
    about_fr = f" (objet : {subject})" if subject else ""
    about_en = f" (subject: {subject})" if subject else ""
    fr.append(f"Ceci est un message automatique du serveur {reporting_mta}.")
    en.append(f"This is an automatic message from the mail server {reporting_mta}.")
    for r in recipients:
        diag = f" : {_clean(r.diagnostic)}" if r.diagnostic else ""
        diag_en = f": {_clean(r.diagnostic)}" if r.diagnostic else ""
        if r.action == "failed":
            fr.append(
                f"Votre message{about_fr} n'a pas pu être remis à <{r.final_recipient}>"
                f"{diag} (statut {r.status})."
            )
            en.append(
                f"Your message{about_en} could not be delivered to <{r.final_recipient}>"
                f"{diag_en} (status {r.status})."
            )
        elif r.action == "delayed":
            until = r.will_retry_until.strftime("%d/%m/%Y %H:%M UTC") if r.will_retry_until else ""
            fr.append(
                f"Votre message{about_fr} n'a pas encore pu être remis à <{r.final_recipient}>"
                f"{diag}. Nouvelles tentatives jusqu'au {until}. Aucune action n'est requise."
            )
            en.append(
                f"Your message{about_en} has not yet been delivered to <{r.final_recipient}>"
                f"{diag_en}. Delivery will be retried until {until}. No action is needed."
            )
        elif r.action == "relayed":
            fr.append(
                f"Votre message{about_fr} a été transmis à l'opérateur de <{r.final_recipient}>,"
                " qui ne fournit pas d'accusé de réception."
            )
            en.append(
                f"Your message{about_en} was relayed to the operator of <{r.final_recipient}>,"
                " which does not return delivery receipts."
            )
        else:
            fr.append(
                f"Votre message{about_fr} a été remis dans la boîte aux lettres de"
                f" <{r.final_recipient}>."
            )
            en.append(
                f"Your message{about_en} was delivered to the mailbox of <{r.final_recipient}>."
            )
    return "\r\n".join([*fr, "", "-- English --", "", *en, ""])


def _subject_of(headers: bytes) -> str | None:
    m = re.search(rb"(?im)^subject:[ \t]*(.*(?:\r?\n[ \t].*)*)", headers)
    if m is None:
        return None
    raw = re.sub(rb"\r?\n[ \t]+", b" ", m.group(1)).decode("utf-8", "replace")
    try:
        from email.header import decode_header, make_header

        raw = str(make_header(decode_header(raw)))
    except Exception:  # noqa: S110 - a malformed encoded-word keeps the raw text
        pass
    return _clean(raw, 120, ascii_only=False) or None


def build_dsn(
    *,
    reporting_mta: str,
    to: str,
    recipients: Sequence[RecipientStatus],
    original: bytes,
    ret: str | None = None,
    envid: str | None = None,
    arrival_date: datetime | None = None,
    now: datetime | None = None,
) -> bytes:
    """The bytes of a DSN for ``to`` (the original envelope sender) about ``recipients``.

    ``original`` is the original message, or at least its header section. The whole message is
    returned only for RET=FULL on failures (RFC 3461 §4.3); otherwise the headers only.
    """
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    now = now or datetime.now(UTC)
    actions = {r.action for r in recipients}
    main = "failed" if "failed" in actions else ("delayed" if "delayed" in actions else "")
    if not main:
        main = "delivered" if "delivered" in actions else sorted(actions)[0]
    title_fr, title_en = _TITLES[main]
    headers = header_block(original)
    subject = _subject_of(headers)
    boundary = f"=_caducee_dsn_{secrets.token_hex(12)}"
    msgid = f"<dsn.{secrets.token_hex(12)}@{reporting_mta}>"

    out: list[str] = [
        f"From: =?utf-8?q?Serveur_de_messagerie?= <MAILER-DAEMON@{reporting_mta}>\r\n",
        f"To: <{to}>\r\n",
        f"Subject: {Header(f'{title_fr} / {title_en}', 'utf-8').encode()}\r\n",
        f"Date: {_date(now)}\r\n",
        f"Message-ID: {msgid}\r\n",
        "Auto-Submitted: auto-replied\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/report; report-type=delivery-status;\r\n",
        f' boundary="{boundary}"\r\n',
        "\r\n",
        "Ceci est un message au format MIME / This is a MIME-formatted message.\r\n",
        f"\r\n--{boundary}\r\n",
        "Content-Type: text/plain; charset=utf-8\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "Content-Language: fr, en\r\n",
        "\r\n",
    ]
    human = _human_text(reporting_mta, recipients, subject).encode("utf-8")
    text = quopri.encodestring(human).decode("ascii").replace("\r\n", "\n").replace("\n", "\r\n")
    out.append(text if text.endswith("\r\n") else text + "\r\n")

    out += [f"\r\n--{boundary}\r\n", "Content-Type: message/delivery-status\r\n", "\r\n"]
    out.append(f"Reporting-MTA: dns; {_clean(reporting_mta, 200)}\r\n")
    if envid:
        out.append(_fold("Original-Envelope-Id", _clean(decode_xtext(envid), 100)))
    if arrival_date is not None:
        out.append(f"Arrival-Date: {_date(arrival_date)}\r\n")
    for r in recipients:
        out.append("\r\n")
        if r.original_recipient:
            kind, _, addr = r.original_recipient.partition(";")
            if not addr:
                kind, addr = "rfc822", kind
            out.append(f"Original-Recipient: {_clean(kind, 20)};{_clean(decode_xtext(addr))}\r\n")
        out.append(f"Final-Recipient: rfc822; {_clean(r.final_recipient)}\r\n")
        out.append(f"Action: {r.action}\r\n")
        out.append(f"Status: {r.status}\r\n")
        if r.remote_mta:
            out.append(f"Remote-MTA: dns; {_clean(r.remote_mta, 200)}\r\n")
        if r.diagnostic:
            out.append(_fold("Diagnostic-Code", f"smtp; {_clean(r.diagnostic)}"))
        if r.last_attempt is not None:
            out.append(f"Last-Attempt-Date: {_date(r.last_attempt)}\r\n")
        if r.will_retry_until is not None:
            out.append(f"Will-Retry-Until: {_date(r.will_retry_until)}\r\n")

    full = ret is not None and ret.upper() == "FULL" and main == "failed"
    parts = [item.encode("ascii") for item in out]
    if full:
        parts.append(f"\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n".encode("ascii"))
        parts.append(original if original.endswith(b"\n") else original + b"\r\n")
    else:
        parts.append(
            f"\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n".encode("ascii")
        )
        parts.append(headers)
    parts.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(parts)
