"""Server CPU per accepted message, relay-in and submission, with a load generator in its own
process (issue 2, Performance). Not a test: prints figures and the command.

    PYTHONPATH=src python bench/smtp_server.py --messages 2000 --per-conn 1 --port-kind relay

The server (one operator node: SQLite storage with durable commits, trust policy, real mutual
TLS with ECDSA certificates made for the run) runs in this process; the generator (asyncio,
``--concurrency`` sessions) in a child process, so its CPU is not counted. Server CPU is
``getrusage(RUSAGE_SELF)`` user+sys over the run (all threads: event loop, storage writer,
blob encryption) divided by the messages accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import multiprocessing as mp
import platform
import resource
import ssl
import sys
import tempfile
import time
from pathlib import Path

from caducee.config.model import NodeConfig, TlsConfig
from caducee.core.model import MailboxType
from caducee.smtp.relay import RelayServer
from caducee.smtp.submission import SubmissionServer
from caducee.storage import open_sqlite
from caducee.storage.keyring import create_keyring
from caducee.testing.certs import TrustSpaceCA
from caducee.trust.listeblanche import DomainEntry, ListeBlanche
from caducee.trust.policy import TrustPolicy

PASSWORD = "bench-Password-1"


def _message(size: int, i: int) -> bytes:
    head = f"From: alice@b.test\r\nTo: bob@b.test\r\nSubject: bench {i}\r\n\r\n".encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def _read_reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def _session(
    addr: tuple[str, int], ctx: ssl.SSLContext, kind: str, per_conn: int, size: int, seq: int
) -> int:
    reader, writer = await asyncio.open_connection(*addr)
    await _read_reply(reader)
    writer.write(b"EHLO mx.a.test\r\nSTARTTLS\r\n")
    await _read_reply(reader)
    assert await _read_reply(reader) == 220
    await writer.start_tls(ctx)
    writer.write(b"EHLO mx.a.test\r\n")
    await _read_reply(reader)
    sender = "x@a.test"
    if kind == "submission":
        token = base64.b64encode(b"\0alice\0" + PASSWORD.encode())
        writer.write(b"AUTH PLAIN " + token + b"\r\n")
        assert await _read_reply(reader) == 235
        sender = "alice@b.test"
    ok = 0
    for i in range(per_conn):
        writer.write(f"MAIL FROM:<{sender}>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n".encode())
        codes = [await _read_reply(reader) for _ in range(3)]
        if codes != [250, 250, 354]:
            raise RuntimeError(f"unexpected replies {codes}")
        writer.write(_message(size, seq * per_conn + i) + b".\r\n")
        if await _read_reply(reader) == 250:
            ok += 1
    writer.write(b"QUIT\r\n")
    await _read_reply(reader)
    writer.close()
    return ok


async def _generate(
    args: argparse.Namespace, addr: tuple[str, int], ca: str, cert: str, key: str
) -> None:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    if args.port_kind == "relay":
        ctx.load_cert_chain(cert, key)
    sessions = args.messages // args.per_conn
    queue: asyncio.Queue[int] = asyncio.Queue()
    for s in range(sessions):
        queue.put_nowait(s)

    async def worker() -> int:
        n = 0
        while not queue.empty():
            s = queue.get_nowait()
            n += await _session(addr, ctx, args.port_kind, args.per_conn, args.size, s)
        return n

    results = await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    print(f"generator: {sum(results)} accepted", file=sys.stderr)


def _generator_main(
    args: argparse.Namespace, addr: tuple[str, int], paths: tuple[str, str, str]
) -> None:
    asyncio.run(_generate(args, addr, *paths))


class _FloorServer:
    """The floor to compare with: asyncio streams, STARTTLS with the same relay TLS context
    (client certificate verified, CRLs), canned replies, no SMTP parsing, no storage."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.count = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"220 floor\r\n")
        await r.readline()
        await r.readline()
        w.write(b"250 floor\r\n220 go\r\n")
        await w.start_tls(self.ctx)
        while line := await r.readline():
            if line.startswith(b"EHLO"):
                w.write(b"250 floor\r\n")
            elif line.startswith(b"DATA"):
                w.write(b"250 a\r\n250 b\r\n354 go\r\n")
                await r.readuntil(b"\r\n.\r\n")
                w.write(b"250 ok\r\n")
                self.count += 1
            elif line.startswith(b"QUIT"):
                w.write(b"221 bye\r\n")
                break
        w.close()

    async def start(self) -> list[tuple[str, int]]:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=1 << 26)
        host, port = self.server.sockets[0].getsockname()[:2]
        return [(host, port)]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def main(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="caducee-bench-"))
    ca = TrustSpaceCA.create(base / "ca")
    server = ca.issue_server("mx.b.test", "22222222222222", "OPERATEUR B", "Rhône (69)")
    peer = ca.issue_server("mx.a.test", "11111111111111", "OPERATEUR A", "Paris (75)")
    crl_dir = base / "crl"
    ca.write_crl(crl_dir / "org.pem")
    ca.write_root_crl(crl_dir / "root.pem")
    keyring = base / "keyring"
    create_keyring(keyring)
    storage = await open_sqlite(base / "data", keyring, node="b")
    await storage.accounts.create_account("alice", PASSWORD)
    for local in ("alice", "bob"):
        await storage.accounts.create_mailbox(f"{local}@b.test", MailboxType.PER, "810000000001")
    await storage.accounts.grant("alice", "alice@b.test", "lrswipkxtea")
    liste = ListeBlanche(
        generated=dt.datetime.now(dt.UTC),
        entries=[
            DomainEntry(name="a.test", dn=peer.subject_dn),
            DomainEntry(name="b.test", dn=server.subject_dn),
        ],
    )
    tls = TlsConfig(
        cert_file=server.chain_path,
        key_file=server.key_path,
        ca_bundle=ca.ca_bundle,
        crl_dir=crl_dir,
    )
    policy = TrustPolicy(tls, liste)
    if args.num_tickets is not None:
        policy.relay_server_context().num_tickets = args.num_tickets
        policy.submission_server_context().num_tickets = args.num_tickets
    cfg = NodeConfig.model_validate(
        {
            "name": "b",
            "data_dir": str(base / "data"),
            "domains": ["b.test"],
            "crypto": {"keyring_file": str(keyring)},
            "tls": tls.model_dump(),
            "trust": {"liste_blanche": str(base / "liste.xml")},
            "smtp": {
                "hostname": "mx.b.test",
                "relay_listen": "127.0.0.1:0",
                "submission_listen": "127.0.0.1:0",
            },
        }
    )
    srv: RelayServer | SubmissionServer | _FloorServer
    if args.floor:
        srv = _FloorServer(policy.relay_server_context())
    elif args.port_kind == "relay":
        srv = RelayServer(cfg, storage, policy)
    else:
        srv = SubmissionServer(cfg, storage, policy)
    (addr,) = await srv.start()
    proc = mp.get_context("spawn").Process(
        target=_generator_main,
        args=(args, addr, (str(ca.ca_bundle), str(peer.chain_path), str(peer.key_path))),
    )
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile(time.thread_time)  # CPU time of the loop thread
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    th0 = time.thread_time()
    t0 = time.perf_counter()
    proc.start()
    if prof is not None:
        prof.enable()
    await asyncio.to_thread(proc.join)
    if prof is not None:
        prof.disable()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    loop_cpu = time.thread_time() - th0
    await srv.stop()
    inbox = await storage.messages.get_folder(
        (await storage.accounts.get_mailbox("bob@b.test")).mailbox_id,  # type: ignore[union-attr]
        "INBOX",
    )
    assert inbox is not None
    stored = len(await storage.messages.list_messages(inbox.folder_id))
    if isinstance(srv, _FloorServer):
        stored = srv.count
    await storage.close()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(f"machine: {platform.node()} {platform.machine()} Python {platform.python_version()}")
    what = "floor" if args.floor else args.port_kind
    print(
        f"{what}: {stored} messages of {args.size} B stored, {args.per_conn}/connection, "
        f"{args.concurrency} sessions: {stored / wall:.0f} msg/s (wall {wall:.1f} s, includes "
        f"generator start-up), server CPU {1000 * cpu / max(stored, 1):.2f} ms/message, "
        f"peak RSS {r1.ru_maxrss / 1024:.0f} MB"
    )
    print(f"event-loop thread: {1000 * loop_cpu / max(stored, 1):.2f} ms/message")
    if prof is not None:
        import pstats

        pstats.Stats(prof).sort_stats(args.sort).print_stats(40)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--per-conn", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--size", type=int, default=10_000)
    p.add_argument("--port-kind", choices=["relay", "submission"], default="relay")
    p.add_argument("--profile", action="store_true", help="cProfile the event-loop thread")
    p.add_argument("--num-tickets", type=int, default=None, help="override TLS 1.3 tickets")
    p.add_argument("--floor", action="store_true", help="measure the asyncio+TLS floor instead")
    p.add_argument("--sort", default="tottime", help="pstats sort key with --profile")
    asyncio.run(main(p.parse_args()))
