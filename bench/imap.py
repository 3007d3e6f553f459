"""IMAP benchmark: operations/s and p99 latency on a SELECT/FETCH/STORE/SEARCH/APPEND/EXPUNGE
mix, memory per idle authenticated IDLE session, IDLE push latency.

The server runs in its own process (SQLite storage in a temporary directory, TLS with a
throwaway certificate); the clients run in this process on asyncio. Usage:

    PYTHONPATH=src python bench/imap.py mix --clients 20 --seconds 10
    PYTHONPATH=src python bench/imap.py idle --sessions 10000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

DOMAIN = "bench.mssante.fr"
PASSWORD = "bench-password"
MSG = (
    b"From: house@bench.mssante.fr\r\nTo: someone@bench.mssante.fr\r\nSubject: compte rendu\r\n"
    b"Date: Tue, 3 Mar 2026 08:00:00 +0100\r\nMessage-ID: <%d@bench>\r\n\r\n"
    + b"Bonjour, voici le compte rendu de la consultation.\r\n"
    * 40
)


# -- server process ---------------------------------------------------------------------------
def _serve(workdir: str, accounts: int, messages: int, port_q: mp.Queue) -> None:  # type: ignore[type-arg]
    if os.environ.get("BENCH_SWITCH"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH"]))
    if os.environ.get("BENCH_LOOP") == "uvloop":  # the server on uvloop (the clients never)
        import uvloop

        uvloop.run(_serve_async(Path(workdir), accounts, messages, port_q))
        return
    asyncio.run(_serve_async(Path(workdir), accounts, messages, port_q))


async def _serve_async(workdir: Path, accounts: int, messages: int, port_q: mp.Queue) -> None:  # type: ignore[type-arg]
    from caducee.core.model import MailboxType
    from caducee.imap import ImapServer, ImapSettings
    from caducee.storage import open_sqlite
    from caducee.storage.keyring import create_keyring
    from caducee.storage.passwords import PasswordHasher
    from caducee.testing.certs import TrustSpaceCA

    ca = TrustSpaceCA.create(workdir / "pki")
    cert = ca.issue_server("localhost", dns_names=["localhost"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.chain_path, cert.key_path)
    create_keyring(workdir / "keyring")
    storage = await open_sqlite(
        workdir / "data", workdir / "keyring", hasher=PasswordHasher(log2_n=10)
    )
    for i in range(accounts):
        login = f"user{i}@{DOMAIN}"
        await storage.accounts.create_account(login, PASSWORD)
        mb = await storage.accounts.create_mailbox(login, MailboxType.PER, f"81{i:010d}")
        for j in range(messages):
            ref = await storage.blobs.put(MSG % j)
            await storage.messages.deliver(ref, [mb.mailbox_id])
    server = ImapServer(
        None, storage, ctx, storage.accounts, listen="127.0.0.1:0", listen_tls=None,
        settings=ImapSettings(auth_failure_delay=0.0),
    )  # fmt: skip
    bound = await server.start()
    port_q.put((bound[0][1], str(ca.ca_bundle), os.getpid()))
    profile_to = os.environ.get("BENCH_PROFILE")
    if profile_to:  # profile the server for a while, then write pstats
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        await asyncio.sleep(float(os.environ.get("BENCH_PROFILE_SECONDS", "5")))
        prof.disable()
        prof.dump_stats(profile_to)
    await asyncio.Event().wait()


def start_server(accounts: int, messages: int) -> tuple[mp.Process, int, str, int]:
    workdir = tempfile.mkdtemp(prefix="imapbench-")
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    proc = ctx.Process(target=_serve, args=(workdir, accounts, messages, q), daemon=True)
    proc.start()
    port, ca, pid = q.get(timeout=300)
    return proc, port, ca, pid


# -- Dovecot as the reference peer (same machine, same run) -----------------------------------
def start_dovecot(accounts: int, messages: int) -> tuple[subprocess.Popen[bytes], int, str, int]:
    """Dovecot (Debian package) on maildirs in a temporary directory, STARTTLS on a free port,
    passwd-file users; mailboxes filled over IMAP APPEND."""
    import shutil
    import socket

    from caducee.testing.certs import TrustSpaceCA

    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    work = Path(tempfile.mkdtemp(prefix="dovecotbench-"))
    work.chmod(0o755)
    ca = TrustSpaceCA.create(work / "pki")
    cert = ca.issue_server("localhost", dns_names=["localhost"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (work / "passwd").write_text(
        "".join(f"user{i}@{DOMAIN}:{{PLAIN}}{PASSWORD}\n" for i in range(accounts))
    )
    import pwd

    nobody = pwd.getpwnam("nobody")  # Dovecot refuses to run mail processes as root
    uid, gid = nobody.pw_uid, nobody.pw_gid
    (work / "home").mkdir()
    (work / "home").chmod(0o777)
    conf = work / "dovecot.conf"
    conf.write_text(
        f"base_dir = {work}/run\nstate_dir = {work}/state\nlog_path = {work}/log\n"
        "protocols = imap\nlisten = 127.0.0.1\nssl = required\n"
        f"ssl_cert = <{cert.chain_path}\nssl_key = <{cert.key_path}\n"
        "auth_mechanisms = plain\ndisable_plaintext_auth = yes\n"
        f"passdb {{\n driver = passwd-file\n args = {work}/passwd\n}}\n"
        f"userdb {{\n driver = static\n args = uid={uid} gid={gid} home={work}/home/%u\n}}\n"
        "mail_location = maildir:~/Maildir\n"
        f"service imap-login {{\n inet_listener imap {{\n port = {port}\n }}\n"
        " inet_listener imaps {\n port = 0\n }\n}\n"
    )
    proc = subprocess.Popen([binary, "-F", "-c", str(conf)])
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)

    async def fill() -> None:
        for i in range(accounts):
            c = await Client.connect(port, str(ca.ca_bundle), f"user{i}@{DOMAIN}")
            for j in range(messages):
                await c.cmd(b"APPEND INBOX", MSG % j)
            await c.cmd(b"LOGOUT")
            c.w.close()

    asyncio.run(fill())
    return proc, port, str(ca.ca_bundle), proc.pid


# -- a minimal async client --------------------------------------------------------------------
class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r = reader
        self.w = writer
        self.n = 0

    @classmethod
    async def connect(cls, port: int, ca: str, login: str) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        c = cls(reader, writer)
        await reader.readline()
        await c.cmd(b"STARTTLS")
        tls = ssl.create_default_context(cafile=ca)
        await writer.start_tls(tls, server_hostname="localhost")
        out = await c.cmd(b'LOGIN "%s" "%s"' % (login.encode(), PASSWORD.encode()))
        if b" OK " not in out.splitlines()[-1]:
            raise RuntimeError(out)
        return c

    async def cmd(self, line: bytes, literal: bytes | None = None) -> bytes:
        self.n += 1
        tag = b"t%d" % self.n
        if literal is None:
            self.w.write(tag + b" " + line + b"\r\n")
        else:
            self.w.write(tag + b" " + line + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        out = bytearray()
        while True:
            resp = await self.r.readline()
            if not resp:
                raise ConnectionError("closed")
            out += resp
            if resp.endswith(b"}\r\n"):
                n = int(resp[resp.rindex(b"{") + 1 : -3])
                out += await self.r.readexactly(n)
                continue
            if resp.startswith(tag + b" "):
                return bytes(out)


_OPS = ("SELECT", "FETCH-ONE", "FETCH-ALL", "STORE", "SEARCH", "APPEND", "EXPUNGE")


async def _mix_client(
    port: int, ca: str, i: int, deadline: float, lat: list[tuple[float, int]]
) -> None:
    c = await Client.connect(port, ca, f"user{i}@{DOMAIN}")
    rnd = random.Random(i)
    await c.cmd(b"SELECT INBOX")
    ops = [
        lambda: c.cmd(b"SELECT INBOX"),
        lambda: c.cmd(b"FETCH %d (FLAGS ENVELOPE BODY.PEEK[])" % rnd.randint(1, 10)),
        lambda: c.cmd(b"FETCH 1:* (UID FLAGS)"),
        lambda: c.cmd(b"STORE %d +FLAGS (\\Seen)" % rnd.randint(1, 10)),
        lambda: c.cmd(b"SEARCH UNSEEN SUBJECT compte"),
        lambda: c.cmd(b"APPEND INBOX (\\Deleted)", MSG % rnd.randint(0, 10**6)),
        lambda: c.cmd(b"EXPUNGE"),
    ]
    k = 0
    while time.perf_counter() < deadline:
        kind = k % len(ops)
        k += 1
        t0 = time.perf_counter()
        await ops[kind]()
        lat.append((time.perf_counter() - t0, kind))
    await c.cmd(b"LOGOUT")
    c.w.close()


def _pct(values: list[float], q: float) -> float:
    return 1000 * values[max(0, int(len(values) * q) - 1)] if values else 0.0


async def run_mix(port: int, ca: str, clients: int, seconds: float) -> dict[str, Any]:
    samples: list[tuple[float, int]] = []
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()
    await asyncio.gather(*(_mix_client(port, ca, i, deadline, samples) for i in range(clients)))
    elapsed = time.perf_counter() - t0
    lat = sorted(t for t, _ in samples)
    result: dict[str, Any] = {
        "ops": len(lat),
        "ops_per_s": len(lat) / elapsed,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": _pct(lat, 0.99),
    }
    for kind, name in enumerate(_OPS):  # where the tail comes from
        own = sorted(t for t, k in samples if k == kind)
        result[f"{name}_p50_p99_ms"] = f"{_pct(own, 0.5):.1f} / {_pct(own, 0.99):.1f}"
    return result


async def run_idle(port: int, ca: str, sessions: int, accounts: int, pid: int) -> dict[str, float]:
    proc = psutil.Process(pid)
    idlers: list[tuple[int, Client]] = []
    sem = asyncio.Semaphore(50)

    async def one(i: int) -> None:
        async with sem:
            c = await Client.connect(port, ca, f"user{i % accounts}@{DOMAIN}")
            await c.cmd(b"SELECT INBOX")
            c.n += 1
            c.w.write(b"i%d IDLE\r\n" % c.n)
            await c.r.readline()
            idlers.append((i, c))

    warm = min(200, sessions)  # warm-up: caches, first allocations, worker threads
    await asyncio.gather(*(one(i) for i in range(warm)))
    await asyncio.sleep(1)
    base = proc.memory_info().rss
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(warm, warm + sessions)))
    setup = time.perf_counter() - t0
    await asyncio.sleep(2)
    rss = proc.memory_info().rss
    per_conn = (rss - base) / sessions
    print(f"{len(idlers)} IDLE sessions open", file=sys.stderr)
    # push latency: APPEND to user0 from another session; every IDLE client of user0 hears it
    watchers = [c for i, c in idlers if i % accounts == 0][:50]
    pusher = await Client.connect(port, ca, f"user0@{DOMAIN}")
    delays: list[float] = []
    for _ in range(10):
        t1 = time.perf_counter()
        await pusher.cmd(b"APPEND INBOX", MSG % 1)
        for w in watchers:
            line = await w.r.readline()
            while b"EXISTS" not in line:
                line = await w.r.readline()
        delays.append(time.perf_counter() - t1)
        for w in watchers:  # drain the RECENT line
            await w.r.readline()
    return {
        "sessions": sessions,
        "setup_s": setup,
        "rss_delta_mb": (rss - base) / 2**20,
        "bytes_per_session": per_conn,
        "push_p50_ms": 1000 * statistics.median(delays),
        "push_max_ms": 1000 * max(delays),
    }


def tree_cpu(pid: int) -> float:
    """User+system CPU seconds of a server and all its descendants, the exited ones included
    (a process's reaped children are in its ``children_*`` times): Dovecot serves each
    connection in its own process, ours may run worker processes."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def run_once(args: argparse.Namespace, peer: str) -> dict[str, Any]:
    """One server (fresh data), one measurement."""
    accounts = args.clients if args.mode == "mix" else args.accounts
    proc: mp.Process | subprocess.Popen[bytes]
    if peer == "dovecot":
        proc, port, ca, pid = start_dovecot(accounts, 10)
    else:
        proc, port, ca, pid = start_server(accounts, getattr(args, "messages", 10))
    try:
        load = os.getloadavg()[0]
        if args.mode == "mix":
            me = psutil.Process()
            s0, c0 = tree_cpu(pid), me.cpu_times()
            result = asyncio.run(run_mix(port, ca, args.clients, args.seconds))
            s1, c1 = tree_cpu(pid), me.cpu_times()
            ops = max(1, int(result["ops"]))
            client = (c1.user + c1.system) - (c0.user + c0.system)
            result["server_cpu_s"] = s1 - s0
            result["server_cpu_ms_per_op"] = 1000 * (s1 - s0) / ops
            result["client_cpu_s"] = client
            result["client_cpu_ms_per_op"] = 1000 * client / ops
        else:
            result = asyncio.run(run_idle(port, ca, args.sessions, accounts, pid))
        result["load_1min"] = max(load, os.getloadavg()[0])
    finally:
        if isinstance(proc, subprocess.Popen):
            proc.terminate()
            proc.wait(10)
        else:
            proc.kill()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    sub = parser.add_subparsers(dest="mode", required=True)
    mix = sub.add_parser("mix", help="operations/s and latency with N clients")
    mix.add_argument("--clients", type=int, default=20)
    mix.add_argument("--seconds", type=float, default=10.0)
    mix.add_argument(
        "--peer",
        choices=["caducee", "dovecot", "both"],
        default="caducee",
        help="both: Caducee then Dovecot, back to back, --rounds times",
    )
    mix.add_argument("--rounds", type=int, default=1)
    idle = sub.add_parser("idle", help="memory per IDLE session and push latency")
    idle.add_argument("--sessions", type=int, default=1000)
    idle.add_argument("--accounts", type=int, default=20)
    idle.add_argument("--messages", type=int, default=10)
    args = parser.parse_args()
    peer = getattr(args, "peer", "caducee")
    peers = ["caducee", "dovecot"] if peer == "both" else [peer]
    runs = [(p, run_once(args, p)) for _ in range(getattr(args, "rounds", 1)) for p in peers]
    print(f"command: {' '.join(sys.argv)}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}"
    )
    if len(runs) == 1:
        for key, value in runs[0][1].items():
            print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
        return 0
    print("| peer | ops/s | p50 ms | p99 ms | server CPU ms/op | client CPU ms/op | load |")
    print("|---|---|---|---|---|---|---|")
    for name, r in runs:
        print(
            f"| {name} | {r['ops_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['server_cpu_ms_per_op']:.2f} | {r['client_cpu_ms_per_op']:.2f} "
            f"| {r['load_1min']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
