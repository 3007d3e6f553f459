"""Byte-level transcripts of the session: greeting, STARTTLS, authentication, errors."""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path

import pytest
from imap_harness import ALICE, PASSWORD, Pki, ServerThread, Transcript

from caducee.imap import ImapSettings


def test_plain_port_greets_with_starttls_and_logindisabled(server: ServerThread) -> None:
    t = Transcript.connect(server.port)
    greeting = t.readline()
    assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
    assert b" STARTTLS LOGINDISABLED]" in greeting
    assert b"AUTH=PLAIN" not in greeting
    assert t.cmd(f'a LOGIN "{ALICE}" "{PASSWORD}"') == (
        b"a NO [PRIVACYREQUIRED] LOGIN is disabled until STARTTLS\r\n"
    )
    assert t.cmd("b AUTHENTICATE PLAIN") == b"b NO [PRIVACYREQUIRED] Use STARTTLS first\r\n"
    assert t.cmd("c SELECT INBOX") == b"c BAD SELECT needs authentication first\r\n"
    t.close()


def test_starttls_then_login(server: ServerThread, pki: Pki) -> None:
    t = Transcript.connect(server.port)
    t.readline()
    assert t.starttls(pki) == b"S OK Begin TLS negotiation now\r\n"
    caps = t.cmd("a CAPABILITY")
    assert b"AUTH=PLAIN" in caps and b"STARTTLS" not in caps and b"LOGINDISABLED" not in caps
    out = t.login()
    assert out.startswith(b"L OK [CAPABILITY IMAP4rev1 IMAP4rev2 ") and out.endswith(
        b"] Logged in\r\n"
    )
    assert b"ACL" in out and b"UIDPLUS" in out
    assert t.cmd("b STARTTLS") == b"b BAD STARTTLS not allowed once authenticated\r\n"
    t.close()


def test_starttls_discards_pipelined_plaintext(server: ServerThread, pki: Pki) -> None:
    """Commands sent in clear after STARTTLS must not run inside TLS (CVE-2011-0411 class)."""
    t = Transcript.connect(server.port)
    t.readline()
    t.send(b"S STARTTLS\r\nX CAPABILITY\r\n")
    assert t.readline() == b"S OK Begin TLS negotiation now\r\n"
    t.sock = pki.client_context().wrap_socket(t.sock, server_hostname="localhost")
    assert t.cmd("Y NOOP") == b"Y OK NOOP completed\r\n"
    t.close()


def test_implicit_tls_and_authenticate_plain_sasl_ir(server: ServerThread, pki: Pki) -> None:
    t = Transcript.connect(server.tls_port, pki)
    assert b"AUTH=PLAIN" in t.readline()
    good = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    assert t.cmd(f"a AUTHENTICATE PLAIN {good}").startswith(b"a OK [CAPABILITY ")
    t.close()


def test_authenticate_with_continuation_and_cancel(server: ServerThread, pki: Pki) -> None:
    t = Transcript.connect(server.tls_port, pki)
    t.readline()
    t.send(b"a AUTHENTICATE PLAIN\r\n")
    assert t.readline() == b"+ \r\n"
    t.send(b"*\r\n")
    assert t.readline() == b"a BAD Authentication cancelled\r\n"
    t.send(b"b AUTHENTICATE PLAIN\r\n")
    assert t.readline() == b"+ \r\n"
    t.send(base64.b64encode(f"\0{ALICE}\0wrong".encode()) + b"\r\n")
    assert t.readline() == b"b NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    assert t.cmd("c AUTHENTICATE FOO") == b"c NO [CANNOT] Unsupported authentication mechanism\r\n"
    t.close()


def test_wrong_password_and_unknown_user_look_the_same(server: ServerThread, pki: Pki) -> None:
    t = Transcript.connect(server.tls_port, pki)
    t.readline()
    a = t.cmd(f'a LOGIN "{ALICE}" "nope"')
    b = t.cmd('a LOGIN "nobody@hop.mssante.fr" "nope"')
    assert a == b == b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    t.close()


def test_bad_syntax_gets_bad_with_reason_and_connection_survives(client: Transcript) -> None:
    assert client.cmd("a FETCH") == b"a BAD expected a space before end of line\r\n"
    assert client.cmd("b FROBNICATE") == b"b BAD unknown command 'FROBNICATE'\r\n"
    client.send(b"\x00\xff garbage\r\n")
    assert client.readline() == b"* BAD missing or invalid tag\r\n"
    assert client.cmd("c SEARCH CHARSET KOI8-R ALL") == (
        b"c NO [BADCHARSET (UTF-8 US-ASCII)] unsupported charset KOI8-R\r\n"
    )
    assert client.cmd("d FETCH 1 FLAGS") == b"d BAD FETCH needs a selected mailbox\r\n"
    assert client.cmd("e NOOP") == b"e OK NOOP completed\r\n"


