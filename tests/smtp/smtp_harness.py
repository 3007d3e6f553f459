"""A real operator node for SMTP tests: SQLite storage, trust policy, certificates made per run.

The node serves domain ``b.test`` (mailboxes bob, alice, carol and the ORG BAL secretariat on
which alice is delegated). The liste blanche lists ``a.test`` (peer operator A, certificate
``pki.peer``), ``b.test`` (us) and ``c.test`` (another operator). Clients are the standard
library's ``smtplib`` over real TLS, run in a thread while the server runs on the test's loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import smtplib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from caducee.config.model import NodeConfig, TlsConfig
from caducee.core.model import AuditEvent, MailboxType
from caducee.smtp.relay import DeliveredMessage, RelayServer
from caducee.smtp.session import Limits
from caducee.smtp.submission import SubmissionServer
from caducee.storage import open_postgres, open_sqlite
from caducee.storage.interfaces import Storage
from caducee.storage.keyring import create_keyring
from caducee.storage.passwords import PasswordHasher
from caducee.testing.certs import IssuedCert, TrustSpaceCA
from caducee.trust.listeblanche import DomainEntry, ListeBlanche
from caducee.trust.policy import TrustPolicy

PASSWORDS = {"alice": "alice-Secret-1", "carol": "carol-Secret-2"}


@dataclass
class Pki:
    ca: TrustSpaceCA
    server: IssuedCert  # our node, mx.b.test
    peer: IssuedCert  # operator A, listed for a.test
    other_peer: IssuedCert  # operator C, listed for c.test
    expired: IssuedCert  # A's DN, expired
    revoked: IssuedCert  # A's DN, revoked (in the CRL)
    foreign: IssuedCert  # A's DN, from a CA outside the trust space
    unlisted: IssuedCert  # a trust-space certificate whose DN is listed nowhere
    cn_diff: IssuedCert  # A's CN, another O: DN differs
    crl_dir: Path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    ca = TrustSpaceCA.create(base / "ca")
    other = TrustSpaceCA.create_other(base / "other")
    a = {"ou": "11111111111111", "o": "OPERATEUR A", "st": "Paris (75)"}
    revoked = ca.issue_server("mx.a.test", **a)
    ca.revoke(revoked)
    crl_dir = base / "crl"
    ca.write_crl(crl_dir / "organisations.pem")
    ca.write_root_crl(crl_dir / "root.pem")
    return Pki(
        ca=ca,
        server=ca.issue_server("mx.b.test", "22222222222222", "OPERATEUR B", "Rhône (69)"),
        peer=ca.issue_server("mx.a.test", **a),
        other_peer=ca.issue_server("mx.c.test", "33333333333333", "OPERATEUR C", "Nord (59)"),
        expired=ca.issue_server("mx.a.test", **a, expired=True),
        revoked=revoked,
        foreign=other.issue_server("mx.a.test", **a),
        unlisted=ca.issue_server("mx.z.test", "99999999999999", "INCONNU", "Paris (75)"),
        cn_diff=ca.issue_server("mx.a.test", "11111111111111", "AUTRE ORGANISATION", "Paris (75)"),
        crl_dir=crl_dir,
    )


@dataclass
class Node:
    pki: Pki
    cfg: NodeConfig
    storage: Storage
    policy: TrustPolicy
    relay_addr: tuple[str, int]
    submission_addr: tuple[str, int]
    relay: RelayServer
    submission: SubmissionServer
    queued: list[int] = field(default_factory=list)
    delivered: list[DeliveredMessage] = field(default_factory=list)

    def client_context(self, cert: IssuedCert | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca.ca_bundle))
        ctx.check_hostname = False  # we dial 127.0.0.1; the chain is still verified
        if cert is not None:
            ctx.load_cert_chain(cert.chain_path, cert.key_path)
        return ctx

    def relay_client(self, cert: IssuedCert | None = None, *, tls: bool = True) -> smtplib.SMTP:
        """A connected smtplib client on the relay port, after STARTTLS + EHLO."""
        c = smtplib.SMTP(*self.relay_addr, local_hostname="mx.a.test", timeout=20)
        if tls:
            c.starttls(context=self.client_context(cert if cert is not None else self.pki.peer))
            c.ehlo()
        return c

    def submission_client(self, login: str | None = "alice") -> smtplib.SMTP:
        c = smtplib.SMTP(*self.submission_addr, local_hostname="client.test", timeout=20)
        c.starttls(context=self.client_context())
        c.ehlo()
        if login is not None:
            c.login(login, PASSWORDS[login])
        return c

    async def folder_messages(self, address: str, folder: str = "INBOX") -> list[bytes]:
        mbox = await self.storage.accounts.get_mailbox(address)
        assert mbox is not None
        f = await self.storage.messages.get_folder(mbox.mailbox_id, folder)
        assert f is not None
        msgs = await self.storage.messages.list_messages(f.folder_id)
        return [await self.storage.blobs.get(m.blob) for m in msgs]

    async def audit(self, kind_prefix: str = "smtp.") -> list[AuditEvent]:
        return await self.storage.audit.query(kind_prefix=kind_prefix, limit=1000)

    async def wait_audit(
        self, pred: Callable[[AuditEvent], bool], timeout: float = 5.0
    ) -> AuditEvent:
        """Audit events of refusals may be written just after the reply: wait for one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for e in await self.audit():
                if pred(e):
                    return e
            if loop.time() > deadline:
                raise AssertionError("no matching audit event")
            await asyncio.sleep(0.02)


