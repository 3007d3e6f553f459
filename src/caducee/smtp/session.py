"""The SMTP session state machine shared by relay-in and submission (RFC 5321 §3, §4.1).

The session validates commands and sequence; a :class:`Handler` (relay or submission) decides
policy and does the side effects, like aiosmtpd's engine/handler split. Both servers require
STARTTLS before anything but EHLO/HELO/NOOP/RSET/QUIT/STARTTLS (RFC 3207 §4: ``530 5.7.0``).
DATA is streamed through :class:`~caducee.smtp.protocol.DataDecoder` into a ``BlobWriter``;
a message is never held whole in memory, and any failure or disconnect aborts the writer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
import secrets
import ssl
from dataclasses import dataclass, field
from typing import Any

from caducee.core.errors import AuthenticationFailed, InvalidInput
from caducee.core.model import Account
from caducee.smtp.protocol import (
    MAX_AUTH_LINE,
    MAX_COMMAND_LINE,
    DataDecoder,
    HeaderCollector,
    MailFrom,
    RcptTo,
    Reply,
    SmtpSyntaxError,
    format_received,
    parse_command,
    parse_mail,
    parse_rcpt,
)
from caducee.smtp.sasl import SaslCancelled, SaslMechanism, for_connection
from caducee.smtp.server import Connection, LineTooLong
from caducee.storage.interfaces import BlobWriter

__all__ = ["Handler", "Limits", "Session", "Transaction"]

log = logging.getLogger("caducee.smtp")

_PRE_TLS = frozenset({"EHLO", "HELO", "NOOP", "RSET", "QUIT", "STARTTLS"})
_HTTP = frozenset({"GET", "POST", "PUT", "HEAD", "CONNECT", "OPTIONS", "DELETE"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Session limits (RFC 5321 §4.5.3: minimum 100 recipients; §4.5.3.2 timeouts)."""

    max_message_bytes: int = 25 * 1024 * 1024
    max_recipients: int = 100
    command_timeout: float = 300.0
    data_timeout: float = 180.0
    handshake_timeout: float = 30.0
    max_errors: int = 10
    max_sessions: int = 1000
    max_header_bytes: int = 256 * 1024


@dataclass(slots=True)
class Transaction:
    """One mail transaction (MAIL .. DATA). ``local`` and ``remote`` are filled by handlers."""

    mail: MailFrom
    queue_id: str
    rcpts: list[RcptTo] = field(default_factory=list)
    local: dict[str, int] = field(default_factory=dict)  # address key -> mailbox id
    remote: list[RcptTo] = field(default_factory=list)
    sender_mailbox_id: int | None = None


class Handler:
    """Policy and side effects of one kind of server; the defaults refuse politely."""

    kind = "smtp"
    mechanisms: dict[str, SaslMechanism] = {}  # noqa: RUF012 - read-only default
    # Final delivery (RFC 5321 §4.4): a Return-Path field goes before our Received field.
    final_delivery = False

    def tls_context(self) -> ssl.SSLContext:
        raise NotImplementedError

    def wants_headers(self) -> bool:
        return False

    async def on_connect(self, s: Session) -> Reply | None:
        """A refusal reply closes the connection before the greeting."""
        return None

    async def on_tls_failed(self, s: Session, exc: BaseException) -> None:
        return None

    async def on_refused_before_tls(self, s: Session, verb: str) -> None:
        return None

    async def on_auth(self, s: Session, account: Account | None, mechanism: str) -> None:
        return None

    async def on_mail(self, s: Session, mail: MailFrom) -> Reply | None:
        return None

    async def on_rcpt(self, s: Session, tx: Transaction, rcpt: RcptTo) -> Reply:
        return Reply(550, "5.1.1", "No such recipient")

    async def on_message(
        self, s: Session, tx: Transaction, blob: BlobWriter, headers: HeaderCollector | None
    ) -> Reply:
        """Commits (or aborts) ``blob`` and stores the message durably before returning 2xx."""
        await blob.abort()
        return Reply(554, "5.3.0", "Not accepting mail")

    async def on_data_refused(self, s: Session, tx: Transaction, reply: Reply) -> None:
        return None

    def new_writer(self) -> BlobWriter:
        raise NotImplementedError


