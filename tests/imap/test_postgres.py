"""The core flows on PostgreSQL, and IDLE push across two nodes sharing the database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from imap_harness import ALICE, Pki, ServerThread, Transcript

from caducee.core.model import MailboxType

pytestmark = pytest.mark.postgres

MSG = b"From: a@hop.mssante.fr\r\nSubject: pg\r\n\r\nbody on postgres\r\n"


@pytest.fixture
def pg_server(tmp_path: Path, pki: Pki, pg_dsn: str) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path, pki, pg_dsn=pg_dsn).start()
    try:
        yield srv
    finally:
        srv.stop()


def session(server: ServerThread, pki: Pki) -> Transcript:
    t = Transcript.connect(server.tls_port, pki)
    t.readline()
    assert t.login().startswith(b"L OK")
    return t


def test_core_flow_on_postgres(pg_server: ServerThread, pki: Pki) -> None:
    pg_server.deliver(ALICE, MSG)
    t = session(pg_server, pki)
    assert b"* 1 EXISTS" in t.cmd("a SELECT INBOX")
    assert t.cmd("b FETCH 1 BODY[TEXT]") == (
        b"* 1 FETCH (BODY[TEXT] {18}\r\nbody on postgres\r\n FLAGS (\\Recent \\Seen))\r\n"
        b"b OK FETCH completed\r\n"
    )
    t.send(b"c APPEND INBOX (\\Flagged) {%d+}\r\n%s\r\n" % (len(MSG), MSG))
    out = t.until_tagged("c")
    assert out.startswith(b"* 2 EXISTS\r\n* 2 RECENT\r\nc OK [APPENDUID")
    assert t.cmd("d NOOP") == b"d OK NOOP completed\r\n"
    assert t.cmd("e SEARCH FLAGGED BODY postgres") == b"* SEARCH 2\r\ne OK SEARCH completed\r\n"
    assert b"[COPYUID" in t.cmd("f MOVE 1 Trash")
    t.cmd("g STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert t.cmd("h EXPUNGE") == b"* 1 EXPUNGE\r\nh OK EXPUNGE completed\r\n"
    assert t.cmd("i CREATE Dossiers") == b"i OK CREATE completed\r\n"
    assert t.cmd("j RENAME Dossiers Archives") == b"j OK RENAME completed\r\n"
    assert (
        t.cmd("k STATUS Trash (MESSAGES)")
        == b"* STATUS Trash (MESSAGES 1)\r\nk OK STATUS completed\r\n"
    )
    t.close()


def test_idle_push_across_two_nodes(pg_server: ServerThread, pki: Pki, tmp_path: Path) -> None:
    other = ServerThread(tmp_path / "node2", pki, pg_dsn=pg_server.pg_dsn)
    (tmp_path / "node2").mkdir()
    (tmp_path / "node2" / "keyring").write_bytes((tmp_path / "keyring").read_bytes())
    other.start(fresh=False)
    try:
        t = session(other, pki)
        t.cmd("s SELECT INBOX")
        t.send(b"i IDLE\r\n")
        assert t.readline() == b"+ idling\r\n"
        start = time.perf_counter()
        pg_server.deliver(ALICE, MSG)
        assert t.readline() == b"* 1 EXISTS\r\n"
        assert time.perf_counter() - start < 0.5
        t.send(b"DONE\r\n")
        t.until_tagged("i")
        t.close()
    finally:
        other.stop()


def test_isolation_on_postgres(pg_server: ServerThread, pki: Pki) -> None:
    async def setup() -> None:
        await pg_server.st.accounts.create_mailbox("x@hop.mssante.fr", MailboxType.ORG, "1")

    pg_server.run(setup)
    t = session(pg_server, pki)
    assert t.cmd('a SELECT "Partag&AOk-/x@hop.mssante.fr/INBOX"') == (
        b"a NO [NONEXISTENT] Mailbox does not exist\r\n"
    )
    assert b"x@hop" not in t.cmd('b LIST "" *')
    t.close()
