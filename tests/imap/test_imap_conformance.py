"""Byte-level regressions for conformance gaps found by running a third-party scripted IMAP
compliance suite against the server (docs/imap.md, "Conformance"). Each test is ours: it
states the RFC rule and checks the exact bytes."""

from __future__ import annotations

from pathlib import Path

from imap_harness import ALICE, Pki, ServerThread, Transcript

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


def _connected(server: ServerThread, pki: Pki) -> Transcript:
    """Connected over implicit TLS and logged in as alice."""
    t = Transcript.connect(server.tls_port, pki)
    t.readline()
    t.login()
    return t


def _append(t: Transcript, tag: str, date: str, body: bytes = PLAIN) -> bytes:
    t.send(f'{tag} APPEND INBOX "{date}" {{{len(body)}}}\r\n'.encode())
    assert t.readline().startswith(b"+ ")
    t.send(body + b"\r\n")
    return t.until_tagged(tag)


def test_internaldate_keeps_the_appended_zone_and_search_uses_its_date(
    tmp_path: Path, pki: Pki, engine_dsn: str | None
) -> None:
    # RFC 9051 §2.3.3 / §6.4.4: INTERNALDATE comes back in the zone APPEND gave, across a
    # restart and a COPY; BEFORE/ON/SINCE compare the date in that zone (23:30 -0500 on
    # the 1st is the 2nd in UTC, but ON 1-Mar matches it). Delivered mail is +0000.
    server = ServerThread(tmp_path, pki, pg_dsn=engine_dsn).start()
    try:
        t = _connected(server, pki)
        _append(t, "a", "01-Mar-2026 23:30:00 -0500")
        _append(t, "b", "02-Mar-2026 00:15:00 +0130")
        server.deliver(ALICE, PLAIN)
        t.cmd("s SELECT INBOX")
        out = t.cmd("c FETCH 1:2 INTERNALDATE")
        assert out == (
            b'* 1 FETCH (INTERNALDATE "01-Mar-2026 23:30:00 -0500")\r\n'
            b'* 2 FETCH (INTERNALDATE "02-Mar-2026 00:15:00 +0130")\r\n'
            b"c OK FETCH completed\r\n"
        )
        assert t.cmd("d FETCH 3 INTERNALDATE").split(b'"')[1].endswith(b" +0000")
        assert t.cmd("e SEARCH ON 1-Mar-2026") == b"* SEARCH 1\r\ne OK SEARCH completed\r\n"
        assert t.cmd("f SEARCH 1:2 SINCE 2-Mar-2026") == (
            b"* SEARCH 2\r\nf OK SEARCH completed\r\n"
        )
        assert t.cmd("g SEARCH 1:2 BEFORE 2-Mar-2026") == (
            b"* SEARCH 1\r\ng OK SEARCH completed\r\n"
        )
        t.cmd("h CREATE Kept")
        t.cmd("i COPY 1 Kept")
        t.close()
    finally:
        server.stop()
    again = server.restart()
    try:
        t = _connected(again, pki)
        t.cmd("s EXAMINE Kept")
        assert t.cmd("a FETCH 1 INTERNALDATE") == (
            b'* 1 FETCH (INTERNALDATE "01-Mar-2026 23:30:00 -0500")\r\na OK FETCH completed\r\n'
        )
        t.close()
    finally:
        again.stop()