class Session:
    """Runs one SMTP conversation over a :class:`Connection`."""

    def __init__(
        self, conn: Connection, handler: Handler, *, hostname: str, limits: Limits
    ) -> None:
        self.conn = conn
        self.handler = handler
        self.hostname = hostname
        self.limits = limits
        self.peer_ip = conn.peer[0]
        self.helo: str | None = None
        self.esmtp = False
        self.tls = False
        self.tls_info: str | None = None
        self.peer_cert_der: bytes | None = None
        # what this connection offers: EXTERNAL only once a verified client cert is known
        self.mechanisms = for_connection(handler.mechanisms, None)
        self.account: Account | None = None
        self.tx: Transaction | None = None
        self.errors = 0
        self.state: dict[str, Any] = {}  # handler's per-session data
        self._quit = False

    # -- output ------------------------------------------------------------------------------

    def reply(self, r: Reply) -> None:
        self.conn.write(_render(r, self.esmtp))

    # -- main loop -----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            refusal = await self.handler.on_connect(self)
            if refusal is not None:
                self.reply(refusal)
                return
            self.conn.write(f"220 {self.hostname} ESMTP ready\r\n".encode())
            while not self._quit and not self.conn.closed:
                try:
                    line = await self.conn.readline(MAX_COMMAND_LINE, self.limits.command_timeout)
                except LineTooLong:
                    self.reply(Reply(500, "5.5.2", "Line too long"))
                    if self._count_error():
                        return
                    continue
                await self._dispatch(line)
        except TimeoutError:
            self.reply(Reply(421, "4.4.2", f"{self.hostname} Timeout, closing connection"))
        except (ConnectionError, OSError):
            pass
        except Exception:  # a bug or a storage failure: never a traceback to the peer
            log.exception("SMTP session from %s failed", self.peer_ip)
            self.reply(Reply(421, "4.3.0", f"{self.hostname} Local error, closing connection"))
        finally:
            await self.conn.close()

    def _count_error(self) -> bool:
        self.errors += 1
        if self.errors >= self.limits.max_errors:
            self.reply(Reply(421, "4.7.0", f"{self.hostname} Too many errors, closing"))
            self._quit = True
            return True
        return False

    async def _dispatch(self, line: bytes) -> None:
        if not line.endswith(b"\r\n"):
            self.reply(Reply(500, "5.5.2", "Syntax error: lines must end with CRLF"))
            self._count_error()
            return
        try:
            verb, arg = parse_command(line[:-2])
        except SmtpSyntaxError as err:
            self.reply(err.reply)
            self._count_error()
            return
        if verb in _HTTP:
            self._quit = True  # an HTTP client or a cross-protocol attack: hang up
            self.reply(Reply(221, "2.7.0", "Not an SMTP client, bye"))
            return
        if not self.tls and verb not in _PRE_TLS:
            await self.handler.on_refused_before_tls(self, verb)
            self.reply(Reply(530, "5.7.0", "Must issue a STARTTLS command first"))
            self._count_error()
            return
        method = getattr(self, f"cmd_{verb.lower()}", None)
        if method is None:
            self.reply(Reply(500, "5.5.2", "Command unrecognized"))
            self._count_error()
            return
        try:
            await method(arg)
        except SmtpSyntaxError as err:
            self.reply(err.reply)
            self._count_error()

    # -- commands ------------------------------------------------------------------------

    async def cmd_ehlo(self, arg: str) -> None:
        await self._hello(arg, esmtp=True)

    async def cmd_helo(self, arg: str) -> None:
        await self._hello(arg, esmtp=False)

    async def _hello(self, arg: str, *, esmtp: bool) -> None:
        if not arg or " " in arg:
            raise SmtpSyntaxError(501, "5.5.4", "Syntax: EHLO domain-or-address-literal")
        self.helo = arg[:255]
        self.esmtp = esmtp
        self.tx = None
        if not esmtp:
            self.reply(Reply(250, "", self.hostname))
            return
        lines = [
            self.hostname,
            "PIPELINING",
            f"SIZE {self.limits.max_message_bytes}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "DSN",
        ]
        if not self.tls:
            lines.append("STARTTLS")
        elif self.mechanisms and self.account is None:
            lines.append("AUTH " + " ".join(self.mechanisms))
        self.reply(Reply(250, "", tuple(lines)))

    async def cmd_starttls(self, arg: str) -> None:
        if arg:
            raise SmtpSyntaxError(501, "5.5.4", "STARTTLS takes no parameter")
        if self.tls:
            raise SmtpSyntaxError(503, "5.5.1", "TLS already active")
        self.reply(Reply(220, "2.0.0", "Ready to start TLS"))
        if self.conn.buffered:  # pipelined after STARTTLS: injection attempt, dropped
            log.info("discarded %d plaintext bytes after STARTTLS", self.conn.buffered)
        try:
            await self.conn.start_tls(self.handler.tls_context(), self.limits.handshake_timeout)
        except (ssl.SSLError, OSError, TimeoutError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            self._quit = True  # the connection closes (the TLS alert was sent)
            await self.handler.on_tls_failed(self, exc)
            return
        self.tls = True
        obj = self.conn.get_extra_info("ssl_object")
        if isinstance(obj, ssl.SSLObject):
            cipher = obj.cipher()
            self.tls_info = f"using {obj.version()} with cipher {cipher[0] if cipher else '?'}"
            self.peer_cert_der = obj.getpeercert(binary_form=True)
        self.mechanisms = for_connection(self.handler.mechanisms, self.peer_cert_der)
        # RFC 3207 §4.2: forget everything learnt before TLS.
        self.helo = None
        self.esmtp = False
        self.tx = None

    async def cmd_auth(self, arg: str) -> None:
        mechs = self.mechanisms
        if not mechs:
            raise SmtpSyntaxError(502, "5.5.1", "AUTH not available on this service")
        if self.helo is None or not self.esmtp:
            raise SmtpSyntaxError(503, "5.5.1", "Send EHLO first")
        if self.account is not None:
            raise SmtpSyntaxError(503, "5.5.1", "Already authenticated")
        if self.tx is not None:
            raise SmtpSyntaxError(503, "5.5.1", "AUTH not allowed during a mail transaction")
        name, _, initial_text = arg.partition(" ")
        mech = mechs.get(name.upper())
        if mech is None:
            raise SmtpSyntaxError(504, "5.5.4", "Unrecognized authentication type")
        initial: bytes | None = None
        if initial_text:
            initial = b"" if initial_text == "=" else _b64(initial_text)

        async def challenge(data: bytes) -> bytes:
            self.conn.write(b"334 " + base64.b64encode(data) + b"\r\n")
            try:
                line = await self.conn.readline(MAX_AUTH_LINE, self.limits.command_timeout)
            except LineTooLong:
                raise SmtpSyntaxError(500, "5.5.6", "Authentication line too long") from None
            text = line.rstrip(b"\r\n").decode("ascii", errors="replace")
            if text == "*":
                raise SaslCancelled("cancelled")
            return _b64(text)

        try:
            account = await mech.authenticate(initial, challenge)
        except SaslCancelled:
            self.reply(Reply(501, "5.0.0", "Authentication cancelled"))
            return
        except (AuthenticationFailed, InvalidInput) as exc:
            if isinstance(exc, SmtpSyntaxError):
                raise
            await self.handler.on_auth(self, None, mech.name)
            self.reply(Reply(535, "5.7.8", "Authentication credentials invalid"))
            self._count_error()
            return
        self.account = account
        await self.handler.on_auth(self, account, mech.name)
        self.reply(Reply(235, "2.7.0", "Authentication successful"))

    async def cmd_mail(self, arg: str) -> None:
        if self.helo is None:
            raise SmtpSyntaxError(503, "5.5.1", "Send EHLO/HELO first")
        if self.tx is not None:
            raise SmtpSyntaxError(503, "5.5.1", "Nested MAIL command")
        mail = parse_mail(arg, max_size=self.limits.max_message_bytes)
        if (mail.smtputf8 or mail.body != "7BIT") and not self.esmtp:
            raise SmtpSyntaxError(555, "5.5.4", "Parameters need EHLO")
        refusal = await self.handler.on_mail(self, mail)
        if refusal is not None:
            self.reply(refusal)
            if refusal.code >= 500:
                self._count_error()
            return
        self.tx = Transaction(mail=mail, queue_id=secrets.token_hex(8))
        self.reply(Reply(250, "2.1.0", "Sender ok"))

    async def cmd_rcpt(self, arg: str) -> None:
        tx = self.tx
        if tx is None:
            raise SmtpSyntaxError(503, "5.5.1", "Need MAIL before RCPT")
        if len(tx.rcpts) >= self.limits.max_recipients:
            self.reply(Reply(452, "4.5.3", "Too many recipients"))
            return
        rcpt = parse_rcpt(arg, smtputf8=tx.mail.smtputf8)
        result = await self.handler.on_rcpt(self, tx, rcpt)
        if 200 <= result.code < 300:
            tx.rcpts.append(rcpt)
        self.reply(result)
        if result.code >= 500:  # like Postfix's hard error limit: no endless probing
            self._count_error()

    async def cmd_data(self, arg: str) -> None:
        tx = self.tx
        if arg:
            raise SmtpSyntaxError(501, "5.5.4", "DATA takes no parameter")
        if tx is None:
            raise SmtpSyntaxError(503, "5.5.1", "Need MAIL before DATA")
        if not tx.rcpts:
            raise SmtpSyntaxError(554, "5.5.1", "No valid recipients")
        self.reply(Reply(354, "", "End data with <CR><LF>.<CR><LF>"))
        self.tx = None
        await self._receive(tx)

    async def _receive(self, tx: Transaction) -> None:
        decoder = DataDecoder(max_size=self.limits.max_message_bytes)
        headers = (
            HeaderCollector(self.limits.max_header_bytes) if self.handler.wants_headers() else None
        )
        first = self.handler.new_writer()
        writer: BlobWriter | None = first
        handed_over = False
        try:
            protocol = "ESMTP" if self.esmtp else "SMTP"
            if tx.mail.smtputf8:
                protocol = "UTF8SMTP"
            protocol += "S" if self.tls else ""
            protocol += "A" if self.account is not None else ""
            received = format_received(
                helo=self.helo or "unknown",
                peer_ip=self.peer_ip,
                hostname=self.hostname,
                protocol=protocol,
                queue_id=tx.queue_id,
                tls=self.tls_info,
                recipient=tx.rcpts[0].address if len(tx.rcpts) == 1 else None,
            )
            if self.handler.final_delivery:
                received = b"Return-Path: <" + tx.mail.address.encode() + b">\r\n" + received
            await first.write(received)
            while True:
                chunk = await self.conn.read_chunk(self.limits.data_timeout)
                if not chunk:
                    raise ConnectionResetError("disconnected during DATA")
                content, rest = decoder.feed(chunk)
                if writer is not None and decoder.outcome.refusal is not None:
                    await writer.abort()  # keep reading to the end, store nothing
                    writer = None
                if writer is not None and content:
                    if headers is not None:
                        headers.feed(content)
                    await writer.write(content)
                if rest is not None:
                    self.conn.unread(rest)
                    break
            refusal = decoder.outcome.refusal
            if refusal is not None or writer is None:
                reply = refusal or Reply(451, "4.3.0", "Local error")
                await self.handler.on_data_refused(self, tx, reply)
                self.reply(reply)
                return
            if headers is not None:
                headers.finish()
            handed_over = True
            result = await self.handler.on_message(self, tx, writer, headers)
            self.reply(result)
        finally:
            if writer is not None and not handed_over:
                with contextlib.suppress(Exception):
                    await writer.abort()

    async def cmd_rset(self, arg: str) -> None:
        self.tx = None
        self.reply(Reply(250, "2.0.0", "Reset ok"))

    async def cmd_noop(self, arg: str) -> None:
        self.reply(Reply(250, "2.0.0", "Ok"))

    async def cmd_quit(self, arg: str) -> None:
        self._quit = True
        self.reply(Reply(221, "2.0.0", f"{self.hostname} closing connection"))

    async def cmd_vrfy(self, arg: str) -> None:
        self.reply(Reply(252, "2.5.0", "Cannot VRFY; send some mail"))

    async def cmd_expn(self, arg: str) -> None:
        self.reply(Reply(502, "5.5.1", "EXPN not available"))

    async def cmd_help(self, arg: str) -> None:
        self.reply(Reply(214, "2.0.0", "See RFC 5321"))


@functools.lru_cache(maxsize=512)
def _render(r: Reply, esmtp: bool) -> bytes:
    """Reply bytes; enhanced status codes only after EHLO (RFC 2034 §3)."""
    if not esmtp and r.enhanced:
        r = Reply(r.code, "", r.text)
    return r.to_bytes()


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SmtpSyntaxError(501, "5.5.2", "Invalid base64 data") from exc
