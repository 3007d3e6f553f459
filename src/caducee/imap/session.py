"""One IMAP session: reads commands through the framer, dispatches them by state (RFC 9051
§3, §6), writes responses. Command families live in ``cmd_*`` modules.

Errors map in one place: ``Reply`` carries NO/BAD with a response code; domain errors map to
RFC 5530 codes; anything unexpected becomes ``NO [SERVERBUG]`` -- never a traceback, never a
dropped connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from caducee.core.errors import (
    AuthenticationFailed,
    CaduceeError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
)
from caducee.core.model import Account, AuditEvent
from caducee.imap.connection import Connection, ConnectionClosed
from caducee.imap.framing import (
    BigLiteralChunk,
    BigLiteralEnd,
    BigLiteralStart,
    CommandReady,
    Framer,
    NeedContinuation,
    Rejected,
)
from caducee.imap.lexer import Literal, ParseError
from caducee.imap.names import BalView, own_and_shared
from caducee.imap.parser import AuthArgs, Command, LoginArgs, parse_command
from caducee.imap.search import BadCharset
from caducee.imap.view import SelectedView, SharedFolderReader
from caducee.smtp.sasl import SaslCancelled, for_connection
from caducee.storage.interfaces import BlobWriter, ChangeWatch

if TYPE_CHECKING:
    from caducee.imap.server import ServerContext

__all__ = ["Reply", "Session"]

log = logging.getLogger(__name__)


class Reply(Exception):
    """A tagged NO or BAD: ``code`` is the response code without brackets (may be "")."""

    def __init__(self, status: str, code: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.code = code
        self.text = text


def no(code: str, text: str) -> Reply:
    return Reply("NO", code, text)


def bad(text: str) -> Reply:
    return Reply("BAD", "", text)


NOT_AUTH, AUTH, SELECTED, LOGOUT = "not-auth", "auth", "selected", "logout"
Handler = Callable[["Session", Command], Awaitable[bytes]]
_ANY = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "ID"})
_NOT_AUTH = frozenset({"STARTTLS", "AUTHENTICATE", "LOGIN"})
_SELECTED = frozenset(
    {
        "CLOSE",
        "UNSELECT",
        "EXPUNGE",
        "SEARCH",
        "SORT",
        "THREAD",
        "FETCH",
        "STORE",
        "COPY",
        "MOVE",
        "CHECK",
    }
)


class Session:
    """State of one connection (RFC 9051 §3)."""

    def __init__(self, ctx: ServerContext, conn: Connection, implicit_tls: bool) -> None:
        self.ctx = ctx
        self.conn = conn
        self.implicit_tls = implicit_tls
        st = ctx.settings
        self.framer = Framer(
            max_line=st.max_line, max_literal=st.max_literal, inline_literal=st.inline_literal
        )
        self.state = NOT_AUTH
        # what this connection offers: EXTERNAL only once a verified client cert is known
        self.mechanisms = for_connection(ctx.mechanisms, None)
        self.account: Account | None = None
        self.views: list[BalView] = []
        self._views_epoch = -1  # the ACL epoch ``views`` was read at
        self.selected: SelectedView | None = None
        self.selected_bal: BalView | None = None
        self.out = bytearray()
        self.enabled: set[str] = set()
        self.auth_failures = 0
        self._spool: BlobWriter | None = None
        self._watcher: ChangeWatch | None = None
        self._watched = 0  # the folder id whose changes mark the session dirty
        self._dirty = True
        self.dirty_seq = 0  # SharedReads mark of the last change this session was told of
        self._spool_meta: tuple[int, bool] = (0, False)
        # read timeout (``_read``): one lazily re-armed timer per session
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._timeout = 0.0
        self._reading = False
        self._expired = False

    # -- properties -------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """The selected folder may have changed since the session last read it."""
        return self._dirty

    @dirty.setter
    def dirty(self, value: bool) -> None:
        if value:
            self.dirty_seq = self.ctx.shared.mark()
        self._dirty = value

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def utf8(self) -> bool:
        return "IMAP4REV2" in self.enabled or "UTF8=ACCEPT" in self.enabled

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled or "QRESYNC" in self.enabled

    @property
    def login(self) -> str:
        return self.account.login if self.account else ""

    def capabilities(self) -> str:
        caps = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE"]
        if not self.conn.is_tls:
            caps.append("STARTTLS")
            caps.append("LOGINDISABLED")
        elif self.state == NOT_AUTH:
            caps += [f"AUTH={name}" for name in self.mechanisms]
        if self.state != NOT_AUTH:
            caps += [
                "NAMESPACE",
                "UNSELECT",
                "UIDPLUS",
                "MOVE",
                "CHILDREN",
                "SPECIAL-USE",
                "CREATE-SPECIAL-USE",
                "LIST-EXTENDED",
                "LIST-STATUS",
                "ESEARCH",
                "SEARCHRES",
                "SORT",
                "SORT=DISPLAY",
                "ESORT",
                "THREAD=ORDEREDSUBJECT",
                "THREAD=REFERENCES",
                "CONDSTORE",
                "QRESYNC",
                "QUOTA",
                "QUOTA=RES-STORAGE",
                "ACL",
                "RIGHTS=texk",
                "BINARY",
                "MULTIAPPEND",
                "UTF8=ACCEPT",
                "STATUS=SIZE",
                f"APPENDLIMIT={self.ctx.settings.max_literal}",
            ]
        return " ".join(caps)

    def tls_started(self) -> None:
        """Binds the mechanisms to the verified client certificate (SASL EXTERNAL)."""
        self.mechanisms = for_connection(self.ctx.mechanisms, self.conn.peer_certificate())

    # -- output -----------------------------------------------------------------------------
    def untagged(self, line: bytes) -> None:
        self.out += b"* " + line + b"\r\n"

    async def flush(self) -> None:
        if self.out:
            data = bytes(self.out)
            self.out.clear()
            self.conn.write(data)
            await self.conn.drain()

    # -- main loop ------------------------------------------------------------------------
    async def run(self) -> None:
        self._task = asyncio.current_task()
        try:
            if self.implicit_tls:
                await self.conn.start_tls(self.ctx.tls_context())
                self.tls_started()
            self.out += b"* OK [CAPABILITY " + self.capabilities().encode() + b"] "
            self.out += self.ctx.settings.greeting.encode() + b"\r\n"
            await self.flush()
            await self._loop()
        except ConnectionClosed:
            pass
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            await self.settle_recent()
            self.watch(None)
            await self._abort_spool()
            self.conn.close()

    async def _read(self) -> bytes:
        """The next bytes from the client; BYE when none came within the timeout. One timer
        per session, re-armed lazily when it fires (a timer per read costs the event loop a
        heap push and a cancellation per command)."""
        st = self.ctx.settings
        self._timeout = st.preauth_timeout if self.state == NOT_AUTH else st.idle_timeout
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self._timeout
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._expire)
        self._reading = True
        try:
            data = await self.conn.read()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._expired or task is None or task.uncancel():
                raise  # cancelled for another reason (server stopping)
            self.out += b"* BYE Autologout; idle for too long\r\n"
            await self.flush()
            raise ConnectionClosed from None
        finally:
            self._reading = False
        if not data:
            raise ConnectionClosed
        return data

    def _expire(self) -> None:
        """The session timer: ends a read that waited past its deadline, else re-arms."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._reading and now >= self._deadline and self._task is not None:
            self._expired = True
            self._task.cancel()
            return
        if not self.conn.closed:  # in a command (or IDLE, timed on its own): look again later
            when = self._deadline if self._reading else now + self._timeout
            self._timer = loop.call_at(when, self._expire)

    async def _loop(self) -> None:
        while self.state != LOGOUT:
            event = self.framer.next_event()
            if event is None:
                self.framer.feed(await self._read())
                continue
            if isinstance(event, NeedContinuation):
                self.conn.write(b"+ Ready for literal data\r\n")
            elif isinstance(event, Rejected):
                await self._rejected(event.reason, event.texts)
            elif isinstance(event, BigLiteralStart):
                await self._big_literal(event)
            elif isinstance(event, BigLiteralChunk):
                if self._spool is not None:
                    await self._spool.write(event.data)
            elif isinstance(event, BigLiteralEnd):
                await self._end_big_literal()
            elif isinstance(event, CommandReady):
                await self._command(event.texts, event.literals)
                await self.flush()

    async def _rejected(self, reason: str, texts: list[bytes]) -> None:
        tag = _tag_of(texts)
        await self._abort_spool()
        if reason.startswith("literal too large"):
            self.out += (tag or b"*") + b" NO [TOOBIG] " + reason.encode() + b"\r\n"
        else:
            self.out += (tag or b"*") + b" BAD " + reason.encode() + b"\r\n"
        await self.flush()

    async def _big_literal(self, event: BigLiteralStart) -> None:
        words = event.texts[0].split(b" ", 3) if event.texts else []
        is_append = len(words) >= 2 and words[1].upper() == b"APPEND"
        if not is_append or self.state == NOT_AUTH:
            rejected = self.framer.refuse_big("literal too large for this command")
            await self._rejected(rejected.reason, rejected.texts)
            return
        self._spool = self.ctx.storage.blobs.writer()
        self._spool_meta = (event.size, event.binary)
        if event.sync:
            self.conn.write(b"+ Ready for literal data\r\n")

    async def _end_big_literal(self) -> None:
        writer, self._spool = self._spool, None
        if writer is None:
            return
        size, binary = self._spool_meta
        ref = await writer.commit()
        self.framer.attach_literal(Literal(size, None, binary, spool=ref))

    async def _abort_spool(self) -> None:
        writer, self._spool = self._spool, None
        if writer is not None:
            with contextlib.suppress(Exception):
                await writer.abort()

    async def _command(self, texts: list[bytes], literals: list[Literal]) -> None:
        try:
            cmd = parse_command(texts, literals)
        except BadCharset as exc:
            tag = (exc.tag or "*").encode()
            self.out += tag + b" NO [BADCHARSET (UTF-8 US-ASCII)] " + exc.reason.encode() + b"\r\n"
            return
        except ParseError as exc:
            tag = (exc.tag or "*").encode()
            self.out += tag + b" BAD " + exc.reason.encode("utf-8", "replace") + b"\r\n"
            return
        tag = cmd.tag.encode()
        try:
            text = await self._dispatch(cmd)
            self.out += tag + b" " + text + b"\r\n"
        except _Silent:
            return
        except Reply as reply:
            await self._sync_quietly()
            code = f"[{reply.code}] " if reply.code else ""
            self.out += tag + f" {reply.status} {code}{reply.text}\r\n".encode()
        except ConnectionClosed:
            raise
        except CaduceeError as exc:
            self.out += tag + b" NO " + _map_error(exc) + b"\r\n"
        except Exception:
            log.exception("imap: internal error in %s", cmd.name)
            self.out += tag + b" NO [SERVERBUG] Internal error, the incident is logged\r\n"

    async def _sync_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self.sync(allow_expunge=False)

    async def _dispatch(self, cmd: Command) -> bytes:
        name = cmd.name
        if name in _NOT_AUTH and self.state != NOT_AUTH:
            raise bad(f"{name} not allowed once authenticated")
        if name not in _ANY and name not in _NOT_AUTH and self.state == NOT_AUTH:
            raise bad(f"{name} needs authentication first")
        if (name in _SELECTED or cmd.uid) and self.state != SELECTED:
            raise bad(f"{name} needs a selected mailbox")
        handler = (_ALL_HANDLERS or _all_handlers()).get(name)
        if handler is None:
            raise bad(f"{name} not implemented")
        return await handler(self, cmd)

    # -- mailbox views ----------------------------------------------------------------------
    async def load_views(self) -> list[BalView]:
        """The BALs the account may see. Re-read whenever the store's ACL epoch moved, so a
        revoked right takes effect at the next command; otherwise the known list stands (the
        epoch is one small read, the list a join)."""
        accounts = self.ctx.storage.accounts
        epoch = await accounts.acl_epoch()  # before the list: a change after it re-reads
        if epoch == self._views_epoch:
            return self.views
        bals = await accounts.mailboxes_of(self.login)
        self.views = own_and_shared(self.login, bals)
        self._views_epoch = epoch
        return self.views

    async def sync(self, *, allow_expunge: bool) -> None:
        """Untagged updates on the selected mailbox (RFC 9051 §7.4, §7.5). The store is asked
        only when the change notifier said the folder changed (or expunges are pending)."""
        view = self.selected
        if view is None:
            return
        if not self.dirty and not (allow_expunge and view.gone):
            return
        self.dirty = False
        reader = SharedFolderReader(self.ctx.shared, self.ctx.storage.messages, self.dirty_seq)
        current = await reader.get_folder_by_id(view.folder.folder_id)
        before = set(view.recent)
        lines = await view.refresh(
            reader,
            current,
            allow_expunge=allow_expunge,
            rev1=not self.rev2,
            vanished="QRESYNC" in self.enabled,
        )
        arrived = view.recent - before
        if arrived and not self.rev2 and not view.readonly:
            lines = await self.claim_arrived(view, arrived, lines)
        for line in lines:
            self.out += line

    async def claim_arrived(
        self, view: SelectedView, arrived: set[int], lines: list[bytes]
    ) -> list[bytes]:
        """RFC 3501 §2.3.2: a message is \\Recent only in the first session told of it. The
        sessions that see it arrive race for it through the folder's persistent mark; the
        losers do not count it in their RECENT."""
        top = max(arrived)
        try:
            prev = await self.ctx.storage.messages.claim_recent(view.folder.folder_id, upto=top)
        except Exception:  # keep the session's own view if the store fails
            return lines
        view.recent_mark = max(view.recent_mark, top)
        lost = {u for u in arrived if u <= prev}
        if not lost:
            return lines
        view.recent -= lost
        count = b"* %d RECENT\r\n" % len(view.recent)
        return [count if ln.endswith(b" RECENT\r\n") and ln[2:3].isdigit() else ln for ln in lines]

    async def settle_recent(self) -> None:
        """Leaving a folder selected read-write: messages that arrived while it was selected
        were ``\\Recent`` in this session, so they are no one else's (RFC 3501 §2.3.2)."""
        view = self.selected
        if view is None or view.readonly or not view.recent:
            return
        top = max(view.recent)
        if top > view.recent_mark:
            view.recent_mark = top
            with contextlib.suppress(Exception):
                await self.ctx.storage.messages.claim_recent(view.folder.folder_id, upto=top)

    def watch(self, folder_id: int | None, mailbox_id: int = 0) -> None:
        """Follows changes of the selected folder through the notifier (also across nodes on
        PostgreSQL): marks the session dirty and wakes an IDLE wait. Subscribes at once, so
        nothing that happens after this call is missed."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        self.dirty = True
        if folder_id is not None:
            self._watched = folder_id
            self._watcher = self.ctx.storage.notifier.watch(mailbox_id, self._changed)

    def _changed(self, folder_id: int) -> None:
        """Notifier callback, run within the publisher's fan-out: must be quick."""
        if folder_id == self._watched or folder_id == 0:
            self.dirty = True
            self.conn.interrupt()

    async def audit(self, kind: str, outcome: str, target: str = "", **details: str) -> None:
        with contextlib.suppress(Exception):
            await self.ctx.storage.audit.record(
                AuditEvent(kind, outcome, self.login or "anonymous", target, details)
            )


