"""Relay-in over real TLS with real certificates (issue 2 §5, mssante-notes §1.3).

Each trust failure of the MOTCO1 list (no TLS, no client certificate, expired, revoked, other
CA, DN not listed, CN matching but DN different) is refused with a precise code and an audit
event; then protocol behaviour: PIPELINING, STARTTLS injection, limits, bad bytes, disconnects.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from pathlib import Path

import pytest
from smtp_harness import Node, Pki, RawClient, body_of, dot_stuff, make_node

from caducee.core.model import MailboxType

MSG = b"From: x@a.test\r\nTo: bob@b.test\r\nSubject: hi\r\n\r\nhello\r\n.dot line\r\n"


async def test_accepts_mail_from_listed_operator_and_stores_byte_exact(node: Node) -> None:
    def send() -> dict[str, tuple[int, bytes]]:
        with node.relay_client() as c:
            assert c.has_extn("pipelining") and c.has_extn("dsn") and c.has_extn("smtputf8")
            assert not c.has_extn("starttls") and not c.has_extn("auth")
            return c.sendmail("x@a.test", ["bob@b.test"], MSG, rcpt_options=["NOTIFY=SUCCESS"])

    assert await asyncio.to_thread(send) == {}
    (stored,) = await node.folder_messages("bob@b.test")
    assert body_of(stored) == MSG
    trace = stored[: len(stored) - len(MSG)]
    assert trace.startswith(b"Return-Path: <x@a.test>\r\nReceived: from mx.a.test ([127.0.0.1])")
    assert b"by mx.b.test (using TLSv1.3" in trace and b"with ESMTPS id" in trace
    assert b"for <bob@b.test>" in trace
    ev = await node.wait_audit(lambda e: e.kind == "smtp.relay.accepted")
    assert ev.actor == node.pki.peer.subject_dn and ev.outcome == "ok"
    (delivered,) = node.delivered  # NOTIFY=SUCCESS: the hook got it, for the success DSN
    assert delivered.kind == "relay" and delivered.recipients[0].notify == {"SUCCESS"}


async def test_ehlo_before_tls_offers_starttls_and_refuses_mail(node: Node) -> None:
    def talk() -> tuple[int, bytes]:
        with node.relay_client(tls=False) as c:
            c.ehlo()
            assert c.has_extn("starttls") and not c.has_extn("auth")
            for cmd in ("MAIL FROM:<x@a.test>", "RCPT TO:<bob@b.test>", "DATA", "AUTH PLAIN"):
                assert c.docmd(cmd)[0] == 530
            return c.docmd("NOOP")

    assert (await asyncio.to_thread(talk))[0] == 250
    ev = await node.wait_audit(lambda e: e.kind == "smtp.relay.refused")
    assert "before STARTTLS" in ev.details["reason"]
    assert not await node.folder_messages("bob@b.test")


async def test_no_client_certificate_is_refused_at_mail(node: Node) -> None:
    def talk() -> tuple[int, bytes]:
        with smtplib.SMTP(*node.relay_addr, local_hostname="mx.a.test", timeout=20) as c:
            c.starttls(context=node.client_context(None))
            c.ehlo()
            return c.mail("x@a.test")

    code, text = await asyncio.to_thread(talk)
    assert (code, text[:5]) == (530, b"5.7.0")
    assert b"client certificate required" in text
    ev = await node.wait_audit(lambda e: e.kind == "smtp.relay.refused" and e.target == "a.test")
    assert "certificate" in ev.details["reason"]


@pytest.mark.parametrize(
    ("which", "why"),
    [("expired", "expired"), ("revoked", "revoked"), ("foreign", "trust-space CA")],
)
async def test_bad_certificate_fails_the_handshake_with_audit(
    node: Node, which: str, why: str
) -> None:
    cert = getattr(node.pki, which)

    def talk() -> None:
        c = smtplib.SMTP(*node.relay_addr, local_hostname="mx.a.test", timeout=20)
        try:
            c.starttls(context=node.client_context(cert))
            # TLS 1.3: the server's verdict on our certificate arrives after our Finished.
            c.ehlo()
            c.mail("x@a.test")
        finally:
            c.close()

    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        await asyncio.to_thread(talk)
    ev = await node.wait_audit(lambda e: e.kind == "smtp.relay.tls_failed")
    assert why in ev.details["reason"], ev.details
    assert ev.outcome == "refused"


@pytest.mark.parametrize(
    ("which", "sender", "expected"),
    [
        ("unlisted", "x@a.test", b"not listed for domain a.test"),
        ("cn_diff", "x@a.test", b"with a different DN"),
        ("peer", "x@c.test", b"not listed for domain c.test"),
        ("peer", "x@nowhere.test", b"not in the liste blanche"),
    ],
)
async def test_dn_checked_against_liste_blanche_for_mail_from_domain(
    node: Node, which: str, sender: str, expected: bytes
) -> None:
    cert = getattr(node.pki, which)

    def talk() -> tuple[int, bytes]:
        with node.relay_client(cert) as c:
            return c.mail(sender)

    code, text = await asyncio.to_thread(talk)
    assert code == 550 and text.startswith(b"5.7.1 ")
    assert expected in text
    ev = await node.wait_audit(
        lambda e: e.kind == "smtp.relay.refused" and e.actor == cert.subject_dn
    )
    assert ev.details["code"] == "550 5.7.1"


async def test_null_sender_from_listed_operator_is_accepted(node: Node) -> None:
    def send() -> dict[str, tuple[int, bytes]]:
        with node.relay_client() as c:
            return c.sendmail("<>", ["bob@b.test"], b"Subject: DSN\r\n\r\nreport\r\n")

    assert await asyncio.to_thread(send) == {}
    (stored,) = await node.folder_messages("bob@b.test")
    assert stored.startswith(b"Return-Path: <>\r\n")


async def test_unknown_local_mailbox_is_550_5_1_1(node: Node) -> None:
    def talk() -> tuple[int, bytes]:
        with node.relay_client() as c:
            c.mail("x@a.test")
            return c.rcpt("nobody@b.test")

    code, text = await asyncio.to_thread(talk)
    assert (code, text[:5]) == (550, b"5.1.1")


async def test_size_announced_and_enforced_early_and_during_data(node: Node) -> None:
    limit = node.cfg.smtp.max_message_bytes

    def talk() -> tuple[int, int, int]:
        with node.relay_client() as c:
            assert int(c.esmtp_features["size"]) == limit
            early = c.mail("x@a.test", [f"SIZE={limit + 1}"])[0]
            c.mail("x@a.test", ["SIZE=100"])  # lies about the size
            c.rcpt("bob@b.test")
            late = c.data(b"Subject: big\r\n\r\n" + (b"x" * 990 + b"\r\n") * (limit // 992 + 2))[0]
            return early, late, c.noop()[0]

    assert await asyncio.to_thread(talk) == (552, 552, 250)
    assert not await node.folder_messages("bob@b.test")


async def test_pipelining_replies_in_order(node: Node) -> None:
    def talk() -> list[int]:
        c = RawClient(node.relay_addr)
        c.starttls(node.client_context(node.pki.peer))
        c.send(
            b"MAIL FROM:<x@a.test>\r\nRCPT TO:<bob@b.test>\r\nRCPT TO:<nobody@b.test>\r\n"
            b"RCPT TO:<alice@b.test>\r\nDATA\r\n"
        )
        codes = c.codes(5)
        c.send(dot_stuff(MSG) + b"MAIL FROM:<x@a.test>\r\nRCPT TO:<carol@b.test>\r\nDATA\r\n")
        codes += c.codes(4)
        c.send(dot_stuff(b"Subject: 2\r\n\r\n.\r\n") + b"QUIT\r\n")
        codes += c.codes(2)
        c.close()
        return codes

    assert await asyncio.to_thread(talk) == [250, 250, 550, 250, 354, 250, 250, 250, 354, 250, 221]
    assert [body_of(m) for m in await node.folder_messages("bob@b.test")] == [MSG]
    assert len(await node.folder_messages("alice@b.test")) == 1
    (second,) = await node.folder_messages("carol@b.test")
    assert body_of(second) == b"Subject: 2\r\n\r\n.\r\n"


async def test_commands_pipelined_after_starttls_are_discarded(node: Node) -> None:
    def talk() -> list[bytes]:
        c = RawClient(node.relay_addr)
        c.replies(1)
        c.send(b"EHLO mx.a.test\r\nSTARTTLS\r\nMAIL FROM:<x@a.test>\r\nRCPT TO:<bob@b.test>\r\n")
        assert c.codes(2) == [250, 220]
        c.sock = node.client_context(node.pki.peer).wrap_socket(c.sock)
        c.send(b"NOOP\r\n")
        out = c.replies(1)
        c.send(b"RCPT TO:<bob@b.test>\r\n")  # the injected MAIL never happened
        out += c.replies(1)
        c.close()
        return out

    noop, rcpt = await asyncio.to_thread(talk)
    assert noop.startswith(b"250 ")
    assert rcpt.startswith(b"503 ")


async def test_bad_bytes_in_commands_get_5xx_and_session_goes_on(node: Node) -> None:
    def talk() -> list[int]:
        c = RawClient(node.relay_addr)
        c.starttls(node.client_context(node.pki.peer))
        c.send(b"MAIL FROM:<x\x00@a.test>\r\n")
        c.send(b"MAIL FROM:<\xe9@a.test>\r\n")
        c.send(b"NOOP " + b"x" * 5000 + b"\r\n")
        c.send(b"RCPT TO:<bob@b.test>\nNOOP\r\n")
        c.send(b"MAIL FROM:<x@a.test> BODY=8BITMIME\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n")
        codes = c.codes(8)
        c.send(b"Subject: \xe9t\xe9\r\n\r\nNUL \x00 and latin-1 \xe0\r\n.\r\n")
        codes += c.codes(1)
        c.close()
        return codes

    assert await asyncio.to_thread(talk) == [500, 500, 500, 500, 250, 250, 250, 354, 250]
    (stored,) = await node.folder_messages("bob@b.test")
    assert body_of(stored) == b"Subject: \xe9t\xe9\r\n\r\nNUL \x00 and latin-1 \xe0\r\n"


async def test_helo_client_gets_no_enhanced_codes(node: Node) -> None:
    def talk() -> list[bytes]:
        c = RawClient(node.relay_addr)
        c.starttls(node.client_context(node.pki.peer))
        c.send(b"HELO mx.a.test\r\nRCPT TO:<bob@b.test>\r\n")
        out = c.replies(2)
        c.close()
        return out

    helo, rcpt = await asyncio.to_thread(talk)
    assert helo == b"250 mx.b.test\r\n"
    assert rcpt.startswith(b"503 Need MAIL")


def _leftovers(data_dir: Path) -> list[Path]:
    tmp = data_dir / "blobs" / "tmp"
    return [p for p in tmp.rglob("*") if p.is_file()] if tmp.exists() else []


async def test_abrupt_disconnect_during_data_stores_nothing(node: Node) -> None:
    def talk() -> None:
        c = RawClient(node.relay_addr)
        c.starttls(node.client_context(node.pki.peer))
        c.send(b"MAIL FROM:<x@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n")
        assert c.codes(3) == [250, 250, 354]
        c.send(b"Subject: cut\r\n\r\n" + (b"y" * 998 + b"\r\n") * 300)
        c.sock.close()

    await asyncio.to_thread(talk)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while node.relay._listener.session_count and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert node.relay._listener.session_count == 0
    assert not await node.folder_messages("bob@b.test")
    assert _leftovers(node.cfg.data_dir) == []


async def test_server_stop_during_data_stores_nothing(node: Node) -> None:
    started = asyncio.Event()

    def talk() -> None:
        c = RawClient(node.relay_addr)
        c.starttls(node.client_context(node.pki.peer))
        c.send(b"MAIL FROM:<x@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n")
        assert c.codes(3) == [250, 250, 354]
        c.send(b"Subject: cut\r\n\r\n" + b"z" * 200_000)
        loop.call_soon_threadsafe(started.set)
        try:
            while c.sock.recv(4096):
                pass
        except OSError:
            pass
        c.close()

    loop = asyncio.get_running_loop()
    client = asyncio.create_task(asyncio.to_thread(talk))
    await asyncio.wait_for(started.wait(), 10)
    await node.relay.stop()
    await asyncio.wait_for(client, 10)
    assert not await node.folder_messages("bob@b.test")
    assert _leftovers(node.cfg.data_dir) == []


async def test_max_recipients_and_idle_timeout(pki: Pki, tmp_path: Path) -> None:
    node = await make_node(pki, tmp_path, max_recipients=2, command_timeout=0.5)
    try:

        def talk() -> tuple[list[int], bytes]:
            c = RawClient(node.relay_addr)
            c.starttls(node.client_context(node.pki.peer))
            c.send(
                b"MAIL FROM:<x@a.test>\r\nRCPT TO:<bob@b.test>\r\nRCPT TO:<alice@b.test>\r\n"
                b"RCPT TO:<carol@b.test>\r\n"
            )
            codes = c.codes(4)
            last = c.replies(1)[0]  # nothing more sent: the server times out
            c.close()
            return codes, last

        codes, last = await asyncio.to_thread(talk)
        assert codes == [250, 250, 250, 452]
        assert last.startswith(b"421 4.4.2")
    finally:
        await node.relay.stop()
        await node.submission.stop()
        await node.storage.close()


async def test_disconnect_during_tls_handshake_ends_session_at_once(node: Node) -> None:
    def talk() -> None:
        c = RawClient(node.relay_addr)
        c.replies(1)
        c.send(b"EHLO mx.a.test\r\nSTARTTLS\r\n")
        assert c.codes(2) == [250, 220]
        c.send(b"\x16\x03\x01\x00")  # the start of a ClientHello, then gone
        c.close()

    await asyncio.to_thread(talk)
    ev = await node.wait_audit(lambda e: e.kind == "smtp.relay.tls_failed", timeout=5)
    assert "during the TLS handshake" in ev.details["reason"] or ev.details["reason"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while node.relay._listener.session_count and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert node.relay._listener.session_count == 0


async def test_plaintext_after_starttls_is_a_handshake_failure(node: Node) -> None:
    def talk() -> bytes:
        c = RawClient(node.relay_addr)
        c.replies(1)
        c.send(b"EHLO mx.a.test\r\nSTARTTLS\r\n")
        assert c.codes(2) == [250, 220]
        c.send(b"MAIL FROM:<x@a.test>\r\n")
        data = b""
        try:
            while chunk := c.sock.recv(4096):
                data += chunk
        except OSError:
            pass
        c.close()
        return data

    data = await asyncio.to_thread(talk)
    assert b"250" not in data  # never answered in plaintext after STARTTLS
    ev = await node.wait_audit(lambda e: e.kind == "smtp.relay.tls_failed")
    assert ev.outcome == "refused"


async def test_connections_over_the_limit_get_421(pki: Pki, tmp_path: Path) -> None:
    node = await make_node(pki, tmp_path, max_sessions=1)
    try:

        def talk() -> bytes:
            first = RawClient(node.relay_addr)
            assert first.codes(1) == [220]
            second = RawClient(node.relay_addr)
            busy = second.replies(1)[0]
            second.close()
            first.send(b"NOOP\r\n")
            assert first.codes(1) == [250]  # the first session is unaffected
            first.close()
            return busy

        assert (await asyncio.to_thread(talk)).startswith(b"421 4.3.2")
    finally:
        await node.relay.stop()
        await node.submission.stop()
        await node.storage.close()


async def test_http_request_is_answered_once_and_closed(node: Node) -> None:
    def talk() -> bytes:
        c = RawClient(node.relay_addr)
        c.replies(1)
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nMAIL FROM:<x@a.test>\r\n")
        data = b""
        while chunk := c.sock.recv(4096):
            data += chunk
        c.close()
        return data

    assert await asyncio.to_thread(talk) == b"221 Not an SMTP client, bye\r\n"


async def test_over_long_line_in_data_is_refused_and_session_stays_in_sync(node: Node) -> None:
    def talk() -> list[bytes]:
        c = RawClient(node.relay_addr)
        c.starttls(node.client_context(node.pki.peer))
        c.send(b"MAIL FROM:<x@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n")
        assert c.codes(3) == [250, 250, 354]
        c.send(b"Subject: long\r\nX-Long: " + b"h" * 70_000 + b"\r\n\r\nbody\r\n.\r\nNOOP\r\n")
        out = c.replies(2)
        c.close()
        return out

    refused, noop = await asyncio.to_thread(talk)
    assert refused.startswith(b"550 5.6.0") and b"exceeds 65536" in refused
    assert noop.startswith(b"250 ")
    assert await node.folder_messages("bob@b.test") == []


async def test_recipient_over_quota_is_452_and_nothing_stored(node: Node) -> None:
    await node.storage.accounts.create_mailbox(
        "tiny@b.test", MailboxType.PER, "810000000003", quota_bytes=100
    )

    def talk() -> tuple[int, bytes]:
        with node.relay_client() as c:
            c.mail("x@a.test")
            c.rcpt("tiny@b.test")
            c.rcpt("bob@b.test")
            return c.data(b"Subject: q\r\n\r\n" + b"z" * 1000 + b"\r\n")

    code, text = await asyncio.to_thread(talk)
    assert (code, text[:5]) == (452, b"4.2.2")
    assert await node.folder_messages("bob@b.test") == []  # atomic: all or nothing
    assert await node.folder_messages("tiny@b.test") == []


async def test_recipient_probing_hits_the_error_limit(node: Node) -> None:
    def talk() -> list[int]:
        c = RawClient(node.relay_addr)
        c.starttls(node.client_context(node.pki.peer))
        c.send(b"MAIL FROM:<x@a.test>\r\n")
        codes = c.codes(1)
        for i in range(12):
            c.send(f"RCPT TO:<user{i}@b.test>\r\n".encode())
        codes += c.codes(11)
        closed = c.sock.recv(4096) == b""
        c.close()
        return [*codes, closed]

    # Ten refusals (max_errors), then 421 and the connection closes.
    assert await asyncio.to_thread(talk) == [250, *[550] * 10, 421, True]
