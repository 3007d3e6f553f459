"""Reading message content over IMAP is access to health data: each FETCH that returns
headers, envelope or bodies is one audit event (BAL, folder, UIDs), never with the content;
a FETCH of flags only is not."""

from __future__ import annotations

import imaplib
from pathlib import Path

from imap_harness import ALICE, PASSWORD, Pki, ServerThread

MSG = b"From: a@hop.mssante.fr\r\nSubject: Compte rendu DUPONT Jean\r\n\r\nsecret body\r\n"


def test_fetch_of_content_is_audited_without_content(tmp_path: Path, pki: Pki) -> None:
    server = ServerThread(tmp_path, pki).start()
    try:
        server.deliver(ALICE, MSG)
        server.deliver(ALICE, MSG)
        m = imaplib.IMAP4_SSL(
            "localhost", server.tls_port, ssl_context=pki.client_context(), timeout=10
        )
        m.login(ALICE, PASSWORD)
        m.select("INBOX")
        m.fetch("1:2", "(FLAGS)")
        flags_only = server.run(lambda: server.st.audit.query(kind_prefix="imap.message.read"))
        assert flags_only == []
        m.uid("FETCH", "1:2", "(BODY.PEEK[])")
        m.logout()
        events = server.run(lambda: server.st.audit.query(kind_prefix="imap.message.read"))
        assert len(events) == 1
        ev = events[0]
        assert ev.actor == ALICE
        assert ev.target.lower() == ALICE.lower()
        assert dict(ev.details) == {"folder": "INBOX", "uids": "1:2", "count": "2"}
        assert "DUPONT" not in repr(ev) and "secret" not in repr(ev)
    finally:
        server.stop()
