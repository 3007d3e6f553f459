"""Test harness: a real ImapServer on real storage, in its own event-loop thread, so that
blocking clients (imaplib, raw sockets, external programs) can drive it from the test."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from caducee.core.model import MailboxType
from caducee.imap import ImapServer, ImapSettings
from caducee.storage import open_postgres, open_sqlite
from caducee.storage.interfaces import Storage
from caducee.storage.keyring import create_keyring
from caducee.storage.passwords import PasswordHasher
from caducee.testing.certs import IssuedCert, TrustSpaceCA

T = TypeVar("T")

DOMAIN = "hop.mssante.fr"
ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
CAROL = f"carol@{DOMAIN}"
ORG = f"secretariat@{DOMAIN}"
PASSWORD = "correct horse battery staple"
_HASHER = PasswordHasher(log2_n=4)  # cheap hashes: tests are about IMAP, not key stretching


@dataclass
class Pki:
    ca: TrustSpaceCA
    server: IssuedCert

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.server.chain_path, self.server.key_path)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca.ca_bundle))
        return ctx


def make_pki(directory: Path) -> Pki:
    ca = TrustSpaceCA.create(directory)
    server = ca.issue_server("localhost", dns_names=["localhost"])
    return Pki(ca, server)


class ServerThread:
    """Storage + ImapServer on a private loop in a thread; ``run(coro)`` from tests."""

    def __init__(
        self,
        tmp: Path,
        pki: Pki,
        *,
        pg_dsn: str | None = None,
        settings: ImapSettings | None = None,
    ) -> None:
        self.tmp = tmp
        self.pki = pki
        self.pg_dsn = pg_dsn
        self.settings = settings or ImapSettings(
            auth_failure_delay=0.0,
            max_literal=4 * 1024 * 1024,
            inline_literal=64 * 1024,
            stream_above=64 * 1024,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.storage: Storage | None = None
        self.server: ImapServer | None = None
        self.port = 0
        self.tls_port = 0

    def run(self, factory: Callable[[], Awaitable[T]] | Awaitable[T], timeout: float = 30) -> T:
        coro = factory() if callable(factory) else factory
        fut: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return fut.result(timeout)

    @property
    def st(self) -> Storage:
        assert self.storage is not None
        return self.storage

    def start(self, *, fresh: bool = True) -> ServerThread:
        self.thread.start()
        self.run(lambda: self._start(fresh))
        return self

    def stop_server_only(self) -> None:
        """Stops the server and closes the storage, keeping the data (for restart tests)."""
        self.stop()

    def restart(self) -> ServerThread:
        return ServerThread(self.tmp, self.pki, pg_dsn=self.pg_dsn, settings=self.settings).start(
            fresh=False
        )

    async def _start(self, fresh: bool = True) -> None:
        keyring = self.tmp / "keyring"
        if fresh:
            create_keyring(keyring)
        if self.pg_dsn:
            self.storage = await open_postgres(self.pg_dsn, keyring, hasher=_HASHER)
        else:
            self.storage = await open_sqlite(self.tmp / "data", keyring, hasher=_HASHER)
        if fresh:
            await self._populate()
        self.server = ImapServer(
            None,
            self.storage,
            self.pki.server_context(),
            self.storage.accounts,
            listen="127.0.0.1:0",
            listen_tls="127.0.0.1:0",
            settings=self.settings,
        )
        bound = await self.server.start()
        self.port, self.tls_port = bound[0][1], bound[1][1]

    async def _populate(self) -> None:
        acc = self.st.accounts
        for login in (ALICE, BOB, CAROL):
            await acc.create_account(login, PASSWORD, display_name=login.split("@")[0])
        await acc.create_mailbox(ALICE, MailboxType.PER, "810000000001")
        await acc.create_mailbox(BOB, MailboxType.PER, "810000000002")
        await acc.create_mailbox(CAROL, MailboxType.PER, "810000000003")
        await acc.create_mailbox(ORG, MailboxType.ORG, "123456789", display_name="Secrétariat")
        await acc.grant(ALICE, ORG, "lrswipkxtea")

    def stop(self) -> None:
        async def _stop() -> None:
            if self.server is not None:
                await self.server.stop()
            if self.storage is not None:
                await self.storage.close()
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            await asyncio.sleep(0.01)

        try:
            self.run(_stop)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
            gc.collect()  # surface any leaked socket in the test that leaked it

    def deliver(self, address: str, data: bytes, folder: str = "INBOX") -> int:
        async def _d() -> int:
            mb = await self.st.accounts.get_mailbox(address)
            assert mb is not None
            ref = await self.st.blobs.put(data)
            stored = await self.st.messages.deliver(ref, [mb.mailbox_id], folder=folder)
            return stored[0].uid

        return self.run(_d)


class Transcript:
    """A raw IMAP client over a real socket: send exact bytes, read exact responses."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket) -> None:
        self.sock = sock
        self.buf = b""
        self.sock.settimeout(10)

    @classmethod
    def connect(cls, port: int, pki: Pki | None = None) -> Transcript:
        sock: Any = socket.create_connection(("127.0.0.1", port))
        if pki is not None:
            sock = pki.client_context().wrap_socket(sock, server_hostname="localhost")
        return cls(sock)

    def starttls(self, pki: Pki, tag: str = "S") -> bytes:
        out = self.cmd(f"{tag} STARTTLS")
        self.sock = pki.client_context().wrap_socket(self.sock, server_hostname="localhost")
        return out

    def readline(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def read_response_line(self) -> bytes:
        """One response line including any literals it carries."""
        line = self.readline()
        out = line
        while line.rstrip().endswith(b"}") and b"{" in line:
            n = int(line.rstrip()[line.rstrip().rfind(b"{") + 1 : -1].rstrip(b"+"))
            while len(self.buf) < n:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buf += chunk
            out += self.buf[:n]
            self.buf = self.buf[n:]
            line = self.readline()
            out += line
        return out

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until_tagged(self, tag: str) -> bytes:
        out = b""
        while True:
            line = self.read_response_line()
            out += line
            if line.startswith(tag.encode() + b" "):
                return out

    def cmd(self, line: str | bytes) -> bytes:
        raw = line.encode() if isinstance(line, str) else line
        tag = raw.split(b" ", 1)[0].decode()
        self.send(raw + b"\r\n")
        return self.until_tagged(tag)

    def login(self, user: str = ALICE, password: str = PASSWORD) -> bytes:
        return self.cmd(f'L LOGIN "{user}" "{password}"')

    def close(self) -> None:
        self.sock.close()
