"""Relay benchmark (issue 2, Performance): two sandbox operators, submission -> relay -> BAL.

    python bench/relay.py --messages 2000 --size 10240 --concurrency 20 --engine both
    python bench/relay.py --big            # 20 concurrent 25 MB messages, peak memory
    python bench/relay.py --messages 500 --peer postfix   # then a Postfix pair (root)

A fresh sandbox (``caducee sandbox init``) is made in a temporary directory; its first two
operators each run in their own process (``caducee.app.Operator``), so their CPU time and peak
memory are measured apart from the load generator, which runs in its own processes (smtplib,
STARTTLS + AUTH PLAIN, ``--per-connection`` messages per submission session). Every message
goes from an account of operator 1, through its submission server, queue and outbound worker,
over mutual TLS to operator 2's relay-in, into a mailbox. Printed: messages/s accepted (250 at
submission) and delivered end to end, p50/p99 latency from the start of the submission to the
mailbox (the stored message's internal date), server CPU per message for both operators
together, and each operator's peak RSS (VmHWM).

``--peer postfix`` then runs the same load through two real Postfix instances
(``caducee.testing.postfix``) in the same invocation: submission with STARTTLS, sender trusted
by ``mynetworks`` (no AUTH), one message per mutual-TLS connection between them, delivery into
a maildir; CPU is that of every process of both instances (``docs/performance.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import re
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import psutil  # noqa: E402

from caducee.config.model import NodeConfig, StorageConfig, load_config  # noqa: E402


def _free_base() -> int:
    for _ in range(50):
        base = 20000 + secrets.randbelow(400) * 100
        ok = True
        for port in range(base, base + 20):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise SystemExit("no free port range")


def _serve(cfg_json: str) -> None:
    from caducee.app import Operator

    cfg = NodeConfig.model_validate_json(cfg_json)
    # The bench runs the operators without the sandbox authority: no OCSP responder to ask
    # (the CRLs written by `sandbox init` still decide revocation).
    cfg = cfg.model_copy(update={"tls": cfg.tls.model_copy(update={"ocsp_url": None})})

    async def main() -> None:
        op = Operator(cfg)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await op.start()
        await stop.wait()
        await op.stop()

    asyncio.run(main())


def _wait_port(hostport: str, timeout: float = 60.0) -> None:
    host, _, port = hostport.rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{hostport} did not open")


def _message(seq: int, size: int, sender: str, rcpt: str) -> bytes:
    head = (
        f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: bench {seq}\r\n"
        f"Message-ID: <bench-{seq}-{secrets.token_hex(4)}@bench>\r\nX-Bench-Seq: {seq}\r\n\r\n"
    ).encode()
    line = b"Lorem ipsum dolor sit amet, compte rendu de consultation, ligne de texte.\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


def _loader(
    args: dict[str, Any],
    seqs: list[int],
    threads: int,
    out: mp.Queue[list[tuple[int, float, float]]],
) -> None:
    """A load process: ``threads`` submission sessions in parallel over its share of messages."""
    ctx = ssl.create_default_context(cafile=args["ca_bundle"])
    ctx.check_hostname = False
    host, _, port = args["submission"].rpartition(":")
    results: list[tuple[int, float, float]] = []
    lock = threading.Lock()
    chunks = [seqs[i::threads] for i in range(threads)]
    payload_cache: dict[int, bytes] = {}

    def work(mine: list[int]) -> None:
        i = 0
        while i < len(mine):
            batch = mine[i : i + args["per_connection"]]
            i += len(batch)
            try:
                with smtplib.SMTP(host, int(port), timeout=120) as client:
                    client.starttls(context=ctx)
                    if args.get("login"):
                        client.login(args["login"], args["password"])
                    for seq in batch:
                        data = payload_cache.get(args["size"]) if args["size"] > 1_000_000 else None
                        if data is None:
                            data = _message(seq, args["size"], args["sender"], args["rcpt"])
                        else:
                            # same body, but its own Message-ID: the relay deduplicates by it
                            head, sep, rest = data.partition(b"\r\n\r\n")
                            head = re.sub(rb"X-Bench-Seq: \d+", b"X-Bench-Seq: %d" % seq, head)
                            head = re.sub(rb"<bench-\d+-", b"<bench-%d-" % seq, head)
                            data = head + sep + rest
                        t0 = time.time()
                        client.sendmail(args["sender"], [args["rcpt"]], data)
                        t1 = time.time()
                        with lock:
                            results.append((seq, t0, t1))
            except (OSError, smtplib.SMTPException) as exc:
                print(f"loader: {exc!r}", file=sys.stderr)

    if args["size"] > 1_000_000:
        payload_cache[args["size"]] = _message(0, args["size"], args["sender"], args["rcpt"])
    ts = [threading.Thread(target=work, args=(c,)) for c in chunks if c]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(results)


def _vmhwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


async def _populate(cfg: NodeConfig, accounts: list[dict[str, Any]]) -> None:
    from caducee.core.model import MailboxType
    from caducee.storage import open_storage

    storage = await open_storage(cfg)
    try:
        for acc in accounts:
            if await storage.accounts.get_account(acc["login"]) is None:
                await storage.accounts.create_account(acc["login"], acc.get("password"))
            if await storage.accounts.get_mailbox(acc["address"]) is None:
                await storage.accounts.create_mailbox(
                    acc["address"], MailboxType(acc["type"]), acc.get("holder") or "810001045367"
                )
            await storage.accounts.grant(acc["login"], acc["address"], "lrswipkxtea")
    finally:
        await storage.close()


async def _inbox(cfg: NodeConfig, address: str, read: bool) -> list[tuple[int, float]]:
    from caducee.storage import open_storage

    storage = await open_storage(cfg)
    try:
        mb = await storage.accounts.get_mailbox(address)
        assert mb is not None
        folder = await storage.messages.get_folder(mb.mailbox_id, "INBOX")
        assert folder is not None
        msgs = await storage.messages.list_messages(folder.folder_id)
        if not read:
            return [(0, 0.0)] * len(msgs)
        out = []
        for m in msgs:
            head = b""
            async for chunk in storage.blobs.stream(m.blob, 0, 4096):
                head += chunk
            found = re.search(rb"X-Bench-Seq: (\d+)", head)
            if found:
                out.append((int(found.group(1)), m.internal_date.timestamp()))
        return out
    finally:
        await storage.close()


def _pg_dsn(admin: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin.rsplit("/", 1)[0] + "/" + name


def _drop_db(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(engine: str, opts: argparse.Namespace) -> dict[str, Any]:
    from caducee.cli.main import main as cli

    workdir = Path(tempfile.mkdtemp(prefix="caducee-bench-"))
    sandbox = workdir / "sandbox"
    if cli(["sandbox", "init", "--dir", str(sandbox), "--operators", "2",
            "--port-base", str(_free_base())]) != 0:  # fmt: skip
        raise SystemExit("sandbox init failed")
    info = json.loads((sandbox / "sandbox.json").read_text())
    op_a, op_b = info["operators"][0], info["operators"][1]
    cfgs = [load_config(Path(op["config"])) for op in (op_a, op_b)]
    pg_databases: list[str] = []
    if engine == "postgres":
        tag = secrets.token_hex(4)
        for i, op in enumerate((op_a, op_b)):
            pg_databases.append(f"caducee_bench_{tag}_{i}")
            dsn = _pg_dsn(opts.pg, pg_databases[-1])
            cfgs[i] = cfgs[i].model_copy(
                update={"storage": StorageConfig(engine="postgres", dsn=dsn, pool_size=10)}
            )
            asyncio.run(_populate(cfgs[i], op["accounts"]))
    sender = next(a for a in op_a["accounts"] if a.get("password") and a["type"] == "PER")
    rcpt = next(a for a in op_b["accounts"] if a["type"] == "PER")
    spawn = mp.get_context("spawn")
    procs = [spawn.Process(target=_serve, args=(cfg.model_dump_json(),)) for cfg in cfgs]
    for p in procs:
        p.start()
    try:
        for op in (op_a, op_b):
            _wait_port(op["submission"])
            _wait_port(op["relay"])
        before = len(asyncio.run(_inbox(cfgs[1], rcpt["address"], False)))
        pids = [p.pid for p in procs if p.pid is not None]
        cpu0_each = [_cpu(pid) for pid in pids]
        cpu0 = sum(cpu0_each)
        n = opts.messages
        largs = {
            "ca_bundle": info["ca_bundle"],
            "submission": op_a["submission"],
            "login": sender["login"],
            "password": sender["password"],
            "sender": sender["address"],
            "rcpt": rcpt["address"],
            "size": opts.size,
            "per_connection": opts.per_connection,
        }
        queue: mp.Queue[list[tuple[int, float, float]]] = spawn.Queue()
        loaders = max(1, min(opts.loaders, opts.concurrency))
        shares = [list(range(n))[i::loaders] for i in range(loaders)]
        per_loader = [opts.concurrency // loaders + (1 if i < opts.concurrency % loaders else 0)
                      for i in range(loaders)]  # fmt: skip
        t_start = time.time()
        lps = [spawn.Process(target=_loader, args=(largs, shares[i], per_loader[i], queue))
               for i in range(loaders)]  # fmt: skip
        for p in lps:
            p.start()
        sent: list[tuple[int, float, float]] = []
        for _ in lps:
            sent += queue.get()
        for p in lps:
            p.join()
        t_accepted = time.time()
        deadline = time.monotonic() + opts.timeout
        while time.monotonic() < deadline:
            got = len(asyncio.run(_inbox(cfgs[1], rcpt["address"], False))) - before
            if got >= len(sent):
                break
            time.sleep(0.2)
        cpu1_each = [_cpu(pid) for pid in pids]
        cpu1 = sum(cpu1_each)
        arrived = asyncio.run(_inbox(cfgs[1], rcpt["address"], True))
        start_of = {seq: t0 for seq, t0, _ in sent}
        lat = sorted(ts - start_of[seq] for seq, ts in arrived if seq in start_of)
        acked_at = {seq: t1 for seq, _, t1 in sent}
        relay_lat = sorted(ts - acked_at[seq] for seq, ts in arrived if seq in acked_at)
        sub_lat = sorted(t1 - t0 for _, t0, t1 in sent)
        t_last = max((ts for seq, ts in arrived if seq in start_of), default=t_accepted)
        peak = {
            name: _vmhwm(pid) for name, pid in zip(("operator1", "operator2"), pids, strict=True)
        }
        return {
            "engine": engine,
            "messages": n,
            "size": opts.size,
            "concurrency": opts.concurrency,
            "per_connection": opts.per_connection,
            "accepted": len(sent),
            "delivered": len(lat),
            "accepted_per_s": len(sent) / (t_accepted - t_start),
            "delivered_per_s": len(lat) / max(1e-9, t_last - t_start),
            "p50_ms": 1000 * statistics.median(lat) if lat else None,
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None,
            "submission_p50_ms": 1000 * statistics.median(sub_lat) if sub_lat else None,
            "after_250_p50_ms": 1000 * statistics.median(relay_lat) if relay_lat else None,
            "after_250_p99_ms": (
                1000 * relay_lat[min(len(relay_lat) - 1, int(0.99 * len(relay_lat)))]
                if relay_lat
                else None
            ),
            "load_avg_1m": os.getloadavg()[0],
            "cpu_ms_per_msg": 1000 * (cpu1 - cpu0) / max(1, len(lat)),
            "cpu_ms_per_msg_each": [
                1000 * (b - a) / max(1, len(lat)) for a, b in zip(cpu0_each, cpu1_each, strict=True)
            ],
            "peak_rss_mb": {k: v / 2**20 for k, v in peak.items()},
        }
    finally:
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(30)
        for db in pg_databases:
            _drop_db(opts.pg, db)
        shutil.rmtree(workdir, ignore_errors=True)


def _session_cpu(master_pid: int) -> float:
    """CPU (user + system) of a Postfix instance: its live processes (master's session) plus
    every child master has already reaped (master's ``children_*`` times)."""
    total = 0.0
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) != master_pid:
                continue
            t = proc.cpu_times()
            total += t.user + t.system
            if proc.pid == master_pid:
                total += t.children_user + t.children_system
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return total


def _session_hwm(master_pid: int) -> int:
    """Sum of the peak RSS of the instance's live processes."""
    total = 0
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == master_pid:
                total += _vmhwm(proc.pid)
        except (OSError, psutil.Error):
            continue
    return total


def run_postfix(opts: argparse.Namespace) -> dict[str, Any]:
    """The same load through a Postfix pair: submission on Postfix A (STARTTLS required, sender
    trusted by ``mynetworks``, no AUTH), A's queue, one message per mutual-TLS connection to
    Postfix B's relay-in (certificate pinned and bound to the MAIL FROM domain), B's maildir."""
    from caducee.cli.main import main as cli
    from caducee.testing.postfix import PostfixPeer, PostfixRoute, trusted_from_liste_blanche
    from caducee.trust.listeblanche import load_liste_blanche

    workdir = Path(tempfile.mkdtemp(prefix="caducee-bench-"))
    sandbox = workdir / "sandbox"
    if cli(["sandbox", "init", "--dir", str(sandbox), "--operators", "2",
            "--port-base", str(_free_base())]) != 0:  # fmt: skip
        raise SystemExit("sandbox init failed")
    info = json.loads((sandbox / "sandbox.json").read_text())
    op_a, op_b = info["operators"][0], info["operators"][1]
    liste = load_liste_blanche(Path(info["liste_blanche"]))
    certs = [Path(op_a["server_cert"]), Path(op_b["server_cert"])]
    sender = next(a for a in op_a["accounts"] if a["type"] == "PER")
    rcpt = next(a for a in op_b["accounts"] if a["type"] == "PER")

    def peer(op: dict[str, Any], routes: list[PostfixRoute]) -> PostfixPeer:
        return PostfixPeer(
            hostname=op["mx"], domains=list(op["domains"]),
            mailboxes=[a["address"] for a in op["accounts"]],
            cert_chain=Path(op["server_cert"]), key=Path(op["server_key"]),
            ca_bundle=Path(info["ca_bundle"]), trusted=trusted_from_liste_blanche(liste, certs),
            routes=routes, reuse_connections=opts.per_connection > 1, submission_tls=True,
        )  # fmt: skip

    pb = peer(op_b, [])
    pa: PostfixPeer | None = None
    try:
        pb.start()
        pa = peer(op_a, [PostfixRoute(d, pb.relay, op_b["mx"]) for d in op_b["domains"]])
        pa.start()
        masters = [p.pid for p in (pa, pb) if p.pid is not None]
        local, _, domain = rcpt["address"].rpartition("@")
        box = pb.etc.parent / "mail" / domain / local / "new"
        cpu0_each = [_session_cpu(m) for m in masters]
        n = opts.messages
        largs = {
            "ca_bundle": info["ca_bundle"], "submission": pa.submission, "login": None,
            "password": None, "sender": sender["address"], "rcpt": rcpt["address"],
            "size": opts.size, "per_connection": opts.per_connection,
        }  # fmt: skip
        spawn = mp.get_context("spawn")
        queue: mp.Queue[list[tuple[int, float, float]]] = spawn.Queue()
        loaders = max(1, min(opts.loaders, opts.concurrency))
        shares = [list(range(n))[i::loaders] for i in range(loaders)]
        per_loader = [opts.concurrency // loaders + (1 if i < opts.concurrency % loaders else 0)
                      for i in range(loaders)]  # fmt: skip
        t_start = time.time()
        lps = [spawn.Process(target=_loader, args=(largs, shares[i], per_loader[i], queue))
               for i in range(loaders)]  # fmt: skip
        for p in lps:
            p.start()
        sent: list[tuple[int, float, float]] = []
        for _ in lps:
            sent += queue.get()
        for p in lps:
            p.join()
        t_accepted = time.time()
        deadline = time.monotonic() + opts.timeout
        while time.monotonic() < deadline:
            if sum(1 for _ in box.glob("*")) >= len(sent):
                break
            time.sleep(0.2)
        cpu1_each = [_session_cpu(m) for m in masters]
        peak = {
            name: _session_hwm(m) for name, m in zip(("postfixA", "postfixB"), masters, strict=True)
        }
        arrived = []
        for f in box.glob("*"):
            found = re.search(rb"X-Bench-Seq: (\d+)", f.read_bytes()[:8192])
            if found:
                arrived.append((int(found.group(1)), f.stat().st_mtime))
        start_of = {seq: t0 for seq, t0, _ in sent}
        lat = sorted(ts - start_of[seq] for seq, ts in arrived if seq in start_of)
        t_last = max((ts for seq, ts in arrived if seq in start_of), default=t_accepted)
        cpu = sum(cpu1_each) - sum(cpu0_each)
        if len(lat) < len(sent):
            for p_ in (pa, pb):
                problems = [
                    ln for ln in p_.log().splitlines() if "warning" in ln or "deferred" in ln
                ]
                print("\n".join(problems[:3] + problems[-2:]), file=sys.stderr)
        return {
            "engine": "postfix",
            "messages": n, "size": opts.size, "concurrency": opts.concurrency,
            "per_connection": opts.per_connection,
            "accepted": len(sent), "delivered": len(lat),
            "accepted_per_s": len(sent) / (t_accepted - t_start),
            "delivered_per_s": len(lat) / max(1e-9, t_last - t_start),
            "p50_ms": 1000 * statistics.median(lat) if lat else None,
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None,
            "load_avg_1m": os.getloadavg()[0],
            "cpu_ms_per_msg": 1000 * cpu / max(1, len(lat)),
            "cpu_ms_per_msg_each": [
                1000 * (b - a) / max(1, len(lat)) for a, b in zip(cpu0_each, cpu1_each, strict=True)
            ],
            "peak_rss_mb": {k: v / 2**20 for k, v in peak.items()},
        }  # fmt: skip
    finally:
        if pa is not None:
            pa.stop()
        pb.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=10 * 1024)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--per-connection", type=int, default=1)
    parser.add_argument("--loaders", type=int, default=2, help="load generator processes")
    parser.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--big", action="store_true", help="20 concurrent 25 MB messages")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--peer",
        choices=["caducee", "postfix"],
        default="caducee",
        help="postfix: also run the same load through a Postfix pair (needs root), side by side",
    )
    opts = parser.parse_args()
    if opts.big:
        opts.size = 25_000_000
        opts.messages = opts.concurrency
    engines = ["sqlite", "postgres"] if opts.engine == "both" else [opts.engine]
    print(f"# {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"# {platform.node()} {platform.machine()} {os.cpu_count()} CPU, Python "
          f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")  # fmt: skip
    runs = [*engines, "postfix"] if opts.peer == "postfix" else engines
    for engine in runs:
        r = run_postfix(opts) if engine == "postfix" else run(engine, opts)
        print(json.dumps(r))
        print(
            f"{engine}: {r['accepted']} accepted at {r['accepted_per_s']:.0f}/s, "
            f"{r['delivered']} delivered end to end at {r['delivered_per_s']:.0f}/s, "
            f"latency p50 {r['p50_ms'] or 0:.0f} ms p99 {r['p99_ms'] or 0:.0f} ms, "
            f"server CPU {r['cpu_ms_per_msg']:.2f} ms/message (both operators), "
            f"load average {r['load_avg_1m']:.1f}, "
            f"peak RSS {', '.join(f'{k} {v:.0f} MB' for k, v in r['peak_rss_mb'].items())}",
            flush=True,
        )


if __name__ == "__main__":
    main()
