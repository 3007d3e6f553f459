"""A small asyncio IMAP4rev1 client (RFC 3501) with IDLE (RFC 2177), MOVE (RFC 6851) and
UIDPLUS-free fallbacks, enough for the integration agent to work with any IMAP server.

TLS: implicit (port 993) or STARTTLS (RFC 3501 §6.2.1), the server certificate always
verified. Authentication: ``AUTHENTICATE PLAIN`` (RFC 4959 initial response) when offered,
else ``LOGIN``. Literals are read by count, so message bodies pass through untouched.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
from dataclasses import dataclass

from caducee.core.errors import AuthenticationFailed, CaduceeError

__all__ = ["ImapClient", "ImapError", "ImapSettings"]

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_MAX_LITERAL = 64 * 1024 * 1024
_UID = re.compile(rb"UID (\d+)")


class ImapError(CaduceeError):
    """The IMAP server answered NO/BAD or broke the protocol."""


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    user: str
    password: str
    tls: str = "starttls"  # "starttls" | "implicit"
    ca_file: str | None = None
    timeout: float = 30.0

    def __repr__(self) -> str:
        return f"ImapSettings(host={self.host!r}, port={self.port}, user={self.user!r})"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapClient:
    def __init__(self, settings: ImapSettings) -> None:
        self.s = settings
        self._r: asyncio.StreamReader | None = None
        self._w: asyncio.StreamWriter | None = None
        self._tag = 0
        self.capabilities: set[str] = set()

    # -- wire -------------------------------------------------------------------------------
    def _io(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._r is None or self._w is None:
            raise ImapError("IMAP client is not connected")
        return self._r, self._w

    async def _readline(self) -> bytes:
        reader, _ = self._io()
        line = await asyncio.wait_for(reader.readline(), self.s.timeout)
        if not line:
            raise ImapError("IMAP server closed the connection")
        return line

    async def _read_response(self) -> list[bytes]:
        """One response line with its literals inlined (``{n}`` followed by n bytes)."""
        reader, _ = self._io()
        parts: list[bytes] = []
        line = await self._readline()
        while True:
            parts.append(line)
            m = _LITERAL.search(line)
            if not m:
                return parts
            size = int(m.group(1))
            if size > _MAX_LITERAL:
                raise ImapError("IMAP literal too large")
            parts.append(await asyncio.wait_for(reader.readexactly(size), self.s.timeout))
            line = await self._readline()

    async def command(self, cmd: str) -> list[list[bytes]]:
        """Send ``cmd``; return the untagged responses; raise on NO/BAD."""
        _, writer = self._io()
        self._tag += 1
        tag = f"C{self._tag}".encode()
        writer.write(tag + b" " + cmd.encode("utf-8") + b"\r\n")
        await writer.drain()
        untagged: list[list[bytes]] = []
        while True:
            resp = await self._read_response()
            first = resp[0]
            if first.startswith(tag + b" "):
                status = first[len(tag) + 1 :].split(b" ", 1)[0].upper()
                if status != b"OK":
                    verb = cmd.split(" ", 1)[0]
                    why = first[len(tag) + 1 :].decode(errors="replace").strip()
                    raise ImapError(f"IMAP {verb} failed: {why}")
                return untagged
            untagged.append(resp)

    # -- session ----------------------------------------------------------------------------
    async def connect(self) -> None:
        ctx = ssl.create_default_context(cafile=self.s.ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.s.tls == "implicit":
            self._r, self._w = await asyncio.wait_for(
                asyncio.open_connection(
                    self.s.host, self.s.port, ssl=ctx, server_hostname=self.s.host
                ),
                self.s.timeout,
            )
            await self._readline()
        else:
            self._r, self._w = await asyncio.wait_for(
                asyncio.open_connection(self.s.host, self.s.port), self.s.timeout
            )
            await self._readline()
            await self.command("STARTTLS")
            _, writer = self._io()
            await writer.start_tls(ctx, server_hostname=self.s.host)
        await self._capability()
        await self._login()

    async def _capability(self) -> None:
        caps: set[str] = set()
        for resp in await self.command("CAPABILITY"):
            if resp[0].upper().startswith(b"* CAPABILITY"):
                caps |= {c.upper() for c in resp[0].decode().split()[2:]}
        self.capabilities = caps

    async def _login(self) -> None:
        try:
            if "AUTH=PLAIN" in self.capabilities:
                token = base64.b64encode(
                    f"\x00{self.s.user}\x00{self.s.password}".encode()
                ).decode()
                await self.command(f"AUTHENTICATE PLAIN {token}")
            else:
                await self.command(f"LOGIN {_quote(self.s.user)} {_quote(self.s.password)}")
        except ImapError as exc:
            raise AuthenticationFailed("IMAP server refused the credentials") from exc
        await self._capability()

    async def close(self) -> None:
        if self._w is None:
            return
        with contextlib.suppress(ImapError, OSError, TimeoutError):
            await asyncio.wait_for(self.command("LOGOUT"), 5)
        writer = self._w
        self._w = self._r = None
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()

    # -- mailbox operations ---------------------------------------------------------------
    async def select(self, mailbox: str) -> int:
        exists = 0
        for resp in await self.command(f"SELECT {_quote(mailbox)}"):
            words = resp[0].split()
            if len(words) >= 3 and words[2].upper() == b"EXISTS":
                exists = int(words[1])
        return exists

    async def ensure_mailbox(self, mailbox: str) -> None:
        # An error here means "already exists" (servers differ on the response code).
        with contextlib.suppress(ImapError):
            await self.command(f"CREATE {_quote(mailbox)}")

    async def uid_search_all(self) -> list[int]:
        uids: list[int] = []
        for resp in await self.command("UID SEARCH UNDELETED"):
            if resp[0].upper().startswith(b"* SEARCH"):
                uids.extend(int(x) for x in resp[0].split()[2:])
        return sorted(uids)

    async def uid_fetch(self, uid: int) -> bytes | None:
        for resp in await self.command(f"UID FETCH {uid} (UID BODY.PEEK[])"):
            if len(resp) >= 2 and b"FETCH" in resp[0].upper():
                return resp[1]
        return None

    async def uid_fetch_many(self, uids: list[int]) -> dict[int, bytes]:
        """``UID FETCH`` of several messages in one round trip: ``{uid: message bytes}``."""
        if not uids:
            return {}
        out: dict[int, bytes] = {}
        for resp in await self.command(f"UID FETCH {','.join(map(str, uids))} (UID BODY.PEEK[])"):
            if len(resp) < 2 or b"FETCH" not in resp[0].upper():
                continue
            m = _UID.search(resp[0].upper()) or _UID.search(resp[-1].upper())
            if m:
                out[int(m.group(1))] = resp[1]
        return out

    async def uid_move(self, uid: int | list[int], mailbox: str) -> None:
        """Move messages (RFC 6851 MOVE, else COPY + \\Deleted + EXPUNGE)."""
        ids = ",".join(map(str, uid)) if isinstance(uid, list) else str(uid)
        if "MOVE" in self.capabilities:
            await self.command(f"UID MOVE {ids} {_quote(mailbox)}")
            return
        await self.command(f"UID COPY {ids} {_quote(mailbox)}")
        await self.command(f"UID STORE {ids} +FLAGS.SILENT (\\Deleted)")
        if "UIDPLUS" in self.capabilities:
            await self.command(f"UID EXPUNGE {ids}")
        else:
            await self.command("EXPUNGE")

    async def append(self, mailbox: str, data: bytes) -> None:
        _, writer = self._io()
        self._tag += 1
        tag = f"C{self._tag}".encode()
        writer.write(tag + f" APPEND {_quote(mailbox)} {{{len(data)}}}\r\n".encode())
        await writer.drain()
        line = await self._readline()
        if not line.startswith(b"+"):
            raise ImapError("IMAP APPEND refused")
        writer.write(data + b"\r\n")
        await writer.drain()
        while True:
            resp = await self._read_response()
            if resp[0].startswith(tag + b" "):
                if not resp[0][len(tag) + 1 :].upper().startswith(b"OK"):
                    raise ImapError("IMAP APPEND failed")
                return

    async def idle(self, wait: float, stop: asyncio.Event | None = None) -> bool:
        """Wait (RFC 2177 IDLE) until the server reports a change, ``wait`` seconds pass or
        ``stop`` is set; then leave IDLE cleanly (``DONE``). True when something changed.

        Without IDLE support, sleeps (at most 5 s) then NOOPs.
        """
        if "IDLE" not in self.capabilities:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for((stop or asyncio.Event()).wait(), min(wait, 5.0))
            await self.command("NOOP")
            return True
        reader, writer = self._io()
        self._tag += 1
        tag = f"C{self._tag}".encode()
        writer.write(tag + b" IDLE\r\n")
        await writer.drain()
        cont = await self._readline()
        if not cont.startswith(b"+"):
            raise ImapError("IMAP IDLE refused")
        changed = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
        try:
            while not changed:
                remaining = deadline - loop.time()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    break
                line_task = asyncio.ensure_future(reader.readline())
                waiting: set[asyncio.Future[object]] = {line_task}  # type: ignore[arg-type]
                if stopper is not None:
                    waiting.add(stopper)  # type: ignore[arg-type]
                done, _ = await asyncio.wait(
                    waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if line_task not in done:
                    line_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await line_task
                    break
                line = line_task.result()
                if not line:
                    raise ImapError("IMAP server closed the connection")
                words = line.split()
                if len(words) >= 3 and words[2].upper() in (b"EXISTS", b"RECENT"):
                    changed = True
        finally:
            if stopper is not None:
                stopper.cancel()
        writer.write(b"DONE\r\n")
        await writer.drain()
        while True:
            resp = await self._read_response()
            if resp[0].startswith(tag + b" "):
                return changed
