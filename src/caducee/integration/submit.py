"""SMTP submission client (RFC 6409) for any operator's submission port.

STARTTLS (RFC 3207) is mandatory and the server certificate is verified (system trust store or
``ca_file``); then AUTH PLAIN (RFC 4954, RFC 4616). A DSN (RFC 3461) is requested when the
server offers it: ``RET=HDRS`` and ``NOTIFY=SUCCESS,FAILURE,DELAY`` (Ref#2 ECO.2.3.1).
Blocking (smtplib); async callers run it in a thread (:func:`submit_async`).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses

from caducee.core.errors import AuthenticationFailed, CaduceeError, InvalidInput, PolicyRefused

__all__ = [
    "SubmissionSession",
    "SubmissionSettings",
    "SubmitResult",
    "parse_server",
    "submit",
    "submit_async",
]


@dataclass(frozen=True)
class SubmissionSettings:
    host: str
    port: int
    user: str
    password: str
    ca_file: str | None = None
    timeout: float = 30.0

    def __repr__(self) -> str:  # never show the password
        return f"SubmissionSettings(host={self.host!r}, port={self.port}, user={self.user!r})"


@dataclass(frozen=True)
class SubmitResult:
    refused: dict[str, tuple[int, bytes]]
    dsn_requested: bool


def parse_server(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidInput(f"server must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _recipients(msg: EmailMessage) -> list[str]:
    fields = [str(v) for h in ("To", "Cc", "Bcc") for v in msg.get_all(h, [])]
    return [addr for _, addr in getaddresses(fields) if addr]


class SubmissionSession:
    """One authenticated submission connection, reused for several messages (e.g. MDNs).

    Blocking; use it from one thread at a time. Reconnects once if the server dropped it.
    """

    def __init__(self, settings: SubmissionSettings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        st = self.settings
        ctx = ssl.create_default_context(cafile=st.ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        smtp = smtplib.SMTP(st.host, st.port, timeout=st.timeout)
        try:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise PolicyRefused("submission server does not offer STARTTLS; refusing to send")
            smtp.starttls(context=ctx)
            smtp.ehlo()
            smtp.user, smtp.password = st.user, st.password
            try:
                smtp.auth("PLAIN", smtp.auth_plain, initial_response_ok=True)
            except smtplib.SMTPAuthenticationError as exc:
                raise AuthenticationFailed("submission server refused the credentials") from exc
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(
        self, data: bytes, sender: str, recipients: list[str], *, dsn: bool = True
    ) -> SubmitResult:
        st = self.settings
        try:
            for attempt in (1, 2):
                if self._smtp is None:
                    self._smtp = self._connect()
                smtp = self._smtp
                use_dsn = dsn and smtp.has_extn("dsn")
                mail_opts = ["RET=HDRS"] if use_dsn else []
                if smtp.has_extn("8bitmime"):
                    mail_opts.append("BODY=8BITMIME")
                rcpt_opts = ["NOTIFY=SUCCESS,FAILURE,DELAY"] if use_dsn else []
                try:
                    refused = smtp.sendmail(
                        sender, recipients, data, mail_options=mail_opts, rcpt_options=rcpt_opts
                    )
                except smtplib.SMTPServerDisconnected:
                    self._smtp = None
                    if attempt == 2:
                        raise
                    continue
                return SubmitResult(refused=dict(refused), dsn_requested=use_dsn)
            raise CaduceeError("unreachable")  # pragma: no cover
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise PolicyRefused(
                f"submission server certificate not trusted: {exc.verify_message}"
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise PolicyRefused("every recipient was refused by the submission server") from exc
        except smtplib.SMTPResponseException as exc:
            raise PolicyRefused(
                f"submission server refused: {exc.smtp_code}", code=exc.smtp_code
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise CaduceeError(f"submission to {st.host}:{st.port} failed: {exc}") from exc

    def close(self) -> None:
        if self._smtp is not None:
            smtp, self._smtp = self._smtp, None
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()


def submit(
    msg: EmailMessage,
    settings: SubmissionSettings,
    *,
    envelope_from: str | None = None,
    recipients: list[str] | None = None,
    dsn: bool = True,
) -> SubmitResult:
    """Submit ``msg`` on a new connection; raise a :class:`CaduceeError` subclass on refusal."""
    rcpts = recipients or _recipients(msg)
    if not rcpts:
        raise InvalidInput("message has no recipient")
    sender = envelope_from or getaddresses([str(msg.get("From", ""))])[0][1]
    session = SubmissionSession(settings)
    try:
        return session.send(msg.as_bytes(), sender, rcpts, dsn=dsn)
    finally:
        session.close()


async def submit_async(
    msg: EmailMessage, settings: SubmissionSettings, **kwargs: object
) -> SubmitResult:
    """:func:`submit` in a worker thread."""
    return await asyncio.to_thread(submit, msg, settings, **kwargs)  # type: ignore[arg-type]
