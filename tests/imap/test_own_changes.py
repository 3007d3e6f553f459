"""A session's own STORE/APPEND/EXPUNGE and a re-SELECT of the same folder skip re-reading
the folder when nothing else changed it; interleaved changes from elsewhere must still show
(RFC 9051 §7.4, §5.2). Both storage engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from imap_harness import Pki, ServerThread, Transcript

MSG = b"From: a@hop.mssante.fr\r\nSubject: own\r\n\r\nbody\r\n"


@pytest.fixture
def any_server(tmp_path: Path, pki: Pki, engine_dsn: str | None) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path, pki, pg_dsn=engine_dsn).start()
    try:
        yield srv
    finally:
        srv.stop()


def rev2_session(server: ServerThread, pki: Pki) -> Transcript:
    t = Transcript.connect(server.tls_port, pki)
    t.readline()
    assert t.login().startswith(b"L OK")
    t.cmd("e ENABLE IMAP4rev2")
    return t


def state(t: Transcript) -> bytes:
    """Flags by UID as a fresh SELECT sees them."""
    out = t.cmd("s SELECT INBOX")
    assert out.endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    return t.cmd("f FETCH 1:* (UID FLAGS)")


def test_own_changes_interleaved_with_others(any_server: ServerThread, pki: Pki) -> None:
    for _ in range(3):
        any_server.deliver("alice@hop.mssante.fr", MSG)
    a = rev2_session(any_server, pki)
    b = rev2_session(any_server, pki)
    first = a.cmd("s SELECT INBOX")
    assert a.cmd("s SELECT INBOX").replace(b"[CLOSED] ", b"").endswith(first[-40:])
    b.cmd("s SELECT INBOX")
    assert a.cmd("1 STORE 1 +FLAGS (\\Flagged)") == (
        b"* 1 FETCH (FLAGS (\\Flagged))\r\n1 OK STORE completed\r\n"
    )
    b.cmd("2 STORE 2 +FLAGS.SILENT (\\Seen)")  # someone else, between two of a's STOREs
    out = a.cmd("3 STORE 3 +FLAGS (\\Answered)")
    out += a.cmd("4 NOOP")
    assert b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n" in out
    # own APPEND announced at once; an APPEND after a delivery re-reads and sees both
    assert a.cmd(b"5 APPEND INBOX {%d+}\r\n" % len(MSG) + MSG).startswith(b"* 4 EXISTS\r\n")
    any_server.deliver("alice@hop.mssante.fr", MSG)
    out = a.cmd(b"6 APPEND INBOX {%d+}\r\n" % len(MSG) + MSG)
    assert out.startswith(b"* 6 EXISTS\r\n"), out
    # own EXPUNGE, then someone else's STORE, then a re-SELECT: the STORE must show
    a.cmd("7 STORE 4 +FLAGS.SILENT (\\Deleted)")
    assert a.cmd("8 EXPUNGE") == b"* 4 EXPUNGE\r\n8 OK EXPUNGE completed\r\n"
    b.cmd("9 STORE 1 -FLAGS.SILENT (\\Flagged)")
    assert b"* 1 FETCH (UID 1 FLAGS ())" in state(a)
    # after an own EXPUNGE alone, a re-SELECT reuses the listing and still matches a fresh one
    a.cmd("10 STORE 5 +FLAGS.SILENT (\\Deleted)")
    a.cmd("11 EXPUNGE")
    c = rev2_session(any_server, pki)
    assert state(a) == state(c)
    assert state(b) == state(c)
    for t in (a, b, c):
        t.close()