def _tag_of(texts: list[bytes]) -> bytes | None:
    if not texts:
        return None
    tag = texts[0].split(b" ", 1)[0]
    if tag and len(tag) < 64 and all(0x21 <= c < 0x7F and c not in b'(){%*"\\+' for c in tag):
        return tag
    return None


def _map_error(exc: CaduceeError) -> bytes:
    if isinstance(exc, NotFound):
        return b"[NONEXISTENT] No such mailbox or message"
    if isinstance(exc, Conflict):
        return b"[ALREADYEXISTS] Already exists"
    if isinstance(exc, QuotaExceeded):
        return b"[OVERQUOTA] Quota exceeded"
    if isinstance(exc, PermissionDenied):
        return b"[NOPERM] Permission denied"
    if isinstance(exc, InvalidInput):
        return b"[CANNOT] " + str(exc).encode("utf-8", "replace")[:200]
    return b"[UNAVAILABLE] Temporary failure, try again later"


# -- any-state and not-authenticated commands -------------------------------------------------
async def _capability(s: Session, cmd: Command) -> bytes:
    s.untagged(b"CAPABILITY " + s.capabilities().encode())
    return b"OK CAPABILITY completed"


async def _noop(s: Session, cmd: Command) -> bytes:
    await s.sync(allow_expunge=True)
    return b"OK " + cmd.name.encode() + b" completed"


