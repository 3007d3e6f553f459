"""Benchmark: documents integrated per second, end to end.

Each message (an MSSanté message with an IHE_XDM.zip carrying one ANS example CDA) is put in a
real Dovecot mailbox first; the clock then runs from the agent's start until every message has
been integrated (MDM^T02 acknowledged by the MLLP listener) and filed in its IMAP folder.
Optionally each message also requests an MDN, sent through a STARTTLS submission server.

    PYTHONPATH=src python bench/documents.py [--count 300] [--mdn] [--concurrency N]

Needs Dovecot (dovecot-imapd) and ../shared (the ANS examples). Target: >= 50 documents/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))  # reuse the test harness servers

from intg_cda import variant  # noqa: E402
from intg_certs import make_pki  # noqa: E402
from intg_dovecot import start_dovecot  # noqa: E402
from intg_mllp import MllpListener  # noqa: E402
from intg_smtp import SubmissionServer  # noqa: E402

from caducee.documents.mss import build_message  # noqa: E402

PRACTICE = "dpi@cab.mssante.fr"
CDA = "corpora/clinical/cda-fr-cisis/IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml"


def _shared() -> Path:
    for cand in (
        os.environ.get("CADUCEE_SHARED"),
        ROOT.parent / "shared",
        ROOT.parent.parent / "shared",
    ):
        if cand and (Path(cand) / "corpora").is_dir():
            return Path(cand)
    raise SystemExit("../shared (corpora) not found; set CADUCEE_SHARED")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--mdn", action="store_true", help="request and send an MDN per message")
    ap.add_argument("--concurrency", type=int, default=1, help="[practice] concurrency")
    args = ap.parse_args()
    base = (_shared() / CDA).read_bytes()
    with tempfile.TemporaryDirectory(prefix="caducee-bench-") as tmp:
        root = Path(tmp)
        pki = make_pki(root / "pki")
        dovecot = start_dovecot(root, pki, {PRACTICE: "bench-imap"})
        mllp = MllpListener()
        mllp.start()
        smtp = SubmissionServer(pki.cert_file, pki.key_file, users={PRACTICE: "bench-smtp"})
        smtp.start()
        try:
            (root / "patients.csv").write_text(
                "id,ins,birth_name,first_birth_forename,birth_date,sex,birthplace_cog\n"
                + "".join(f"P{i:05d},,NOM{i},PRENOM{i},19600101,M,\n" for i in range(5000))
                + "P99999,279035121518989,PAT-TROIS,DOMINIQUE,19790328,F,51215\n"
            )
            os.environ["BENCH_IMAP"] = "bench-imap"
            os.environ["BENCH_SMTP"] = "bench-smtp"
            (root / "agent.toml").write_text(
                f"""
[mailbox]
host = "127.0.0.1"
port = {dovecot.port}
user = "{PRACTICE}"
password_env = "BENCH_IMAP"
ca_file = "{pki.ca_file}"
[submission]
server = "127.0.0.1:{smtp.port}"
user = "{PRACTICE}"
password_env = "BENCH_SMTP"
ca_file = "{pki.ca_file}"
[practice]
address = "{PRACTICE}"
patients = "patients.csv"
state = "state.sqlite"
concurrency = {args.concurrency}
[[adapter]]
type = "mllp"
host = "127.0.0.1"
port = {mllp.port}
"""
            )
            t0 = time.perf_counter()
            imap = dovecot.client(PRACTICE)
            for i in range(args.count):
                cda = variant(base, doc_id=f"1.2.8.{i}", set_id=f"1.2.8.{i}.s")
                msg = build_message(
                    sender="doc@a.mssante.fr",
                    recipients=[PRACTICE],
                    cdas=[cda],
                    request_mdn=args.mdn,
                )
                imap.append("INBOX", None, None, msg.as_bytes())
            imap.logout()
            fill = time.perf_counter() - t0

            # The agent runs in its own process, as in production; its CPU time is measured
            # too, a figure that survives a loaded machine better than wall time.
            env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
            cmd = [sys.executable, "-m", "caducee", "integrate", "--once"]
            cmd += ["--config", str(root / "agent.toml")]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            elapsed = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            assert len(mllp.integrated) == args.count
            assert dovecot.count(PRACTICE, "Caducee/Integrated") == args.count
            if args.mdn:
                assert len(smtp.wait_for(args.count)) == args.count
        finally:
            smtp.stop()
            mllp.stop()
            dovecot.stop()
    rate = args.count / elapsed
    opts = (" --mdn" if args.mdn else "") + f" --concurrency {args.concurrency}"
    print(f"command: PYTHONPATH=src python bench/documents.py --count {args.count}{opts}")
    machine = f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"machine: {platform.node()} {machine}")
    print(f"mailbox filled with {args.count} messages in {fill:.1f}s (not timed)")
    print(f"integrated {args.count} documents in {elapsed:.2f}s: {rate:.1f} documents/s (wall)")
    print(f"agent CPU time {cpu:.2f}s: {args.count / cpu:.1f} documents per CPU-second")
    print(f"load average during the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
