"""End to end with a real external client: swaks (Debian package ``swaks``) over STARTTLS with
a client certificate on the relay port, and with AUTH PLAIN on submission."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from smtp_harness import PASSWORDS, Node, body_of

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed"),
]


async def _swaks(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "swaks",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode("utf-8", "replace")


async def test_swaks_relay_with_client_certificate(node: Node) -> None:
    host, port = node.relay_addr
    peer = node.pki.peer
    code, out = await _swaks(
        "--server", host, "--port", str(port), "--ehlo", "mx.a.test",
        "--tls", "--tls-verify", "--tls-ca-path", str(node.pki.ca.ca_bundle),
        "--tls-cert", str(peer.chain_path), "--tls-key", str(peer.key_path),
        "--from", "x@a.test", "--to", "bob@b.test",
        "--pipeline", "--header", "Subject: swaks e2e", "--body", "bonjour",
    )  # fmt: skip
    assert code == 0, out
    assert "250 2.0.0 Ok: delivered as" in out
    (stored,) = await node.folder_messages("bob@b.test")
    assert b"Subject: swaks e2e" in body_of(stored) and b"bonjour" in stored


async def test_swaks_relay_without_certificate_is_refused(node: Node) -> None:
    host, port = node.relay_addr
    code, out = await _swaks(
        "--server", host, "--port", str(port), "--ehlo", "mx.a.test", "--tls",
        "--from", "x@a.test", "--to", "bob@b.test",
    )  # fmt: skip
    assert code != 0
    assert "530 5.7.0 client certificate required" in out
    assert await node.folder_messages("bob@b.test") == []


async def test_swaks_submission_with_auth_plain(node: Node) -> None:
    host, port = node.submission_addr
    code, out = await _swaks(
        "--server", host, "--port", str(port), "--ehlo", "client.test",
        "--tls", "--tls-verify", "--tls-ca-path", str(node.pki.ca.ca_bundle),
        "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", PASSWORDS["alice"],
        "--from", "alice@b.test", "--to", "bob@b.test",
        "--header", "From: alice@b.test", "--header", "Subject: swaks submission",
    )  # fmt: skip
    assert code == 0, out
    assert "235 2.7.0" in out
    assert len(await node.folder_messages("bob@b.test")) == 1
    assert len(await node.folder_messages("alice@b.test", "Sent")) == 1
