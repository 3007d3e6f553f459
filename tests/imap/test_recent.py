"""``\\Recent`` for IMAP4rev1 clients (RFC 3501 §2.3.2) with imaplib: a message is recent in
exactly one session, the first to select the folder read-write (or to see the message arrive
there), across sessions and restarts. Both storage engines."""

from __future__ import annotations

import imaplib
from pathlib import Path

from imap_harness import ALICE, PASSWORD, Pki, ServerThread

MSG = b"From: a@hop.mssante.fr\r\nSubject: recent\r\n\r\nbody\r\n"


def session(server: ServerThread, pki: Pki) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL(
        "localhost", server.tls_port, ssl_context=pki.client_context(), timeout=10
    )
    m.login(ALICE, PASSWORD)
    return m


def select_recent(m: imaplib.IMAP4_SSL, readonly: bool = False) -> int:
    assert m.select("INBOX", readonly=readonly)[0] == "OK"
    _typ, data = m.response("RECENT")
    return int(data[0])  # type: ignore[arg-type]


def test_recent_once_across_sessions_and_restarts(
    tmp_path: Path, pki: Pki, engine_dsn: str | None
) -> None:
    server = ServerThread(tmp_path, pki, pg_dsn=engine_dsn).start()
    try:
        server.deliver(ALICE, MSG)
        server.deliver(ALICE, MSG)
        viewer = session(server, pki)
        assert select_recent(viewer, readonly=True) == 2  # EXAMINE looks, takes nothing
        a = session(server, pki)
        assert select_recent(a) == 2
        assert b"\\Recent" in a.fetch("1", "FLAGS")[1][0]  # type: ignore[operator]
        assert a.search(None, "RECENT") == ("OK", [b"1 2"])
        b = session(server, pki)
        assert select_recent(b) == 0  # a has them
        assert b.search(None, "NEW") == ("OK", [b""])
        server.deliver(ALICE, MSG)  # arrives while a has INBOX selected
        a.noop()
        assert a.search(None, "RECENT") == ("OK", [b"1 2 3"])
        a.logout()  # leaving: message 3 was recent in a, so in no later session
        b.close()
        b.logout()
        viewer.logout()
        server.deliver(ALICE, MSG)
        server.stop_server_only()
        server = server.restart()
        c = session(server, pki)
        assert select_recent(c) == 1  # only message 4, across the restart
        assert c.search(None, "RECENT") == ("OK", [b"4"])
        assert select_recent(c) == 0  # re-SELECT: already this session's
        c.logout()
    finally:
        server.stop()
