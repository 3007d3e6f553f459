"""Byte-level regressions for conformance gaps found by running a third-party scripted IMAP
compliance suite against the server (docs/imap.md, "Conformance"). Each test is ours: it
states the RFC rule and checks the exact bytes."""

from __future__ import annotations

from imap_harness import ALICE, ServerThread, Transcript

PLAIN = b"From: a@b.fr\r\nSubject: x\r\n\r\nhello\r\n"


def test_system_flags_are_case_insensitive(client: Transcript, server: ServerThread) -> None:
    # RFC 9051 §2.3.2: flag names are not case-sensitive; "\seen" is \Seen
    server.deliver(ALICE, PLAIN)
    client.cmd("s SELECT INBOX")
    out = client.cmd("a STORE 1 +FLAGS (\\seen \\FLAGGED)")
    assert out == b"* 1 FETCH (FLAGS (\\Recent \\Flagged \\Seen))\r\na OK STORE completed\r\n"
    out = client.cmd("b STORE 1 -FLAGS \\sEEn")
    assert out == b"* 1 FETCH (FLAGS (\\Recent \\Flagged))\r\nb OK STORE completed\r\n"
    client.send(b'c APPEND INBOX (\\draft) "01-Jan-2020 10:00:00 +0000" {5}\r\n')
    assert client.readline().startswith(b"+ ")
    client.send(b"hello\r\n")
    assert client.until_tagged("c").endswith(b"] APPEND completed\r\n")
    out = client.cmd("d FETCH 2 FLAGS")
    assert out == b"* 2 FETCH (FLAGS (\\Recent \\Draft))\r\nd OK FETCH completed\r\n"


def test_status_recent_counts_messages_no_session_has_seen(
    client: Transcript, server: ServerThread
) -> None:
    # RFC 3501 §6.3.10: STATUS RECENT is the number of messages with \Recent. EXAMINE does
    # not take them, SELECT does (in that session only); a later session sees none.
    server.deliver(ALICE, PLAIN)
    server.deliver(ALICE, PLAIN)
    assert client.cmd("a STATUS INBOX (RECENT MESSAGES)") == (
        b"* STATUS INBOX (RECENT 2 MESSAGES 2)\r\na OK STATUS completed\r\n"
    )
    client.cmd("b EXAMINE INBOX")
    assert client.cmd("c STATUS INBOX (RECENT)") == (
        b"* STATUS INBOX (RECENT 2)\r\nc OK STATUS completed\r\n"
    )
    client.cmd("d SELECT INBOX")
    # the selecting session holds them
    assert client.cmd("e STATUS INBOX (RECENT)") == (
        b"* STATUS INBOX (RECENT 2)\r\ne OK STATUS completed\r\n"
    )
    client.cmd("f CLOSE")
    assert client.cmd("g STATUS INBOX (RECENT)") == (
        b"* STATUS INBOX (RECENT 0)\r\ng OK STATUS completed\r\n"
    )
    server.deliver(ALICE, PLAIN)
    assert client.cmd("h STATUS INBOX (RECENT)") == (
        b"* STATUS INBOX (RECENT 1)\r\nh OK STATUS completed\r\n"
    )
