"""The outbound worker against a real TLS peer, real SQLite storage and the real trust policy."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path

import pytest

from caducee.config.model import NodeConfig
from caducee.core.model import MailboxType, QueueRecipient
from caducee.smtp.worker import OutboundWorker, WorkerSettings
from caducee.storage import open_sqlite
from caducee.storage.interfaces import Storage
from caducee.storage.keyring import create_keyring
from caducee.testing.certs import IssuedCert, TrustSpaceCA
from caducee.trust.listeblanche import DomainEntry, ListeBlanche
from caducee.trust.policy import TrustPolicy

from .peer import Peer

A = "ch-a.mssante.test"
B = "ch-b.mssante.test"
SENDER = f"dr.a@{A}"
MESSAGE = (
    b"From: <dr.a@ch-a.mssante.test>\r\nTo: <x@ch-b.mssante.test>\r\nSubject: CR\r\n"
    b"Message-ID: <m@a>\r\n\r\n.dot line\r\nbody\r\n"
)


async def wait_until(pred: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await pred():
            await asyncio.sleep(0.02)


@dataclass
class Node:
    cfg: NodeConfig
    storage: Storage
    policy: TrustPolicy
    worker: OutboundWorker

    async def enqueue(
        self,
        rcpts: list[QueueRecipient],
        *,
        domain: str = B,
        lifetime: float = 3600,
        ret: str | None = None,
        envid: str | None = None,
    ) -> int:
        blob = await self.storage.blobs.put(MESSAGE)
        expires = datetime.now(UTC) + timedelta(seconds=lifetime)
        item = await self.storage.queue.enqueue(
            SENDER, rcpts, blob, domain, expires=expires, ret=ret, envid=envid
        )
        self.worker.wake()
        return item

    async def inbox(self, address: str = SENDER) -> list[Message]:
        mb = await self.storage.accounts.get_mailbox(address)
        assert mb is not None
        folder = await self.storage.messages.get_folder(mb.mailbox_id, "INBOX")
        assert folder is not None
        out = []
        for m in await self.storage.messages.list_messages(folder.folder_id):
            raw = await self.storage.blobs.get(m.blob)
            out.append(email.message_from_bytes(raw, policy=email.policy.compat32))
        return out


def dsn_fields(msg: Message) -> list[Message]:
    parts = msg.get_payload()
    assert isinstance(parts, list)
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list)
    return blocks[1:]


def liste_for(entries: dict[str, str]) -> ListeBlanche:
    return ListeBlanche(
        datetime.now(UTC), [DomainEntry(name=d, dn=dn) for d, dn in entries.items()]
    )


@pytest.fixture
async def make_node(
    tmp_path: Path, ca: TrustSpaceCA, our_cert: IssuedCert, peer_cert: IssuedCert
) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    nodes: list[Node] = []

    async def make(
        peer_port: int,
        *,
        listed: dict[str, str] | None = None,
        lifetime: int = 3600,
        settings: WorkerSettings | None = None,
        crl_dir: Path | None = None,
    ) -> Node:
        keyring = tmp_path / "keyring"
        create_keyring(keyring)
        cfg = NodeConfig.model_validate(
            {
                "name": "a",
                "data_dir": str(tmp_path / "data"),
                "domains": [A],
                "crypto": {"keyring_file": str(keyring)},
                "tls": {
                    "cert_file": str(our_cert.chain_path),
                    "key_file": str(our_cert.key_path),
                    "ca_bundle": str(ca.ca_bundle),
                    "crl_dir": str(crl_dir) if crl_dir else None,
                },
                "trust": {
                    "liste_blanche": "unused.xml",
                    "routes": {B: f"127.0.0.1:{peer_port}", "c.test": f"127.0.0.1:{peer_port}"},
                },
                "smtp": {
                    "hostname": "mx.ch-a.mssante.test",
                    "queue_lifetime_seconds": lifetime,
                    "retry_base_seconds": 0.05,
                    "retry_max_seconds": 0.2,
                },
            }
        )
        storage = await open_sqlite(cfg.data_dir, keyring, node="a")
        await storage.accounts.create_mailbox(SENDER, MailboxType.PER, "810001045367")
        liste = liste_for(
            listed if listed is not None else {A: our_cert.subject_dn, B: peer_cert.subject_dn}
        )
        policy = TrustPolicy(cfg.tls, liste)
        worker = OutboundWorker(
            cfg, storage, policy, settings=settings or WorkerSettings(idle_seconds=0.5)
        )
        await worker.start()
        node = Node(cfg, storage, policy, worker)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.worker.stop()
        await node.storage.close()


async def test_delivers_several_messages_over_one_session(
    peer: Peer, make_node: Callable[..., Awaitable[Node]], our_cert: IssuedCert
) -> None:
    node = await make_node(peer.port, settings=WorkerSettings(connections_per_domain=1))
    for i in range(5):
        await node.enqueue([QueueRecipient(f"r{i}@{B}")])
    await peer.wait_for(lambda p: len(p.received) == 5)
    await wait_until(lambda: _empty(node))
    assert peer.sessions == 1  # one TLS session, five transactions (RSET between)
    assert all(r.data == MESSAGE for r in peer.received)
    assert all(r.client_cert == our_cert.der for r in peer.received)
    assert sorted(r.rcpts[0] for r in peer.received) == [f"r{i}@{B}" for i in range(5)]
    events = await node.storage.audit.query(kind_prefix="smtp.outbound.delivered")
    assert len(events) == 5


async def _empty(node: Node) -> bool:
    return not await node.storage.queue.list()


async def test_retries_a_temporary_failure_with_backoff(
    peer: Peer, make_node: Callable[..., Awaitable[Node]]
) -> None:
    peer.data_reply = lambda n: "451 4.3.0 busy, try later" if n <= 2 else "250 2.0.0 ok"
    node = await make_node(peer.port)
    item_id = await node.enqueue([QueueRecipient(f"r@{B}")])
    await peer.wait_for(lambda p: len(p.received) == 1)
    await wait_until(lambda: _empty(node))
    assert peer.data_attempts == 3
    deferred = await node.storage.audit.query(kind_prefix="smtp.outbound.deferred")
    assert len(deferred) == 2 and all(e.details["item"] == str(item_id) for e in deferred)
    assert await node.inbox() == []  # no DSN: default NOTIFY does not ask for success


async def test_permanent_failure_sends_a_dsn_to_the_sender(
    peer: Peer, make_node: Callable[..., Awaitable[Node]]
) -> None:
    peer.rcpt_reply = lambda a: "550 5.1.1 no such mailbox" if a.startswith("bad") else "250 ok"
    node = await make_node(peer.port)
    await node.enqueue(
        [QueueRecipient(f"bad@{B}", orcpt=f"rfc822;bad@{B}"), QueueRecipient(f"good@{B}")],
        envid="ENV1",
        ret="HDRS",
    )
    await wait_until(lambda: _empty(node))
    assert peer.received[0].rcpts == [f"good@{B}"]
    (dsn,) = await node.inbox()
    assert dsn.get_content_type() == "multipart/report"
    (block,) = dsn_fields(dsn)
    assert block["Final-Recipient"] == f"rfc822; bad@{B}"
    assert block["Original-Recipient"] == f"rfc822;bad@{B}"
    assert block["Action"] == "failed"
    assert block["Status"] == "5.1.1"
    assert "no such mailbox" in block["Diagnostic-Code"]


async def test_expiry_sends_a_dsn(peer: Peer, make_node: Callable[..., Awaitable[Node]]) -> None:
    peer.data_reply = lambda n: "421 4.4.2 go away"
    node = await make_node(peer.port)
    await node.enqueue([QueueRecipient(f"r@{B}", frozenset({"FAILURE"}))], lifetime=0.4)
    await wait_until(lambda: _empty(node))
    (dsn,) = await node.inbox()
    (block,) = dsn_fields(dsn)
    assert block["Action"] == "failed"
    assert block["Status"] == "4.4.7"
    assert "expired" in block["Diagnostic-Code"]
    assert peer.received == []
    assert peer.data_attempts >= 2


async def test_notify_success_relayed_receipt_when_peer_has_no_dsn(
    peer: Peer, make_node: Callable[..., Awaitable[Node]]
) -> None:
    peer.extensions = ("PIPELINING", "8BITMIME")
    node = await make_node(peer.port)
    await node.enqueue([QueueRecipient(f"r@{B}", frozenset({"SUCCESS"}))])
    await wait_until(lambda: _empty(node))
    (dsn,) = await node.inbox()
    (block,) = dsn_fields(dsn)
    assert block["Action"] == "relayed" and block["Status"] == "2.0.0"


async def test_notify_success_passed_on_when_peer_does_dsn(
    peer: Peer, make_node: Callable[..., Awaitable[Node]]
) -> None:
    node = await make_node(peer.port)
    await node.enqueue([QueueRecipient(f"r@{B}", frozenset({"SUCCESS"}))], envid="E1")
    await wait_until(lambda: _empty(node))
    assert peer.received[0].rcpt_params == ["NOTIFY=SUCCESS"]
    assert "ENVID=E1" in peer.received[0].mail_params
    assert await node.inbox() == []  # the receiving operator sends the receipt


async def test_domain_not_in_liste_blanche_fails_at_once(
    peer: Peer, make_node: Callable[..., Awaitable[Node]]
) -> None:
    node = await make_node(peer.port)
    await node.enqueue([QueueRecipient("r@c.test")], domain="c.test")
    await wait_until(lambda: _empty(node))
    (dsn,) = await node.inbox()
    (block,) = dsn_fields(dsn)
    assert block["Status"] == "5.7.1"
    assert peer.sessions == 0


@pytest.mark.parametrize(
    "case", ["dn_not_listed", "cn_same_dn_differs", "expired", "other_ca", "revoked"]
)
async def test_refuses_a_peer_with_a_wrong_certificate(
    case: str,
    ca: TrustSpaceCA,
    our_cert: IssuedCert,
    peer_cert: IssuedCert,
    tmp_path: Path,
    make_node: Callable[..., Awaitable[Node]],
) -> None:
    if case == "dn_not_listed":
        bad = ca.issue_server("mx.autre.mssante.test", "750712184", "AUTRE ORG", "Paris (75)")
    elif case == "cn_same_dn_differs":
        bad = ca.issue_server("mx.ch-b.mssante.test", "750712184", "AUTRE ORG", "Paris (75)")
    elif case == "expired":
        bad = ca.issue_server(
            "mx.ch-b.mssante.test", "750712184", "CH B", "Paris (75)", expired=True
        )
    elif case == "revoked":
        bad = ca.issue_server("mx.ch-b.mssante.test", "750712184", "CH B", "Paris (75)")
        ca.revoke(bad)
    else:
        other = TrustSpaceCA.create_other(tmp_path / "other")
        bad = other.issue_server("mx.ch-b.mssante.test", "750712184", "CH B", "Paris (75)")
    crl_dir = tmp_path / "crl"
    ca.write_crl(crl_dir / "intermediate.crl")
    ca.write_root_crl(crl_dir / "root.crl")
    # For the chain, date and revocation cases the liste blanche names the bad certificate's DN,
    # so the refusal comes from the certificate itself, not from the DN.
    listed_dn = (
        bad.subject_dn if case in ("expired", "other_ca", "revoked") else peer_cert.subject_dn
    )
    wrong = Peer(bad.chain_path, bad.key_path, ca.ca_bundle)
    await wrong.start()
    try:
        node = await make_node(
            wrong.port, listed={A: our_cert.subject_dn, B: listed_dn}, crl_dir=crl_dir
        )
        item_id = await node.enqueue([QueueRecipient(f"r@{B}")])

        async def refused() -> bool:
            return bool(await node.storage.audit.query(kind_prefix="smtp.outbound.refused"))

        await wait_until(refused)
        await wait_until(lambda: _attempted(node, item_id))
        assert wrong.received == []
        item = await node.storage.queue.get(item_id)
        assert item is not None and item.last_error
        (event,) = (await node.storage.audit.query(kind_prefix="smtp.outbound.refused"))[-1:]
        expected = {
            "dn_not_listed": "DN not listed for domain",
            "cn_same_dn_differs": "but with a different DN",
            "expired": "expired",
            "other_ca": "not issued by a trust-space CA",
            "revoked": "revoked",
        }[case]
        assert expected in event.details["reason"]
        assert expected in item.last_error
    finally:
        await wrong.stop()


async def _attempted(node: Node, item_id: int) -> bool:
    item = await node.storage.queue.get(item_id)
    return item is not None and item.attempts >= 1


async def test_delay_notice_sent_once_on_notify_delay(
    peer: Peer, make_node: Callable[..., Awaitable[Node]]
) -> None:
    peer.data_reply = lambda n: "450 4.2.1 mailbox busy" if n <= 4 else "250 ok"
    node = await make_node(
        peer.port, settings=WorkerSettings(idle_seconds=0.5, delay_notice_seconds=0.0)
    )
    await node.enqueue([QueueRecipient(f"r@{B}", frozenset({"DELAY", "FAILURE"}))])
    await wait_until(lambda: _empty(node))
    (dsn,) = await node.inbox()  # one notice although four attempts were deferred
    (block,) = dsn_fields(dsn)
    assert block["Action"] == "delayed" and block["Status"] == "4.2.1"
    assert block["Will-Retry-Until"]
    assert len(peer.received) == 1
