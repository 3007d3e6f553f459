"""Directory benchmark: generation, import, search latency and FHIR API throughput.

    PYTHONPATH=src python bench/directory.py --persons 1200000 --work /tmp/dirbench

Prints every figure with the exact command and the machine. Not a test: run it by hand, on a
quiet machine, and copy the figures into docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from caducee.directory.open import open_store
from caducee.directory.store import DirectoryStore, OrgQuery, PersonQuery
from caducee.directory.synth import generate


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def _machine() -> str:
    cpus = os.cpu_count()
    return f"{platform.machine()}, {cpus} CPUs, Python {platform.python_version()}"


def _child_import(
    files: list[Path], db: Path | None, dsn: str | None
) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MB, report) of ``caducee directory import`` in a child."""
    cmd = [sys.executable, "-m", "caducee", "directory", "import", *map(str, files)]
    cmd += ["--dsn", dsn] if dsn else ["--db", str(db)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    elapsed = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return elapsed, cpu, max(after.ru_maxrss, before.ru_maxrss) / 1024, proc.stdout.strip()


def _lab(label: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    fn.label = label  # type: ignore[attr-defined]
    return fn


def _queries(store: DirectoryStore, rng: random.Random) -> dict[str, list[Callable[[], Any]]]:
    sample = store.get_persons(store.search_persons(PersonQuery(), 0, 2000))
    orgs = store.get_orgs(store.search_orgs(OrgQuery(text="ch"), 0, 500))
    auto: list[Callable[[], Any]] = []
    combined: list[Callable[[], Any]] = []
    mailbox: list[Callable[[], Any]] = []
    structure: list[Callable[[], Any]] = []
    for p in rng.sample(sample, min(300, len(sample))):
        fam = p.family.lower()
        given = (p.given or "x").lower()
        for typed in (fam[:1], fam[:2], fam[:3], fam[:5], f"{given[:3]} {fam[:3]}"):
            auto.append(
                _lab(
                    f"autocomplete {typed!r}",
                    lambda t=typed: store.search_persons(PersonQuery(text=t), 0, 10),
                )
            )
        a = p.activities[0] if p.activities else None
        if a is not None:
            org = store.get_orgs([a.org_key])
            dept = org[0].dept_code if org else ""
            combined.append(
                _lab(
                    f"text={fam!r} profession={a.profession_code} dept={dept}",
                    lambda f=fam, pc=a.profession_code, d=dept: store.search_persons(
                        PersonQuery(text=f, professions=(pc,), postal_code=d), 0, 50
                    ),
                )
            )
            if a.sf_code:
                combined.append(
                    _lab(
                        f"specialty={a.sf_code} dept={dept}",
                        lambda s=a.sf_code, d=dept: store.search_persons(
                            PersonQuery(specialties=(s,), postal_code=d), 0, 50
                        ),
                    )
                )
        if p.mailboxes:
            local = p.mailboxes[0].address.split("@")[0]
            mailbox.append(
                _lab(
                    f"mailbox contains {local[2:9]!r}",
                    lambda t=local[2:9]: store.search_persons(
                        PersonQuery(mailbox=t, mailbox_match="contains"), 0, 50
                    ),
                )
            )
    for o in orgs[:200]:
        name = " ".join(o.name.split()[:2]).lower()
        structure.append(
            _lab(f"structure {name!r}", lambda t=name: store.search_orgs(OrgQuery(text=t), 0, 50))
        )
        if o.finess:
            structure.append(
                _lab(
                    f"structure FINESS {o.finess}",
                    lambda f=o.finess: store.search_orgs(OrgQuery(identifiers=(f,)), 0, 50),
                )
            )
    return {
        "autocomplete": auto,
        "combined": combined,
        "mailbox contains": mailbox,
        "structure": structure,
    }


def _latency(store: DirectoryStore, seed: int, slowest: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for name, calls in _queries(store, rng).items():
        if not calls:
            continue
        for call in calls[:50]:  # warm the caches
            call()
        times, cpu = [], []
        for call in calls:
            t, c = time.perf_counter(), time.thread_time()
            call()
            cpu.append((time.thread_time() - c) * 1000)
            times.append((time.perf_counter() - t) * 1000)
        out.append(
            f"  {name:18s} n={len(times):5d}  p50={statistics.median(times):6.2f} ms"
            f"  p95={_pct(times, 0.95):6.2f} ms  p99={_pct(times, 0.99):6.2f} ms"
            f"  (CPU of the thread: p50={statistics.median(cpu):6.2f} ms"
            f"  p95={_pct(cpu, 0.95):6.2f} ms  p99={_pct(cpu, 0.99):6.2f} ms)"
        )
        if slowest:
            worst = sorted(zip(cpu, calls, strict=True), key=lambda x: -x[0])[:slowest]
            for ms, call in worst:
                out.append(f"      {ms:6.2f} ms CPU  {getattr(call, 'label', '?')}")
    return out


async def _load(
    base: str, urls: list[str], seconds: float, clients: int
) -> tuple[int, list[float]]:
    """Fallback load generator (asyncio + httpx) when ``wrk`` is not installed; it costs more
    CPU than the server it measures, so its figures are a floor."""
    done = 0
    lat: list[float] = []
    stop = time.monotonic() + seconds

    async def worker(k: int) -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            i = k
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = await c.get(urls[i % len(urls)])
                r.raise_for_status()
                lat.append((time.perf_counter() - t) * 1000)
                done += 1
                i += clients

    await asyncio.gather(*(worker(k) for k in range(clients)))
    return done, lat


_LUA = """local urls = {%s}
local i = 0
request = function()
  i = i %% #urls + 1
  return wrk.format(nil, urls[i])
end
response = function(status, headers, body)
  if status ~= 200 then error("status " .. status) end
end
"""


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and its children (the server workers)."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def _wrk(
    base: str, urls: list[str], seconds: float, clients: int, lua: Path, server_pid: int
) -> str:
    """One ``wrk`` run (C, one thread, ``clients`` connections) cycling through ``urls``, with
    the CPU time the server processes spent per request and the load average."""
    lua.write_text(_LUA % ",\n".join('"' + quote(u, safe="/?=&_-,|:.") + '"' for u in urls))
    cmd = ["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--latency", "-s", str(lua), base]
    cpu = _cpu(server_pid)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = _cpu(server_pid) - cpu
    fields: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            fields["rps"] = parts[1]
        elif parts[:1] in (["50%"], ["99%"]):
            fields[parts[0]] = parts[1]
        elif "requests in" in line:
            fields["n"] = parts[0]
        elif line.strip().startswith("Non-2xx"):
            fields["errors"] = parts[-1]
    n = int(fields.get("n", "0") or 0)
    per = f", server CPU {cpu / n * 1000:.3f} ms/request" if n else ""
    return (
        f"{float(fields.get('rps', 0)):7.0f} req/s, p50={fields.get('50%')}"
        f" p99={fields.get('99%')}, {n} requests{per}, load average"
        f" {os.getloadavg()[0]:.1f}"
        + (f", {fields['errors']} NOT 200" if "errors" in fields else "")
    )


def _urls(store: DirectoryStore, rng: random.Random, n: int) -> list[str]:
    """Realistic Practitioner searches from a random sample of persons: name prefix, family and
    profession, given and family, profession and department, mailbox substring."""
    ids = store.search_persons(PersonQuery(), 0, n * 4)
    people = [p for i in range(0, len(ids), 10_000) for p in store.get_persons(ids[i : i + 10_000])]
    rng.shuffle(people)
    seen: dict[str, None] = {}
    for p in people:
        a = p.activities[0] if p.activities else None
        seen[f"/Practitioner?name={p.family[:4]}"] = None
        if a is not None:
            seen[f"/Practitioner?family={p.family}&qualification-code={a.profession_code}"] = None
        if p.given:
            seen[f"/Practitioner?given={p.given}&family={p.family}"] = None
        if p.mailboxes:
            local = p.mailboxes[0].address.split("@")[0]
            seen[f"/Practitioner?mailbox-mss:contains={local[1:8]}"] = None
        if len(seen) >= n:
            break
    return list(seen)[:n]


def _throughput(
    db: Path | None,
    dsn: str | None,
    store: DirectoryStore,
    port: int,
    seconds: float,
    clients: int,
    workers: int,
    work: Path,
    warm: float,
) -> list[str]:
    cmd = [sys.executable, "-m", "caducee", "directory", "serve", "--port", str(port)]
    cmd += ["--dsn", dsn] if dsn else ["--db", str(db)]
    cmd += ["--workers", str(workers)]
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/metadata", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        rng = random.Random(7)
        distinct = _urls(store, rng, 40_000)
        repeated = distinct[:1000]
        what = f"{clients} connections, {workers} server process(es), answers of up to 50"
        lines = []
        if shutil.which("wrk"):
            # The headline is the never-seen figure: each search asked once, so no answer comes
            # from a cache (a mature directory server does not rely on answer caching). The
            # repeated searches (each worker has its own caches: the warm-up asks every search
            # several times so every worker has seen it) are measured beside it.
            runs = [
                ("HEADLINE: searches never asked before (no answer cached)", distinct[1000:],
                 seconds),
                ("1,000 searches, warm-up (cold, then cached)", repeated, warm),
                ("the same 1,000 searches again (answers cached)", repeated, seconds),
            ]  # fmt: skip
            for label, urls, secs in runs:
                print(f"  FHIR API, {label}, {secs:g} s, wrk, {what}:", flush=True)
                result = _wrk(base, urls, secs, clients, work / "urls.lua", server.pid)
                print("    " + result, flush=True)
            return []  # printed as they come
        done, lat = asyncio.run(_load(base, repeated, seconds, clients))
        lines.append(
            f"  FHIR API (httpx clients, no wrk), {what}: {done / seconds:7.0f} req/s,"
            f" p50={statistics.median(lat):.1f} ms p99={_pct(lat, 0.99):.1f} ms"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--persons", type=int, default=1_200_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/caducee-dirbench"))
    ap.add_argument("--dsn", "--pg", dest="dsn", metavar="DSN",
                    help="benchmark PostgreSQL (a DSN) instead of SQLite")  # fmt: skip
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--warm-seconds", type=float, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--skip-generate", action="store_true")
    ap.add_argument("--skip-import", action="store_true")
    ap.add_argument("--skip-refresh", action="store_true", help="no re-import after the import")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-api", action="store_true")
    ap.add_argument("--slowest", type=int, default=0, help="list the N slowest queries (CPU)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print("command:", " ".join([sys.executable, *sys.argv]))
    print("machine:", _machine(), f"load average {os.getloadavg()[0]:.1f} at start")
    files = args.work / "files"
    if not args.skip_generate:
        t, c = time.monotonic(), time.process_time()
        res = generate(files, args.persons, seed=args.seed)
        print(
            f"generate: {res.persons} persons, {res.activity_lines} activity lines,"
            f" {res.mailboxes} mailboxes in {time.monotonic() - t:.1f} s wall,"
            f" {time.process_time() - c:.1f} s CPU"
        )
    ps = sorted(files.glob("PS_*"))[-1]
    mss = sorted(files.glob("Extraction_*"))[-1]
    db = None if args.dsn else args.work / "directory.db"
    if not args.skip_import:
        if db is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
        elapsed, cpu, peak, report = _child_import([ps, mss], db, args.dsn)
        engine = "PostgreSQL" if args.dsn else "SQLite"
        print(
            f"import (empty {engine}): {elapsed:.1f} s wall, {cpu:.1f} s CPU (importer"
            f" process only), peak RSS {peak:.0f} MB"
        )
        print("  " + report.replace("\n", "\n  "))
        print(f"load average {os.getloadavg()[0]:.1f} after the import")
    if not args.skip_import and not args.skip_refresh:
        elapsed, cpu, peak, report = _child_import([ps, mss], db, args.dsn)
        print(
            f"re-import, no change (daily diff): {elapsed:.1f} s wall, {cpu:.1f} s CPU,"
            f" peak RSS {peak:.0f} MB"
        )
    store = open_store(db, args.dsn)
    print(f"load average {os.getloadavg()[0]:.1f} before the queries")
    if not args.skip_latency:
        print("search latency (store API, one thread):")
        print(f"search version {store.search_version()}")
        print("\n".join(_latency(store, args.seed, args.slowest)))
    if args.skip_api:
        store.close()
        return 0
    print(
        "\n".join(
            _throughput(
                db,
                args.dsn,
                store,
                args.port,
                args.seconds,
                args.clients,
                args.workers,
                args.work,
                args.warm_seconds,
            )
        )
    )
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