def test_fetch_modseq_enables_condstore_and_esearch_modseq_follows_min_max(
    client: Transcript, server: ServerThread
) -> None:
    # RFC 7162 §3.1: FETCH MODSEQ is a CONDSTORE-enabling command; the first one in the
    # selected state reports HIGHESTMODSEQ, and later STOREs carry MODSEQ. §3.1.5 with
    # RFC 4731: ESEARCH MODSEQ is the highest of the messages returned (only MIN/MAX ones).
    for _ in range(3):
        server.deliver(ALICE, PLAIN)
    client.cmd("s SELECT INBOX")
    out = client.cmd("a FETCH 1 MODSEQ")
    top = int(out.split(b"[HIGHESTMODSEQ ")[1].split(b"]")[0])
    assert out == (
        b"* OK [HIGHESTMODSEQ %d] Highest\r\n* 1 FETCH (MODSEQ (%d))\r\na OK FETCH completed\r\n"
        % (top, top - 2)
    )
    # a second enabling command does not repeat it
    assert b"HIGHESTMODSEQ" not in client.cmd("b FETCH 2 MODSEQ")
    out = client.cmd("c STORE 3 +FLAGS (\\Seen)")
    assert out == b"* 3 FETCH (FLAGS (\\Recent \\Seen) MODSEQ (%d))\r\nc OK STORE completed\r\n" % (
        top + 1
    )
    out = client.cmd("d STORE 1 +FLAGS (\\Seen)")
    assert out == b"* 1 FETCH (FLAGS (\\Recent \\Seen) MODSEQ (%d))\r\nd OK STORE completed\r\n" % (
        top + 2
    )
    # message 3 (top+1) is the MAX, message 1 (top+2) the MIN
    assert client.cmd("e SEARCH RETURN (MAX) SEEN MODSEQ 1") == (
        b'* ESEARCH (TAG "e") MAX 3 MODSEQ %d\r\ne OK SEARCH completed\r\n' % (top + 1)
    )
    assert client.cmd("f SEARCH RETURN (MIN) SEEN MODSEQ 1") == (
        b'* ESEARCH (TAG "f") MIN 1 MODSEQ %d\r\nf OK SEARCH completed\r\n' % (top + 2)
    )
    assert client.cmd("g SEARCH RETURN (ALL) SEEN MODSEQ 1") == (
        b'* ESEARCH (TAG "g") ALL 1,3 MODSEQ %d\r\ng OK SEARCH completed\r\n' % (top + 2)
    )


def test_fetch_flags_carries_modseq_once_condstore_is_enabled(
    client: Transcript, server: ServerThread
) -> None:
    # RFC 7162 §3.1: after ENABLE CONDSTORE, FETCH responses with FLAGS carry MODSEQ (Dovecot
    # does; IMAPClient's live tests expect it); before it, they do not.
    server.deliver(ALICE, PLAIN)
    client.cmd("s SELECT INBOX")
    assert client.cmd("a FETCH 1 (FLAGS)") == (
        b"* 1 FETCH (FLAGS (\\Recent))\r\na OK FETCH completed\r\n"
    )
    assert client.cmd("u UNSELECT").endswith(b"u OK UNSELECT completed\r\n")
    assert b"* ENABLED CONDSTORE" in client.cmd("e ENABLE CONDSTORE")
    out = client.cmd("t SELECT INBOX")
    top = int(out.split(b"[HIGHESTMODSEQ ")[1].split(b"]")[0])
    assert client.cmd("b FETCH 1 (FLAGS UID)") == (
        b"* 1 FETCH (FLAGS () UID 1 MODSEQ (%d))\r\nb OK FETCH completed\r\n" % top
    )
    # without FLAGS, nothing is added
    assert client.cmd("c FETCH 1 (UID)") == b"* 1 FETCH (UID 1)\r\nc OK FETCH completed\r\n"


def test_envelope_takes_a_trailing_comment_as_name_and_keeps_the_route(
    client: Transcript, server: ServerThread
) -> None:
    # RFC 5322 §3.4 allows "addr (Name)"; with no phrase the comment is the only display
    # name there is. An obsolete route "<@relay:user@host>" is the ENVELOPE's adl field.
    server.deliver(
        ALICE,
        b"From: doc@cab.fr (Dr Leroy)\r\nTo: <@relay.fr:sec@cab.fr>\r\n"
        b"Cc: x@y.fr (first) (second)\r\n\r\nhi\r\n",
    )
    client.cmd("s SELECT INBOX")
    out = client.cmd("a FETCH 1 ENVELOPE")
    assert out == (
        b'* 1 FETCH (ENVELOPE (NIL NIL (("Dr Leroy" NIL "doc" "cab.fr")) '
        b'(("Dr Leroy" NIL "doc" "cab.fr")) (("Dr Leroy" NIL "doc" "cab.fr")) '
        b'((NIL "@relay.fr" "sec" "cab.fr")) (("second" NIL "x" "y.fr")) NIL NIL NIL))\r\n'
        b"a OK FETCH completed\r\n"
    )


def test_search_address_ignores_comments_inside_the_address(
    client: Transcript, server: ServerThread
) -> None:
    # RFC 9051 §6.4.4 FROM/TO: a substring of the address; comments inside an addr-spec are
    # not part of it, so "sec@cab.fr" finds "<sec (desk)@ (main) cab.fr>"
    server.deliver(ALICE, b"From: <sec (desk)@ (main) cab.fr>\r\n\r\nhi\r\n")
    server.deliver(ALICE, b"From: other@cab.fr\r\n\r\nhi\r\n")
    client.cmd("s SELECT INBOX")
    assert client.cmd("a SEARCH FROM sec@cab.fr") == b"* SEARCH 1\r\na OK SEARCH completed\r\n"
    assert client.cmd("b SEARCH FROM desk") == b"* SEARCH 1\r\nb OK SEARCH completed\r\n"
    assert client.cmd("c SEARCH FROM @cab.fr") == b"* SEARCH 1 2\r\nc OK SEARCH completed\r\n"


