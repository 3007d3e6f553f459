"""MULTIAPPEND is all or nothing (RFC 3502 §6.3.11): when one message fails (here the
quota), none of them stays. Both storage engines."""

from __future__ import annotations

from pathlib import Path

from imap_harness import PASSWORD, Pki, ServerThread, Transcript

from caducee.core.model import MailboxType

DAVE = "dave@hop.mssante.fr"
MSG = b"From: a@hop.mssante.fr\r\nSubject: multi\r\n\r\n" + b"x" * 400 + b"\r\n"


def test_multiappend_failure_leaves_nothing(
    tmp_path: Path, pki: Pki, engine_dsn: str | None
) -> None:
    server = ServerThread(tmp_path, pki, pg_dsn=engine_dsn).start()
    try:

        async def make_dave() -> None:
            await server.st.accounts.create_account(DAVE, PASSWORD)
            await server.st.accounts.create_mailbox(
                DAVE, MailboxType.PER, "810000000009", quota_bytes=3 * len(MSG) // 2
            )

        server.run(make_dave)
        t = Transcript.connect(server.tls_port, pki)
        t.readline()
        assert t.login(DAVE).startswith(b"L OK")
        t.cmd("s SELECT INBOX")
        lit = b"{%d+}\r\n%s" % (len(MSG), MSG)
        out = t.cmd(b"a APPEND INBOX " + lit + b" " + lit + b" " + lit)
        assert out.endswith(b"a NO [OVERQUOTA] Quota exceeded\r\n"), out
        assert t.cmd("n NOOP").endswith(b"n OK NOOP completed\r\n")
        assert t.cmd("f UID FETCH 1:* UID") == b"f OK UID FETCH completed\r\n"
        out = t.cmd("q STATUS INBOX (MESSAGES)")
        assert b"(MESSAGES 0)" in out
        # the quota was given back: one message fits again
        assert b"a2 OK [APPENDUID" in t.cmd(b"a2 APPEND INBOX " + lit)
        t.close()
    finally:
        server.stop()