async def _logout(s: Session, cmd: Command) -> bytes:
    await s.settle_recent()
    s.untagged(b"BYE Logging out")
    s.state = LOGOUT
    return b"OK LOGOUT completed"


async def _id(s: Session, cmd: Command) -> bytes:
    s.untagged(b'ID ("name" "Caducee" "vendor" "Caducee")')
    return b"OK ID completed"


async def _starttls(s: Session, cmd: Command) -> bytes:
    if s.conn.is_tls:
        raise bad("TLS already active")
    s.out += cmd.tag.encode() + b" OK Begin TLS negotiation now\r\n"
    await s.flush()
    s.framer.reset()
    await s.conn.start_tls(s.ctx.tls_context())
    s.tls_started()
    raise _Silent


class _Silent(Reply):
    """Nothing more to send for this command."""

    def __init__(self) -> None:
        super().__init__("", "", "")


async def _login(s: Session, cmd: Command) -> bytes:
    if not s.conn.is_tls:
        raise no("PRIVACYREQUIRED", "LOGIN is disabled until STARTTLS")
    args = cmd.args
    if not isinstance(args, LoginArgs):
        raise bad("LOGIN needs a user name and a password")
    try:
        user = args.user.decode("utf-8")
        password = args.password.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("credentials must be UTF-8") from None
    account = await s.ctx.authenticator.verify_password(user, password)
    return await _logged_in(s, account, user)