MIXED = (
    b"From: a@b.fr\r\nMime-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
    b"--zz\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"aGVsbG8=\r\n--zz--\r\n"
)


def test_binary_whole_message_and_section_texts(client: Transcript, server: ServerThread) -> None:
    # RFC 3516: BINARY[] is the whole message (as BODY[]); BINARY[1] decodes the part. A
    # section text after BINARY (HEADER, TEXT, MIME) is served as BODY would, undecoded.
    server.deliver(ALICE, MIXED)
    client.cmd("s SELECT INBOX")
    assert client.cmd("a FETCH 1 (BINARY.SIZE[] BINARY.PEEK[1])") == (
        b"* 1 FETCH (BINARY.SIZE[] %d BINARY[1] {5}\r\nhello)\r\na OK FETCH completed\r\n"
        % len(MIXED)
    )
    out = client.cmd("b FETCH 1 BINARY.PEEK[]")
    assert out == b"* 1 FETCH (BINARY[] {%d}\r\n%s)\r\nb OK FETCH completed\r\n" % (
        len(MIXED),
        MIXED,
    )
    mime = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    assert client.cmd("c FETCH 1 (BINARY.SIZE[1.MIME] BINARY.PEEK[1.MIME])") == (
        b"* 1 FETCH (BINARY.SIZE[1.MIME] %d BINARY[1.MIME] {%d}\r\n%s)\r\nc OK FETCH completed\r\n"
        % (len(mime), len(mime), mime)
    )
    assert client.cmd("d FETCH 1 BINARY.PEEK[HEADER.FIELDS (FROM)]") == (
        b"* 1 FETCH (BINARY[HEADER.FIELDS (FROM)] {16}\r\nFrom: a@b.fr\r\n\r\n)\r\n"
        b"d OK FETCH completed\r\n"
    )


def test_a_new_message_is_recent_in_one_selected_session_only(
    server: ServerThread, pki: Pki
) -> None:
    # RFC 3501 §2.3.2: \Recent belongs to the first session told of the message. Two
    # sessions have INBOX selected when it arrives; a third asks STATUS.
    first, second, third = (_connected(server, pki) for _ in range(3))
    first.cmd("s SELECT INBOX")
    second.cmd("s SELECT INBOX")
    server.deliver(ALICE, PLAIN)
    assert first.cmd("a NOOP") == b"* 1 EXISTS\r\n* 1 RECENT\r\na OK NOOP completed\r\n"
    assert second.cmd("a NOOP") == b"* 1 EXISTS\r\n* 0 RECENT\r\na OK NOOP completed\r\n"
    assert second.cmd("b FETCH 1 FLAGS") == b"* 1 FETCH (FLAGS ())\r\nb OK FETCH completed\r\n"
    assert third.cmd("a STATUS INBOX (RECENT)") == (
        b"* STATUS INBOX (RECENT 0)\r\na OK STATUS completed\r\n"
    )
    for t in (first, second, third):
        t.close()


def test_list_extended_options_and_subscription_tree(client: Transcript) -> None:
    # RFC 5258 §3: unknown options are BAD, RECURSIVEMATCH alone is BAD; CREATE does not
    # subscribe; LSUB "%" shows an unsubscribed parent of a subscribed name as \Noselect
    # (RFC 3501 §6.3.9); LIST (SUBSCRIBED RECURSIVEMATCH) gives such a parent CHILDINFO.
    assert client.cmd('a LIST (FROBNICATE) "" ""').startswith(b"a BAD ")
    assert client.cmd('b LIST (RECURSIVEMATCH) "" "*"').startswith(b"b BAD ")
    assert client.cmd('c LIST "" "*" RETURN (FROBNICATE)').startswith(b"c BAD ")
    for name in ("Dossiers", "Dossiers/Patient", "Dossiers/Patient/2026"):
        client.cmd(f"d CREATE {name}")
    assert client.cmd('e LSUB "" Dossiers*') == b"e OK LSUB completed\r\n"
    client.cmd("f SUBSCRIBE Dossiers/Patient/2026")
    assert client.cmd('g LSUB "" Dossiers/%') == (
        b'* LSUB (\\Noselect) "/" Dossiers/Patient\r\ng OK LSUB completed\r\n'
    )
    assert client.cmd('h LSUB "" Dossiers/*') == (
        b'* LSUB () "/" Dossiers/Patient/2026\r\nh OK LSUB completed\r\n'
    )
    assert client.cmd('i LIST (SUBSCRIBED RECURSIVEMATCH) "" Dossiers/%') == (
        b'* LIST (\\HasChildren) "/" Dossiers/Patient ("CHILDINFO" ("SUBSCRIBED"))\r\n'
        b"i OK LIST completed\r\n"
    )


