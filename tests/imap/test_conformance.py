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