async def _logged_in(s: Session, account: Account | None, user: str) -> bytes:
    if account is None or account.disabled:
        s.auth_failures += 1
        await s.audit("imap.login", "refused", user[:128] if account is None else account.login)
        await asyncio.sleep(s.ctx.settings.auth_failure_delay * min(s.auth_failures, 5))
        if s.auth_failures >= 5:
            s.untagged(b"BYE Too many authentication failures")
            s.state = LOGOUT
        raise no("AUTHENTICATIONFAILED", "Authentication failed")
    s.account = account
    s.state = AUTH
    await s.audit("imap.login", "ok", "", tls="yes")
    await s.load_views()
    return b"OK [CAPABILITY " + s.capabilities().encode() + b"] Logged in"


async def _authenticate(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, AuthArgs):
        raise bad("AUTHENTICATE needs a mechanism")
    mech = s.mechanisms.get(args.mechanism)
    if mech is None:
        raise no("CANNOT", "Unsupported authentication mechanism")
    if mech.needs_tls and not s.conn.is_tls:
        raise no("PRIVACYREQUIRED", "Use STARTTLS first")

    async def challenge(data: bytes) -> bytes:
        s.out += b"+ " + base64.b64encode(data) + b"\r\n"
        await s.flush()
        while True:
            event = s.framer.next_event()
            if event is None:
                s.framer.feed(await s._read())
                continue
            if not isinstance(event, CommandReady) or len(event.texts) != 1:
                raise bad("Invalid SASL response")
            line = event.texts[0].strip()
            if line == b"*":
                raise SaslCancelled("cancelled")
            try:
                return base64.b64decode(line, validate=True)
            except (binascii.Error, ValueError):
                raise bad("Invalid base64 in SASL response") from None

    initial: bytes | None = None
    if args.initial is not None:
        if args.initial == b"=":
            initial = b""
        else:
            try:
                initial = base64.b64decode(args.initial, validate=True)
            except (binascii.Error, ValueError):
                raise bad("Invalid base64 in initial response") from None
    try:
        account = await mech.authenticate(initial, challenge)
    except SaslCancelled:
        raise bad("Authentication cancelled") from None
    except (AuthenticationFailed, InvalidInput):
        return await _logged_in(s, None, "")
    return await _logged_in(s, account, account.login)