def body_of(stored: bytes) -> bytes:
    """The stored message without our trace fields: ``Return-Path:`` (relay-in, final
    delivery) then ``Received:``, which always ends with ``;`` CRLF TAB date CRLF (a message
    starting with white space would look folded into it)."""
    if stored.startswith(b"Return-Path: <"):
        stored = stored[stored.index(b"\r\n") + 2 :]
    assert stored.startswith(b"Received: ")
    date_line = stored.index(b";\r\n\t") + 4
    return stored[stored.index(b"\r\n", date_line) + 2 :]


async def make_node(pki: Pki, tmp_path: Path, *, pg_dsn: str | None = None, **limits: Any) -> Node:
    """A started node on SQLite, or on PostgreSQL with ``pg_dsn``."""
    keyring = tmp_path / "keyring"
    create_keyring(keyring)
    # Cheap scrypt parameters: these tests are about SMTP, not password hashing cost.
    hasher = PasswordHasher(log2_n=10)
    if pg_dsn is not None:
        storage = await open_postgres(pg_dsn, keyring, node="b", pool_size=4, hasher=hasher)
    else:
        storage = await open_sqlite(tmp_path / "data", keyring, node="b", hasher=hasher)
    accounts = storage.accounts
    for login, pw in PASSWORDS.items():
        await accounts.create_account(login, pw, display_name=login)
    for local in ("bob", "alice", "carol"):
        await accounts.create_mailbox(f"{local}@b.test", MailboxType.PER, "810000000001")
    await accounts.create_mailbox("secretariat@b.test", MailboxType.ORG, "12345678901234")
    await accounts.grant("alice", "alice@b.test", "lrswipkxtea")
    await accounts.grant("carol", "carol@b.test", "lrswipkxtea")
    await accounts.grant("alice", "secretariat@b.test", "lrswip")
    now = dt.datetime.now(dt.UTC)
    liste = ListeBlanche(
        generated=now,
        entries=[
            DomainEntry(name="a.test", dn=pki.peer.subject_dn),
            DomainEntry(name="b.test", dn=pki.server.subject_dn),
            DomainEntry(name="c.test", dn=pki.other_peer.subject_dn),
        ],
    )
    tls = TlsConfig(
        cert_file=pki.server.chain_path,
        key_file=pki.server.key_path,
        ca_bundle=pki.ca.ca_bundle,
        crl_dir=pki.crl_dir,
    )
    policy = TrustPolicy(tls, liste)
    cfg = NodeConfig.model_validate(
        {
            "name": "b",
            "data_dir": str(tmp_path / "data"),
            "domains": ["b.test"],
            "crypto": {"keyring_file": str(keyring)},
            "tls": tls.model_dump(),
            "trust": {"liste_blanche": str(tmp_path / "liste.xml")},
            "smtp": {
                "hostname": "mx.b.test",
                "relay_listen": "127.0.0.1:0",
                "submission_listen": "127.0.0.1:0",
                "max_message_bytes": limits.pop("max_message_bytes", 1024 * 1024),
            },
        }
    )
    lim = dataclasses.replace(Limits(max_message_bytes=cfg.smtp.max_message_bytes), **limits)
    node_ref: list[Node] = []

    async def on_delivered(msg: DeliveredMessage) -> None:
        node_ref[0].delivered.append(msg)

    relay = RelayServer(cfg, storage, policy, limits=lim, on_delivered=on_delivered)
    submission = SubmissionServer(
        cfg,
        storage,
        policy,
        limits=lim,
        on_queued=lambda: node_ref[0].queued.append(1),
        on_delivered=on_delivered,
    )
    (raddr,) = await relay.start()
    (saddr,) = await submission.start()
    node = Node(pki, cfg, storage, policy, raddr, saddr, relay, submission)
    node_ref.append(node)
    return node


@pytest.fixture
async def node(pki: Pki, tmp_path: Path) -> AsyncIterator[Node]:
    n = await make_node(pki, tmp_path)
    try:
        yield n
    finally:
        await n.relay.stop()
        await n.submission.stop()
        await n.storage.close()


class RawClient:
    """A byte-level SMTP client (blocking; run it in a thread) for what smtplib won't send."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(addr, timeout=20)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def replies(self, n: int) -> list[bytes]:
        """The next ``n`` complete replies (multi-line ones joined), as raw bytes."""
        out: list[bytes] = []
        current = b""
        while len(out) < n:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed after {out!r} {self.buf!r}")
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\r\n")
            current += line + b"\r\n"
            if line[3:4] != b"-":
                out.append(current)
                current = b""
        return out

    def codes(self, n: int) -> list[int]:
        return [int(r[:3]) for r in self.replies(n)]

    def starttls(self, ctx: ssl.SSLContext, helo: str = "mx.a.test") -> None:
        self.replies(1)  # greeting
        self.send(f"EHLO {helo}\r\nSTARTTLS\r\n".encode())
        assert self.codes(2) == [250, 220]
        self.sock = ctx.wrap_socket(self.sock)
        self.send(f"EHLO {helo}\r\n".encode())
        assert self.codes(1) == [250]

    def close(self) -> None:
        self.sock.close()


def dot_stuff(msg: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency, as a client does it; ``msg`` ends with CRLF."""
    out = msg.replace(b"\r\n.", b"\r\n..")
    if out.startswith(b"."):
        out = b"." + out
    return out + b".\r\n"
