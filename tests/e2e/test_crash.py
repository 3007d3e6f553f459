"""SIGKILL during a burst: every message that got ``250`` is delivered exactly once.

Both operators run as separate processes (``caducee operator serve``). Submission clients send
a burst to the other operator; the test kills one process with SIGKILL in the middle, restarts
it, and checks the recipient's mailbox: each acknowledged Message-ID exactly once, nothing
twice (un-acknowledged messages may or may not have arrived, but never twice).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import smtplib
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from caducee.storage import open_storage

from .harness import PASSWORD, TrustSpace, add_user, client_tls, inbox, make_trust_space

A, B = "ch-a.mssante.test", "medecin.mssante.test"
ALICE, BOB = f"alice@{A}", f"bob@{B}"
SRC = Path(__file__).resolve().parents[2] / "src"


class Node:
    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self) -> None:
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "caducee", "operator", "serve", "--config", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        out.close()

    async def ready(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while b": ready" not in self.log.read_bytes()[self._offset :]:
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _message(n: int) -> bytes:
    return (
        f"From: <{ALICE}>\r\nTo: <{BOB}>\r\nSubject: burst {n}\r\n"
        f"Message-ID: <burst-{n}@{A}>\r\n\r\n" + "ligne de compte rendu\r\n" * 40
    ).encode()


def _burst(
    space: TrustSpace, port: int, start: int, count: int, acked: list[int], stop: threading.Event
) -> None:
    """One submission session sending messages in sequence until killed or done."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.starttls(context=client_tls(space))
            client.login(ALICE, PASSWORD)
            for n in range(start, start + count):
                if stop.is_set():
                    return
                client.sendmail(ALICE, [BOB], _message(n))
                acked.append(n)  # the 250 came back: this one must arrive exactly once
    except (OSError, smtplib.SMTPException):
        return


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["sender", "receiver"])
async def test_sigkill_during_burst_loses_nothing_duplicates_nothing(
    tmp_path: Path, victim: str
) -> None:
    space = make_trust_space(tmp_path, {"a": A, "b": B}, fixed_ports=True)
    configs = {n: space.write_toml(n, tmp_path / f"{n}.toml", retry_base=0.1) for n in "ab"}
    for name, user in (("a", ALICE), ("b", BOB)):
        storage = await open_storage(space.config(name))
        await add_user(storage, user)
        await storage.close()
    nodes = {n: Node(configs[n], tmp_path / f"{n}.log") for n in "ab"}
    try:
        for node in nodes.values():
            node.start()
        for node in nodes.values():
            await node.ready()
        port = space.nodes["a"].ports["submission"]
        acked: list[int] = []
        stop = threading.Event()
        sessions, per_session = 6, 40
        threads = [
            threading.Thread(
                target=_burst, args=(space, port, i * per_session, per_session, acked, stop)
            )
            for i in range(sessions)
        ]
        for t in threads:
            t.start()
        async with asyncio.timeout(60):
            while len(acked) < 60:
                await asyncio.sleep(0.005)
        target = nodes["a" if victim == "sender" else "b"]
        target.kill()
        if victim == "sender":
            stop.set()
        for t in threads:
            await asyncio.to_thread(t.join, 60)
        target.start()
        await target.ready()
        acknowledged = set(acked)
        assert len(acknowledged) >= 60

        cfg_b = space.config("b")

        async def counts() -> Counter[int]:
            storage = await open_storage(cfg_b)
            try:
                raws = await inbox(storage, BOB)
            finally:
                await storage.close()
            found: Counter[int] = Counter()
            for raw in raws:
                m = re.search(rb"Message-ID: <burst-(\d+)@", raw)
                assert m is not None
                found[int(m.group(1))] += 1
            return found

        found = await counts()
        for _ in range(300):
            if acknowledged <= set(found):
                break
            await asyncio.sleep(0.3)
            found = await counts()
        dupes = {n: c for n, c in found.items() if c > 1}
        assert dupes == {}, f"delivered more than once: {dupes}"
        missing = acknowledged - set(found)
        assert missing == set(), f"{len(missing)} of {len(acknowledged)} acknowledged missing"
    finally:
        for node in nodes.values():
            node.stop()
