from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from caducee.smtp.outbound import DotStuffer, OutboundSession, PeerError
from caducee.testing.certs import IssuedCert, TrustSpaceCA

from .conftest import client_context
from .peer import Peer


def _stuff(chunks: list[bytes]) -> bytes:
    s = DotStuffer()
    return b"".join(s.feed(c) for c in chunks) + s.end()


def test_dot_stuffing_across_chunks() -> None:
    assert _stuff([b".a\r\n", b".b\r\nc"]) == b"..a\r\n..b\r\nc\r\n.\r\n"
    assert _stuff([b"a\r", b"\n.b"]) == b"a\r\n..b\r\n.\r\n"
    # bare LF / CR never travel: they become CRLF, so no fake end of data reaches the peer
    assert _stuff([b"x\n.\ny\r.\r\n"]) == b"x\r\n..\r\ny\r\n..\r\n.\r\n"
    assert _stuff([b"end\r"]) == b"end\r\n.\r\n"
    assert _stuff([]) == b".\r\n"


async def _body(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def _connect(ca: TrustSpaceCA, cert: IssuedCert, port: int) -> OutboundSession:
    return await OutboundSession.connect(
        "127.0.0.1",
        port,
        ssl_context=client_context(ca, cert),
        helo_name="mx.ch-a.mssante.test",
        timeout=10,
    )


async def test_two_messages_one_session_pipelined(
    peer: Peer, ca: TrustSpaceCA, our_cert: IssuedCert, peer_cert: IssuedCert
) -> None:
    port = peer.port
    session = await _connect(ca, our_cert, port)
    assert session.peer_cert_der == peer_cert.der
    assert "PIPELINING" in session.extensions and "DSN" in session.extensions
    msg1 = b"Subject: one\r\n\r\n.leading dot\r\nbody\r\n"
    r1 = await session.send(
        "a@ch-a.mssante.test",
        [("b@ch-b.mssante.test", frozenset({"SUCCESS", "FAILURE"}), "rfc822;b@ch-b.mssante.test")],
        _body(msg1),
        size=len(msg1),
        envid="E 1",
        ret="HDRS",
    )
    assert r1.data is not None and r1.data.code == 250
    r2 = await session.send(
        "a@ch-a.mssante.test",
        [("c@ch-b.mssante.test", frozenset(), None)],
        _body(b"Subject: two\r\n\r\nx"),
    )
    assert r2.data is not None and r2.data.ok
    await session.quit()
    assert peer.sessions == 1
    first, second = peer.received
    assert first.data == msg1
    assert "RET=HDRS" in first.mail_params and "ENVID=E+201" in first.mail_params
    assert first.rcpt_params == ["NOTIFY=FAILURE,SUCCESS ORCPT=rfc822;b@ch-b.mssante.test"]
    assert first.client_cert == our_cert.der
    assert second.data == b"Subject: two\r\n\r\nx\r\n"


async def test_rcpt_refusals_reported_per_recipient(
    peer: Peer, ca: TrustSpaceCA, our_cert: IssuedCert
) -> None:
    peer.rcpt_reply = lambda a: "550 5.1.1 unknown" if a.startswith("x") else "250 ok"
    port = peer.port
    session = await _connect(ca, our_cert, port)
    res = await session.send(
        "a@a.test",
        [("x@b.test", frozenset(), None), ("y@b.test", frozenset(), None)],
        _body(b"s\r\n"),
    )
    assert [r.code for r in res.rcpts] == [550, 250]
    assert res.data is not None and res.data.ok
    assert peer.received[0].rcpts == ["y@b.test"]
    only_bad = await session.send("a@a.test", [("x@b.test", frozenset(), None)], _body(b"s"))
    assert only_bad.data is None and only_bad.rcpts[0].code == 550
    await session.quit()


async def test_starttls_is_mandatory(peer: Peer, ca: TrustSpaceCA, our_cert: IssuedCert) -> None:
    peer.offer_starttls = False
    port = peer.port
    with pytest.raises(PeerError, match="STARTTLS"):
        await _connect(ca, our_cert, port)
    assert peer.received == []
