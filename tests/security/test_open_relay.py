"""No open relay: neither port lets an outsider send to a domain we do not serve.

Relay-in accepts RCPT only for local mailboxes (550 5.1.1 otherwise, even from a listed
operator); submission needs TLS and AUTH before MAIL, and then only liste blanche domains.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _harness() -> ModuleType:
    """tests/smtp/smtp_harness.py (the real-node fixtures), loaded once by name."""
    if "smtp_harness" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "smtp" / "smtp_harness.py"
        spec = importlib.util.spec_from_file_location("smtp_harness", path)
        assert spec is not None and spec.loader is not None
        sys.modules["smtp_harness"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["smtp_harness"]


h = _harness()
node, pki = h.node, h.pki


@pytest.mark.parametrize(
    "rcpt", ["victim@gmail.com", "dr.c@c.test", "dr.a@a.test", "bob@b.test.evil"]
)
async def test_relay_in_refuses_every_non_local_recipient(node: Any, rcpt: str) -> None:
    def talk() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        with node.relay_client() as c:
            c.mail("x@a.test")
            refused = c.rcpt(rcpt)
            return refused, c.docmd("DATA")

    (code, text), (dcode, _) = await asyncio.to_thread(talk)
    assert (code, text[:5]) == (550, b"5.1.1")
    assert dcode in (503, 554)  # no valid recipient: DATA refused
    assert await node.storage.queue.list() == []


async def test_relay_in_with_source_route_does_not_relay(node: Any) -> None:
    def talk() -> tuple[int, bytes]:
        with node.relay_client() as c:
            c.mail("x@a.test")
            return c.docmd("RCPT TO:<@mx.b.test:victim@gmail.com>")

    code, _ = await asyncio.to_thread(talk)
    assert code == 550


async def test_submission_without_auth_cannot_send_anywhere(node: Any) -> None:
    def talk() -> list[int]:
        with node.submission_client(login=None) as c:
            return [
                c.mail("alice@b.test")[0],
                c.rcpt("victim@gmail.com")[0],
                c.rcpt("bob@b.test")[0],
            ]

    assert await asyncio.to_thread(talk) == [530, 503, 503]
    assert await node.storage.queue.list() == []


async def test_submission_with_auth_cannot_reach_unlisted_domains(node: Any) -> None:
    def talk() -> tuple[int, bytes]:
        with node.submission_client() as c:
            c.mail("alice@b.test")
            return c.rcpt("victim@gmail.com")

    code, text = await asyncio.to_thread(talk)
    assert (code, text[:5]) == (550, b"5.7.1")
    assert await node.storage.queue.list() == []
