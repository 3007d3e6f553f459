"""The conformance kit over real sockets: a lax SMTP server fails it; our operator passes it."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caducee.cli.main import main
from caducee.sandbox.init import create_sandbox
from caducee.trust.conformance import SCENARIOS, run_conformance


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    d = tmp_path_factory.mktemp("conf") / "sbx"
    with socket.socket() as s:  # a varying base below the ephemeral range (32768+)
        s.bind(("127.0.0.1", 0))
        base = 20000 + (s.getsockname()[1] % 1200) * 10
    info = asyncio.run(create_sandbox(d, operators=2, port_base=base))
    return d, info


class _LaxHandler(socketserver.StreamRequestHandler):
    """An SMTP server that accepts everything: what a non-conforming operator looks like."""

    ctx: ssl.SSLContext

    def handle(self) -> None:
        tls: ssl.SSLSocket | None = None
        rfile, wfile = self.rfile, self.wfile
        try:
            wfile.write(b"220 lax ESMTP\r\n")
            while True:
                line = rfile.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"EHLO":
                    wfile.write(b"250-lax\r\n250 STARTTLS\r\n")
                elif verb == b"STAR":
                    wfile.write(b"220 go ahead\r\n")
                    tls = self.ctx.wrap_socket(self.connection, server_side=True)
                    rfile, wfile = tls.makefile("rb"), tls.makefile("wb", buffering=0)
                elif verb == b"QUIT":
                    wfile.write(b"221 bye\r\n")
                    return
                else:
                    wfile.write(b"250 ok\r\n")
        except OSError:
            return
        finally:
            if tls is not None:
                rfile.close()
                wfile.close()
                tls.close()


@pytest.fixture
def lax_server(sandbox: tuple[Path, dict[str, Any]]) -> Iterator[str]:
    _, info = sandbox
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    op = info["operators"][1]
    ctx.load_cert_chain(op["server_cert"], op["server_key"])
    handler = type("H", (_LaxHandler,), {"ctx": ctx})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_lax_server_fails_every_refusal_scenario(
    sandbox: tuple[Path, dict[str, Any]], lax_server: str
) -> None:
    _, info = sandbox
    results = {r.name: r for r in run_conformance(lax_server, info, rcpt="x@medecin.mssante.test")}
    assert list(results) == list(SCENARIOS)
    assert results["cert-valide"].passed
    for name in SCENARIOS[:-1]:
        assert not results[name].passed, name
        assert results[name].observed.startswith("accepted up to RCPT TO")


def test_unreachable_target_fails_everything(sandbox: tuple[Path, dict[str, Any]]) -> None:
    _, info = sandbox
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    results = run_conformance(f"127.0.0.1:{port}", info, rcpt="x@y.test", timeout=3)
    assert not any(r.passed for r in results)


@pytest.mark.skipif(
    importlib.util.find_spec("caducee.sandbox.run") is None,
    reason="the operator (caducee.sandbox.run, delivery branch) is not in this build",
)
async def test_our_operator_passes_the_kit(
    sandbox: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    from caducee.sandbox.run import start_sandbox  # type: ignore[import-not-found,unused-ignore]

    d, info = sandbox
    _, operators = await start_sandbox(d)
    try:
        target = info["operators"][1]["relay"]
        code = await asyncio.to_thread(
            main, ["conformance", "run", "--target", target, "--sandbox", str(d), "--json"]
        )
        results = json.loads(capsys.readouterr().out)
        assert code == 0, results
        assert [r["scenario"] for r in results] == list(SCENARIOS)
    finally:
        for op in operators:
            await op.stop()


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("caducee.app") is None,
    reason="the operator (caducee.app, delivery branch) is not in this build",
)
async def test_our_operator_refuses_to_deliver_to_bad_peers(
    tmp_path: Path,
) -> None:
    from caducee.app import Operator  # type: ignore[import-not-found,unused-ignore]
    from caducee.config.model import load_config
    from caducee.trust.conformance import OUTBOUND_SCENARIOS, run_outbound

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        base = 20000 + (s.getsockname()[1] % 1200) * 10
    info = await create_sandbox(tmp_path / "sbx", operators=2, port_base=base)
    cfg = load_config(Path(info["operators"][1]["config"]))  # the peer (operator 0) stays down
    loop = asyncio.get_running_loop()
    running: list[Any] = []

    async def restart() -> None:
        # a fresh process state per scenario: no per-destination backoff carried over
        while running:
            await running.pop().stop()
        op = Operator(cfg)
        await op.start()
        running.append(op)

    def before_each(_: str) -> None:
        asyncio.run_coroutine_threadsafe(restart(), loop).result(30)

    try:
        results = await asyncio.to_thread(
            run_outbound, info, via=info["operators"][1]["name"], before_each=before_each
        )
    finally:
        while running:
            await running.pop().stop()
    assert [r.name for r in results] == list(OUTBOUND_SCENARIOS)
    failed = [(r.name, r.observed) for r in results if not r.passed]
    assert not failed, failed
    for r in results[:-1]:
        assert r.observed == "TLS attempted, nothing delivered", r