async def _enable(s: Session, cmd: Command) -> bytes:
    done: list[str] = []
    for cap in cmd.atoms:
        if cap in ("CONDSTORE", "QRESYNC", "IMAP4REV2", "UTF8=ACCEPT") and cap not in s.enabled:
            s.enabled.add(cap)
            done.append(cap if cap != "IMAP4REV2" else "IMAP4rev2")
            if cap == "QRESYNC":
                s.enabled.add("CONDSTORE")
    if s.selected is not None:
        s.selected.condstore = s.condstore
    s.untagged(b"ENABLED" + b"".join(b" " + c.encode() for c in done))
    return b"OK ENABLE completed"


async def _idle(s: Session, cmd: Command) -> bytes:
    """IDLE (RFC 2177 / RFC 9051 §6.3.13): push changes until the client sends DONE."""
    s.out += b"+ idling\r\n"
    await s.sync(allow_expunge=True)
    await s.flush()
    timeout = s.ctx.settings.idle_timeout
    while True:
        event = s.framer.next_event()
        if event is None:
            try:
                async with asyncio.timeout(timeout):
                    data = await s.conn.read(interruptible=True)
            except TimeoutError:
                s.out += b"* BYE IDLE timed out\r\n"
                await s.flush()
                raise ConnectionClosed from None
            if data is None:
                await s.sync(allow_expunge=True)
                await s.flush()
                continue
            if not data:
                raise ConnectionClosed
            s.framer.feed(data)
            continue
        if isinstance(event, CommandReady) and event.texts[0].strip().upper() == b"DONE":
            break
        if isinstance(event, NeedContinuation | BigLiteralStart):
            s.framer.reset()
        raise bad("Expected DONE")
    await s.sync(allow_expunge=True)
    return b"OK IDLE terminated"


_ALL_HANDLERS: dict[str, Handler] = {}


def _all_handlers() -> dict[str, Handler]:
    """Every command's handler, merged once (the command modules import this one)."""
    from caducee.imap import cmd_mailbox, cmd_message

    _ALL_HANDLERS.update(cmd_message.HANDLERS)
    _ALL_HANDLERS.update(cmd_mailbox.HANDLERS)
    _ALL_HANDLERS.update(_HANDLERS)
    return _ALL_HANDLERS


_HANDLERS: dict[str, Handler] = {
    "CAPABILITY": _capability,
    "NOOP": _noop,
    "CHECK": _noop,
    "LOGOUT": _logout,
    "ID": _id,
    "STARTTLS": _starttls,
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "ENABLE": _enable,
    "IDLE": _idle,
}