def test_command_line_length_limit(client: Transcript) -> None:
    client.send(b"a NOOP " + b"x" * 70000 + b"\r\n")
    assert client.readline() == b"a BAD command line too long\r\n"
    assert client.cmd("b NOOP") == b"b OK NOOP completed\r\n"


def test_literal_size_limit_answers_toobig(client: Transcript, server: ServerThread) -> None:
    limit = server.settings.max_literal
    client.send(b"a APPEND INBOX {%d}\r\n" % (limit + 1))
    assert client.readline() == b"a NO [TOOBIG] literal too large\r\n"
    client.send(b"b APPEND INBOX {%d+}\r\n" % (limit + 1) + b"x" * (limit + 1) + b"\r\n")
    assert client.readline() == b"b NO [TOOBIG] literal too large\r\n"
    assert client.cmd("c NOOP") == b"c OK NOOP completed\r\n"


def test_big_literal_not_allowed_outside_append(client: Transcript) -> None:
    client.send(b"a LOGIN {100000}\r\n")
    assert client.readline() == b"a NO [TOOBIG] literal too large for this command\r\n"
    assert client.cmd("b NOOP") == b"b OK NOOP completed\r\n"


def test_id_enable_namespace_logout(client: Transcript) -> None:
    assert client.cmd('a ID ("name" "test")') == (
        b'* ID ("name" "Caducee" "vendor" "Caducee")\r\na OK ID completed\r\n'
    )
    assert (
        client.cmd("b ENABLE CONDSTORE FOO") == b"* ENABLED CONDSTORE\r\nb OK ENABLE completed\r\n"
    )
    assert client.cmd("c NAMESPACE") == (
        b'* NAMESPACE (("" "/")) NIL (("Partag&AOk-/" "/"))\r\nc OK NAMESPACE completed\r\n'
    )
    assert client.cmd("d ENABLE IMAP4rev2") == b"* ENABLED IMAP4rev2\r\nd OK ENABLE completed\r\n"
    assert client.cmd("e NAMESPACE") == (
        b'* NAMESPACE (("" "/")) NIL (("Partag\xc3\xa9/" "/"))\r\ne OK NAMESPACE completed\r\n'
    )
    assert client.cmd("z LOGOUT") == b"* BYE Logging out\r\nz OK LOGOUT completed\r\n"
    client.sock.settimeout(5)
    assert client.sock.recv(10) == b""


def test_abrupt_disconnects_do_not_hurt_the_server(server: ServerThread, pki: Pki) -> None:
    for payload in (b"", b"a LOGIN {10}\r\n", b"\x16\x03\x01garbage"):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.recv(1000)
        s.sendall(payload)
        s.close()
    raw = socket.create_connection(("127.0.0.1", server.tls_port))
    raw.sendall(b"not tls at all\r\n")
    raw.close()
    t = Transcript.connect(server.tls_port, pki)
    t.readline()
    assert t.login().startswith(b"L OK")
    t.close()


def test_silent_client_is_logged_out_and_active_one_is_not(tmp_path: Path, pki: Pki) -> None:
    """The read timeout (one lazily re-armed timer per session): a client that sends nothing
    gets BYE; one whose commands keep coming within the timeout keeps its connection."""
    settings = ImapSettings(auth_failure_delay=0.0, preauth_timeout=0.4, idle_timeout=0.4)
    srv = ServerThread(tmp_path, pki, settings=settings).start()
    try:
        silent = Transcript.connect(srv.tls_port, pki)
        busy = Transcript.connect(srv.tls_port, pki)
        silent.readline()
        busy.readline()
        assert b"OK" in busy.login()
        started = time.monotonic()
        while time.monotonic() - started < 1.2:  # three timeouts' worth of activity
            assert busy.cmd("n NOOP").endswith(b"n OK NOOP completed\r\n")
            time.sleep(0.1)  # the client's pace, not a synchronisation
        assert silent.readline() == b"* BYE Autologout; idle for too long\r\n"
        with pytest.raises(ConnectionError):
            silent.readline()
        assert busy.readline() == b"* BYE Autologout; idle for too long\r\n"  # now silent
        silent.close()
        busy.close()
    finally:
        srv.stop()