def test_move_into_the_selected_folder_renumbers_the_message(
    client: Transcript, server: ServerThread
) -> None:
    # RFC 6851 does not forbid MOVE to the selected mailbox: the message gets a new UID
    # (COPYUID first), the old one is expunged, and the new one arrives.
    server.deliver(ALICE, PLAIN)
    server.deliver(ALICE, PLAIN)
    sel = client.cmd("s SELECT INBOX")
    validity = sel.split(b"[UIDVALIDITY ")[1].split(b"]")[0]
    assert client.cmd("a MOVE 1 INBOX") == (
        b"* OK [COPYUID " + validity + b" 1 3] Moved\r\n* 1 EXPUNGE\r\n"
        b"* 2 EXISTS\r\n* 2 RECENT\r\na OK MOVE completed\r\n"
    )
    assert client.cmd("b FETCH 1:* UID") == (
        b"* 1 FETCH (UID 2)\r\n* 2 FETCH (UID 3)\r\nb OK FETCH completed\r\n"
    )


def test_a_subscription_outlives_its_folder(
    tmp_path: Path, pki: Pki, engine_dsn: str | None
) -> None:
    # RFC 3501 §6.3.6: DELETE does not unsubscribe. RFC 5258 §3.4: LIST (SUBSCRIBED) shows
    # the name \NonExistent; a folder created again under it is subscribed; UNSUBSCRIBE of
    # the orphan name drops it.
    server = ServerThread(tmp_path, pki, pg_dsn=engine_dsn).start()
    try:
        t = _connected(server, pki)
        t.cmd("a CREATE Archives")
        t.cmd("b SUBSCRIBE Archives")
        t.cmd("c DELETE Archives")
        assert t.cmd('d LIST (SUBSCRIBED) "" Arch*') == (
            b'* LIST (\\NonExistent \\Subscribed) "/" Archives\r\nd OK LIST completed\r\n'
        )
        assert t.cmd('e LSUB "" Arch*') == (
            b'* LSUB (\\Noselect) "/" Archives\r\ne OK LSUB completed\r\n'
        )
        assert t.cmd('f LIST "" Arch*') == b"f OK LIST completed\r\n"
        t.cmd("g CREATE Archives")
        assert t.cmd('h LSUB "" Arch*') == b'* LSUB () "/" Archives\r\nh OK LSUB completed\r\n'
        t.cmd("i DELETE Archives")
        assert t.cmd("j UNSUBSCRIBE Archives") == b"j OK UNSUBSCRIBE completed\r\n"
        assert t.cmd('k LSUB "" Arch*') == b"k OK LSUB completed\r\n"
        t.cmd("l CREATE Archives")
        assert t.cmd('m LSUB "" Arch*') == b"m OK LSUB completed\r\n"
        t.close()
    finally:
        server.stop()


def test_an_appended_message_is_recent_in_the_appending_session_only(
    server: ServerThread, pki: Pki
) -> None:
    # RFC 3501 §2.3.2 again, when the first session told of the message is the one that
    # appended it into its selected folder
    writer, reader = _connected(server, pki), _connected(server, pki)
    writer.cmd("s SELECT INBOX")
    reader.cmd("s SELECT INBOX")
    out = _append(writer, "a", "01-Mar-2026 10:00:00 +0000")
    assert out.startswith(b"* 1 EXISTS\r\n* 1 RECENT\r\na OK [APPENDUID ")
    assert reader.cmd("b NOOP") == b"* 1 EXISTS\r\n* 0 RECENT\r\nb OK NOOP completed\r\n"
    assert reader.cmd("c STATUS INBOX (RECENT)") == (
        b"* STATUS INBOX (RECENT 0)\r\nc OK STATUS completed\r\n"
    )
    writer.close()
    reader.close()
