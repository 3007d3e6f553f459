"""SMTP smuggling (CVE-2023-51764 / 51765 / 51766 class): only CRLF.CRLF ends DATA.

Decision (docs/decisions.md): a message holding a bare LF or bare CR is refused as a whole
(550 5.6.0) after reading up to the real CRLF.CRLF, so nothing after a fake end-of-data ever
becomes a command or a second message. Pure decoder tests here; over-the-wire ones in
tests/smtp/test_relay_server.py (``test_smuggling_over_the_wire``).
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from caducee.smtp.protocol import DataDecoder

SMUGGLED = (
    b"MAIL FROM:<ceo@victim.fr>\r\nRCPT TO:<x@b.fr>\r\nDATA\r\nFrom: ceo@victim.fr\r\n\r\nevil\r\n"
)

FAKE_ENDS = [
    b"\n.\n",
    b"\r\n.\n",
    b"\n.\r\n",
    b"\r.\r",
    b"\r\n.\r",
    b"\r.\r\n",
    b"\n.\r",
    b"\r\n\x00.\r\n",
]


@pytest.mark.parametrize("fake", FAKE_ENDS, ids=repr)
@pytest.mark.parametrize("chunk", [1, 3, 7, 10_000])
def test_fake_end_of_data_never_ends_the_message(fake: bytes, chunk: int) -> None:
    stream = b"Subject: hi\r\n\r\nhello" + fake + SMUGGLED + b".\r\nQUIT\r\n"
    dec = DataDecoder(max_size=10**6)
    rest = None
    out = b""
    i = 0
    while rest is None:
        content, rest = dec.feed(stream[i : i + chunk])
        out += content
        i += chunk
    # The decoder stopped at the one real CRLF.CRLF: what follows is exactly the next command.
    assert rest + stream[i:] == b"QUIT\r\n"
    # Everything up to the real end is message content: no command ever escapes.
    assert b"MAIL FROM:<ceo@victim.fr>" in out
    assert out.endswith(b"evil\r\n")
    if fake != b"\r\n\x00.\r\n":
        assert dec.outcome.bare_newline
        refusal = dec.outcome.refusal
        assert refusal is not None and (refusal.code, refusal.enhanced) == (550, "5.6.0")


def test_only_crlf_dot_crlf_ends() -> None:
    dec = DataDecoder(max_size=100)
    content, rest = dec.feed(b"a\r\n.\r\nb")
    assert (content, rest) == (b"a\r\n", b"b")
    assert dec.outcome.refusal is None


@pytest.mark.parametrize("bare", [b"a\nb\r\n", b"a\rb\r\n", b"a\r\r\n", b"\n"])
def test_bare_newlines_anywhere_are_refused(bare: bytes) -> None:
    dec = DataDecoder(max_size=100)
    _, rest = dec.feed(bare + b".\r\n" if bare.endswith(b"\r\n") else bare + b"\r\n.\r\n")
    assert rest == b""
    assert dec.outcome.bare_newline


def test_cr_split_from_lf_across_chunks_is_not_bare() -> None:
    dec = DataDecoder(max_size=100)
    dec.feed(b"a\r")
    _, rest = dec.feed(b"\n.\r\n")
    assert rest == b"" and not dec.outcome.bare_newline


# --- over the wire -------------------------------------------------------------------------


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

WIRE_SMUGGLED = (
    b"MAIL FROM:<ceo@a.test>\r\nRCPT TO:<alice@b.test>\r\nDATA\r\n"
    b"From: ceo@a.test\r\nSubject: smuggled\r\n\r\nevil\r\n"
)


@pytest.mark.parametrize("fake", FAKE_ENDS[:7], ids=repr)
async def test_smuggling_over_the_wire_relay(node: Any, fake: bytes) -> None:
    def talk() -> list[bytes]:
        c = h.RawClient(node.relay_addr)
        c.starttls(node.client_context(node.pki.peer))
        c.send(b"MAIL FROM:<x@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n")
        assert c.codes(3) == [250, 250, 354]
        c.send(b"Subject: hi\r\n\r\nhello" + fake + WIRE_SMUGGLED + b".\r\nNOOP\r\n")
        out = c.replies(2)
        c.close()
        return out

    refused, noop = await asyncio.to_thread(talk)
    assert refused.startswith(b"550 5.6.0") and b"bare LF or bare CR" in refused
    assert noop.startswith(b"250 ")  # in sync: the NOOP after the real end is answered
    assert await node.folder_messages("bob@b.test") == []
    assert await node.folder_messages("alice@b.test") == []
    ev = await node.wait_audit(lambda e: e.kind == "smtp.relay.refused")
    assert ev.details["code"] == "550"


async def test_smuggling_over_the_wire_submission(node: Any) -> None:
    def talk() -> list[bytes]:
        c = h.RawClient(node.submission_addr)
        c.starttls(node.client_context(), helo="client.test")
        secret = h.PASSWORDS["alice"].encode()
        c.send(b"AUTH PLAIN " + base64.b64encode(b"\0alice\0" + secret) + b"\r\n")
        c.send(b"MAIL FROM:<alice@b.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n")
        assert c.codes(4) == [235, 250, 250, 354]
        c.send(b"From: alice@b.test\r\n\r\nhi\r\n.\n" + WIRE_SMUGGLED + b".\r\nNOOP\r\n")
        out = c.replies(2)
        c.close()
        return out

    refused, noop = await asyncio.to_thread(talk)
    assert refused.startswith(b"550 5.6.0") and noop.startswith(b"250 ")
    assert await node.folder_messages("bob@b.test") == []
    assert await node.folder_messages("alice@b.test", "Sent") == []
