"""Python imaplib against the real server: the everyday flows, IDLE push, concurrent
sessions on one mailbox (RFC 9051 §5.2, §7.4), UIDVALIDITY across restarts."""

from __future__ import annotations

import imaplib
import time
from pathlib import Path

from imap_harness import ALICE, PASSWORD, Pki, ServerThread, Transcript

MSG = b"From: a@hop.mssante.fr\r\nSubject: test\r\n\r\nbody\r\n"


def connect(server: ServerThread, pki: Pki) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL(
        "localhost", server.tls_port, ssl_context=pki.client_context(), timeout=10
    )
    m.login(ALICE, PASSWORD)
    return m


def test_starttls_flow_with_imaplib(server: ServerThread, pki: Pki) -> None:
    m = imaplib.IMAP4("localhost", server.port, timeout=10)
    assert "LOGINDISABLED" in m.capabilities
    m.starttls(ssl_context=pki.client_context())
    assert m.login(ALICE, PASSWORD)[0] == "OK"
    typ, data = m.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(time.time()), MSG)
    assert typ == "OK" and b"APPENDUID" in data[0]
    assert m.select("INBOX") == ("OK", [b"1"])
    typ, data = m.fetch("1", "(FLAGS BODY[])")
    assert data[0][1] == MSG  # type: ignore[index]
    assert m.search(None, "FLAGGED") == ("OK", [b"1"])
    assert m.store("1", "+FLAGS", "\\Deleted")[0] == "OK"
    assert m.expunge() == ("OK", [b"1"])
    m.logout()


def test_idle_push_latency(server: ServerThread, pki: Pki) -> None:
    """A delivery reaches an IDLE client well within 100 ms (p50) on the same node."""
    t = Transcript.connect(server.tls_port, pki)
    t.readline()
    t.login()
    t.cmd("s SELECT INBOX")
    delays: list[float] = []
    for i in range(5):
        t.send(b"i IDLE\r\n")
        assert t.readline() == b"+ idling\r\n"
        start = time.perf_counter()
        server.deliver(ALICE, MSG)
        line = t.readline()
        delays.append(time.perf_counter() - start)
        assert line == b"* %d EXISTS\r\n" % (i + 1)
        assert t.readline() == b"* %d RECENT\r\n" % (i + 1)
        t.send(b"DONE\r\n")
        assert t.readline() == b"i OK IDLE terminated\r\n"
    delays.sort()
    assert delays[len(delays) // 2] < 0.1, delays
    t.close()


def test_concurrent_sessions_see_consistent_updates(server: ServerThread, pki: Pki) -> None:
    for _ in range(3):
        server.deliver(ALICE, MSG)
    a = Transcript.connect(server.tls_port, pki)
    b = Transcript.connect(server.tls_port, pki)
    for t in (a, b):
        t.readline()
        t.login()
        t.cmd("s SELECT INBOX")
    b.send(b"i IDLE\r\n")
    assert b.readline() == b"+ idling\r\n"
    a.cmd("x STORE 2 +FLAGS.SILENT (\\Deleted \\Seen)")
    assert b.readline() == b"* 2 FETCH (UID 2 FLAGS (\\Deleted \\Seen))\r\n"
    a.cmd("y EXPUNGE")
    assert b.readline() == b"* 2 EXPUNGE\r\n"
    server.deliver(ALICE, MSG)
    assert b.readline() == b"* 3 EXISTS\r\n"
    assert b.readline() == b"* 1 RECENT\r\n"
    b.send(b"DONE\r\n")
    assert b.readline() == b"i OK IDLE terminated\r\n"
    # a non-IDLE session learns of the new message at its next command, and sequence numbers
    # stay those it was told: EXPUNGE is not sent during FETCH
    c = Transcript.connect(server.tls_port, pki)
    c.readline()
    c.login()
    c.cmd("s SELECT INBOX")
    a.cmd("z STORE 1 +FLAGS.SILENT (\\Deleted)")
    a.cmd("z2 EXPUNGE")
    assert c.cmd("f FETCH 1:* UID") == (
        b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 3)\r\n* 3 FETCH (UID 4)\r\nf OK FETCH completed\r\n"
    )
    assert c.cmd("n NOOP") == b"* 1 EXPUNGE\r\nn OK NOOP completed\r\n"
    for t in (a, b, c):
        t.close()


def test_uidvalidity_stable_across_restarts(tmp_path: Path, pki: Pki) -> None:
    first = ServerThread(tmp_path, pki).start()
    first.deliver(ALICE, MSG)
    t = Transcript.connect(first.tls_port, pki)
    t.readline()
    t.login()
    before = [line for line in t.cmd("s SELECT INBOX").split(b"\r\n") if b"UIDVALIDITY" in line]
    t.close()
    first.stop_server_only()
    second = first.restart()
    t = Transcript.connect(second.tls_port, pki)
    t.readline()
    t.login()
    after = [line for line in t.cmd("s SELECT INBOX").split(b"\r\n") if b"UIDVALIDITY" in line]
    assert before == after and before
    assert t.cmd("f UID FETCH 1 UID") == b"* 1 FETCH (UID 1)\r\nf OK UID FETCH completed\r\n"
    t.close()
    second.stop()


def test_many_idle_sessions_all_woken(server: ServerThread, pki: Pki) -> None:
    sessions = []
    for _ in range(20):
        t = Transcript.connect(server.tls_port, pki)
        t.readline()
        t.login()
        t.cmd("s SELECT INBOX")
        t.send(b"i IDLE\r\n")
        assert t.readline() == b"+ idling\r\n"
        sessions.append(t)
    server.deliver(ALICE, MSG)
    for t in sessions:
        assert t.readline() == b"* 1 EXISTS\r\n"
        t.close()
