"""Byte-level transcripts per command (RFC 9051 §6 and the extensions in docs/imap.md)."""

from __future__ import annotations

import re

import pytest
from imap_harness import ALICE, BOB, ServerThread, Transcript

MSG1 = (
    b"From: Dr House <house@hop.mssante.fr>\r\nTo: alice@hop.mssante.fr\r\n"
    b"Subject: compte rendu\r\nDate: Tue, 3 Mar 2026 08:00:00 +0100\r\nMessage-ID: <m1@hop>\r\n"
    b"\r\nBonjour,\r\nvoici le CR.\r\n"
)
MSG2 = b"From: b@x.fr\r\nSubject: second\r\n\r\nhello\r\n"


def fill(server: ServerThread, n: int = 2) -> None:
    for i in range(n):
        server.deliver(ALICE, MSG1 if i % 2 == 0 else MSG2)


def test_select_and_examine(client: Transcript, server: ServerThread) -> None:
    fill(server, 2)
    out = client.cmd("a SELECT INBOX")
    assert out == (
        b"* FLAGS (\\Answered \\Deleted \\Draft \\Flagged \\Seen)\r\n"
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags\r\n"
        b"* 2 EXISTS\r\n* 2 RECENT\r\n* OK [UNSEEN 1] First unseen\r\n"
        + re.search(rb"\* OK \[UIDVALIDITY \d+\] UIDs valid\r\n", out).group(0)  # type: ignore[union-attr]
        + b"* OK [UIDNEXT 3] Predicted next UID\r\na OK [READ-WRITE] SELECT completed\r\n"
    )
    out = client.cmd("b EXAMINE inbox")
    assert b"[PERMANENTFLAGS ()]" in out and out.endswith(b"b OK [READ-ONLY] EXAMINE completed\r\n")
    assert client.cmd("c STORE 1 +FLAGS (\\Seen)") == b"c NO [READ-ONLY] Mailbox is read-only\r\n"
    assert client.cmd("d SELECT Nope") == b"d NO [NONEXISTENT] Mailbox does not exist\r\n"
    assert client.cmd("e FETCH 1 FLAGS") == b"e BAD FETCH needs a selected mailbox\r\n"


def test_fetch_items(client: Transcript, server: ServerThread) -> None:
    fill(server, 1)
    client.cmd("s SELECT INBOX")
    out = client.cmd("a FETCH 1 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (Subject)])")
    assert out == (
        b"* 1 FETCH (UID 1 RFC822.SIZE %d FLAGS (\\Recent) BODY[HEADER.FIELDS (Subject)] {25}\r\n"
        b"Subject: compte rendu\r\n\r\n)\r\na OK FETCH completed\r\n" % len(MSG1)
    )
    out = client.cmd("b FETCH 1 (BODY[TEXT]<0.7>)")
    assert (
        out == b"* 1 FETCH (BODY[TEXT]<0> {7}\r\nBonjour FLAGS (\\Recent \\Seen))\r\n"
        b"b OK FETCH completed\r\n"
    )
    out = client.cmd("c FETCH 1 ENVELOPE")
    assert out == (
        b'* 1 FETCH (ENVELOPE ("Tue, 3 Mar 2026 08:00:00 +0100" "compte rendu" '
        b'(("Dr House" NIL "house" "hop.mssante.fr")) (("Dr House" NIL "house" "hop.mssante.fr")) '
        b'(("Dr House" NIL "house" "hop.mssante.fr")) ((NIL NIL "alice" "hop.mssante.fr")) NIL NIL '
        b'NIL "<m1@hop>"))\r\nc OK FETCH completed\r\n'
    )
    out = client.cmd("d FETCH 1 (RFC822)")
    assert out == b"* 1 FETCH (RFC822 {%d}\r\n%s)\r\nd OK FETCH completed\r\n" % (len(MSG1), MSG1)
    out = client.cmd("e UID FETCH 1:* (INTERNALDATE)")
    assert re.fullmatch(
        rb"\* 1 FETCH \(UID 1 INTERNALDATE "
        rb'"\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"\)\r\n'
        rb"e OK UID FETCH completed\r\n",
        out,
    )
    assert client.cmd("f FETCH 5 FLAGS") == b"f BAD Invalid sequence number\r\n"
    assert client.cmd("g UID FETCH 5 FLAGS") == b"g OK UID FETCH completed\r\n"


def test_store_variants_and_silent(client: Transcript, server: ServerThread) -> None:
    fill(server, 2)
    client.cmd("s SELECT INBOX")
    assert client.cmd("a STORE 1:2 +FLAGS (\\Flagged $Urgent)") == (
        b"* 1 FETCH (FLAGS (\\Recent \\Flagged $Urgent))\r\n"
        b"* 2 FETCH (FLAGS (\\Recent \\Flagged $Urgent))\r\n"
        b"a OK STORE completed\r\n"
    )
    assert client.cmd("b STORE 1 -FLAGS.SILENT ($Urgent)") == b"b OK STORE completed\r\n"
    assert client.cmd("c UID STORE 2 FLAGS (\\Seen)") == (
        b"* 2 FETCH (UID 2 FLAGS (\\Recent \\Seen))\r\nc OK UID STORE completed\r\n"
    )
    assert client.cmd("d FETCH 1:* FLAGS") == (
        b"* 1 FETCH (FLAGS (\\Recent \\Flagged))\r\n* 2 FETCH (FLAGS (\\Recent \\Seen))\r\n"
        b"d OK FETCH completed\r\n"
    )
    assert client.cmd("e STORE 1 +FLAGS (\\Recent)") == b"e BAD Invalid flag \\Recent\r\n"


def test_condstore_unchangedsince_and_changedsince(
    client: Transcript, server: ServerThread
) -> None:
    fill(server, 2)
    out = client.cmd("s SELECT INBOX (CONDSTORE)")
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", out).group(1))  # type: ignore[union-attr]
    out = client.cmd(f"a STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Seen)")
    new = int(re.search(rb"MODSEQ \((\d+)\)", out).group(1))  # type: ignore[union-attr]
    assert new > modseq
    out = client.cmd(f"b STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Answered)")
    assert out == b"b OK [MODIFIED 1] Conditional STORE failed\r\n"
    out = client.cmd(f"c FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq})")
    assert (
        out == b"* 1 FETCH (FLAGS (\\Recent \\Seen) MODSEQ (%d))\r\nc OK FETCH completed\r\n" % new
    )
    out = client.cmd(f"d SEARCH MODSEQ {new}")
    assert out == b"* SEARCH 1 (MODSEQ %d)\r\nd OK SEARCH completed\r\n" % new


def test_search_and_esearch_and_searchres(client: Transcript, server: ServerThread) -> None:
    fill(server, 4)
    client.cmd("s SELECT INBOX")
    client.cmd("x STORE 2 +FLAGS (\\Seen)")
    assert client.cmd("a SEARCH UNSEEN") == b"* SEARCH 1 3 4\r\na OK SEARCH completed\r\n"
    assert (
        client.cmd('b SEARCH SUBJECT "COMPTE" NOT SEEN')
        == b"* SEARCH 1 3\r\nb OK SEARCH completed\r\n"
    )
    assert client.cmd("c UID SEARCH RETURN (MIN MAX COUNT ALL) OR SEEN SUBJECT second") == (
        b'* ESEARCH (TAG "c") UID MIN 2 MAX 4 ALL 2,4 COUNT 2\r\nc OK UID SEARCH completed\r\n'
    )
    assert client.cmd("d SEARCH RETURN (SAVE) BODY voici") == b"d OK SEARCH completed\r\n"
    assert client.cmd("e FETCH $ (UID)") == (
        b"* 1 FETCH (UID 1)\r\n* 3 FETCH (UID 3)\r\ne OK FETCH completed\r\n"
    )
    assert client.cmd("f SEARCH 2:3 LARGER 1") == b"* SEARCH 2 3\r\nf OK SEARCH completed\r\n"
    assert client.cmd("g SEARCH RETURN (COUNT) DELETED") == (
        b'* ESEARCH (TAG "g") COUNT 0\r\ng OK SEARCH completed\r\n'
    )


def test_copy_move_expunge_with_uidplus(client: Transcript, server: ServerThread) -> None:
    fill(server, 3)
    out = client.cmd("s SELECT Trash")
    trash_validity = int(re.search(rb"UIDVALIDITY (\d+)", out).group(1))  # type: ignore[union-attr]
    client.cmd("s SELECT INBOX")
    assert client.cmd("a COPY 1:2 Trash") == (
        b"a OK [COPYUID %d 1:2 1:2] COPY completed\r\n" % trash_validity
    )
    assert client.cmd("b UID MOVE 2 Trash") == (
        b"* OK [COPYUID %d 2 3] Moved\r\n* 2 EXPUNGE\r\nb OK UID MOVE completed\r\n"
        % trash_validity
    )
    assert client.cmd("c COPY 1 Nowhere") == b"c NO [TRYCREATE] Mailbox does not exist\r\n"
    client.cmd("d STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    assert client.cmd("e EXPUNGE") == b"* 2 EXPUNGE\r\n* 1 EXPUNGE\r\ne OK EXPUNGE completed\r\n"
    assert client.cmd("f NOOP") == b"f OK NOOP completed\r\n"


def test_uid_expunge_only_named_uids(client: Transcript, server: ServerThread) -> None:
    fill(server, 3)
    client.cmd("s SELECT INBOX")
    client.cmd("a STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    assert client.cmd("b UID EXPUNGE 2") == b"* 2 EXPUNGE\r\nb OK UID EXPUNGE completed\r\n"
    assert client.cmd("c CLOSE") == b"c OK CLOSE completed\r\n"
    out = client.cmd("d STATUS INBOX (MESSAGES)")
    assert out == b"* STATUS INBOX (MESSAGES 0)\r\nd OK STATUS completed\r\n"


def test_unselect_does_not_expunge(client: Transcript, server: ServerThread) -> None:
    fill(server, 1)
    client.cmd("s SELECT INBOX")
    client.cmd("a STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert client.cmd("b UNSELECT") == b"b OK UNSELECT completed\r\n"
    assert client.cmd("c STATUS INBOX (MESSAGES DELETED)") == (
        b"* STATUS INBOX (MESSAGES 1 DELETED 1)\r\nc OK STATUS completed\r\n"
    )


def test_append_and_multiappend(client: Transcript) -> None:
    client.send(b'a APPEND Drafts (\\Draft) "05-Mar-2026 09:08:07 +0100" {%d}\r\n' % len(MSG2))
    assert client.readline() == b"+ Ready for literal data\r\n"
    client.send(MSG2 + b"\r\n")
    out = client.until_tagged("a")
    assert re.fullmatch(rb"a OK \[APPENDUID \d+ 1\] APPEND completed\r\n", out)
    client.send(b"b APPEND Drafts {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(MSG1), MSG1, len(MSG2), MSG2))
    assert re.fullmatch(
        rb"b OK \[APPENDUID \d+ 2:3\] APPEND completed\r\n", client.until_tagged("b")
    )
    client.cmd("s SELECT Drafts")
    assert client.cmd("c FETCH 1 (FLAGS INTERNALDATE)") == (
        # the instant and the zone APPEND gave are kept
        b'* 1 FETCH (FLAGS (\\Recent \\Draft) INTERNALDATE "05-Mar-2026 09:08:07 +0100")\r\n'
        b"c OK FETCH completed\r\n"
    )
    assert client.cmd("d FETCH 2 BODY.PEEK[]") == (
        b"* 2 FETCH (BODY[] {%d}\r\n%s)\r\nd OK FETCH completed\r\n" % (len(MSG1), MSG1)
    )
    client.send(b"e APPEND Nope {1+}\r\nx\r\n")
    assert client.until_tagged("e") == b"e NO [TRYCREATE] Mailbox does not exist\r\n"


def test_append_big_literal_streams_to_blob(client: Transcript, server: ServerThread) -> None:
    body = b"Subject: big\r\n\r\n" + (b"0123456789" * 100 + b"\r\n") * 200  # > inline limit
    client.send(b"a APPEND INBOX {%d}\r\n" % len(body))
    assert client.readline() == b"+ Ready for literal data\r\n"
    client.send(body + b"\r\n")
    assert b"a OK [APPENDUID" in client.until_tagged("a")
    client.cmd("s SELECT INBOX")
    out = client.cmd("b FETCH 1 (RFC822.SIZE BODY.PEEK[])")
    assert out == b"* 1 FETCH (RFC822.SIZE %d BODY[] {%d}\r\n%s)\r\nb OK FETCH completed\r\n" % (
        len(body),
        len(body),
        body,
    )
    # streamed from blob storage in chunks, with partial ranges and the implicit \Seen
    out = client.cmd("c FETCH 1 (UID BODY[]<100000.70000>)")
    assert (
        out
        == b"* 1 FETCH (UID 1 BODY[]<100000> {70000}\r\n%s FLAGS (\\Recent \\Seen))\r\n"
        % (body[100000:170000])
        + b"c OK FETCH completed\r\n"
    )


def test_create_rename_delete_subscribe_list(client: Transcript) -> None:
    assert client.cmd("a CREATE Dossiers/2026/") == b"a OK CREATE completed\r\n"
    assert (
        client.cmd("b CREATE Dossiers/2026") == b"b NO [ALREADYEXISTS] Mailbox already exists\r\n"
    )
    assert client.cmd("c CREATE INBOX") == b"c NO [ALREADYEXISTS] INBOX always exists\r\n"
    assert client.cmd('d CREATE "R&AOk-sultats"') == b"d OK CREATE completed\r\n"
    assert client.cmd('e LIST "" "Dossiers/%"') == (
        b'* LIST (\\HasNoChildren) "/" Dossiers/2026\r\ne OK LIST completed\r\n'
    )
    assert (
        client.cmd('f LIST "" R*')
        == b'* LIST (\\HasNoChildren) "/" R&AOk-sultats\r\nf OK LIST completed\r\n'
    )
    assert client.cmd("g RENAME Dossiers/2026 Dossiers/2025") == b"g OK RENAME completed\r\n"
    assert client.cmd("h UNSUBSCRIBE Dossiers/2025") == b"h OK UNSUBSCRIBE completed\r\n"
    assert client.cmd('i LSUB "" Dossiers/*') == b"i OK LSUB completed\r\n"
    assert client.cmd("j SUBSCRIBE Dossiers/2025") == b"j OK SUBSCRIBE completed\r\n"
    assert (
        client.cmd('k LSUB "" Dossiers/*')
        == b'* LSUB () "/" Dossiers/2025\r\nk OK LSUB completed\r\n'
    )
    assert client.cmd('l LIST (SUBSCRIBED) "" "Dossiers/*"') == (
        b'* LIST (\\HasNoChildren \\Subscribed) "/" Dossiers/2025\r\nl OK LIST completed\r\n'
    )
    assert client.cmd("m DELETE Dossiers/2025") == b"m OK DELETE completed\r\n"
    assert client.cmd("n DELETE INBOX") == b"n NO [CANNOT] INBOX cannot be deleted\r\n"
    assert client.cmd('o LIST "" ""') == b'* LIST (\\Noselect) "/" ""\r\no OK LIST completed\r\n'
    assert client.cmd('p LIST (SPECIAL-USE) "" *') == (
        b'* LIST (\\HasNoChildren \\Drafts) "/" Drafts\r\n'
        b'* LIST (\\HasNoChildren \\Drafts) "/" Partag&AOk-/secretariat@hop.mssante.fr/Drafts\r\n'
        b'* LIST (\\HasNoChildren \\Sent) "/" Partag&AOk-/secretariat@hop.mssante.fr/Sent\r\n'
        b'* LIST (\\HasNoChildren \\Trash) "/" Partag&AOk-/secretariat@hop.mssante.fr/Trash\r\n'
        b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n'
        b'* LIST (\\HasNoChildren \\Trash) "/" Trash\r\np OK LIST completed\r\n'
    )
    assert client.cmd('q LIST "" INBOX RETURN (STATUS (MESSAGES UIDNEXT))') == (
        b'* LIST (\\HasNoChildren) "/" INBOX\r\n* STATUS INBOX (MESSAGES 0 UIDNEXT 1)\r\n'
        b"q OK LIST completed\r\n"
    )
    assert client.cmd("r CREATE (USE (\\Archive)) Archives") == (
        b"r BAD expected an astring before '(USE (\\\\Archive)) Arc'\r\n"
    )
    assert client.cmd("s CREATE Archives (USE (\\Archive))") == b"s OK CREATE completed\r\n"


def test_utf8_names_after_enable(client: Transcript) -> None:
    client.cmd("e ENABLE UTF8=ACCEPT")
    assert client.cmd('a CREATE "Comptes rendus/Hémato"') == b"a OK CREATE completed\r\n"
    assert client.cmd('b LIST "" "Comptes rendus/*"') == (
        b'* LIST (\\HasNoChildren) "/" "Comptes rendus/H\xc3\xa9mato"\r\nb OK LIST completed\r\n'
    )


def test_status_items(client: Transcript, server: ServerThread) -> None:
    fill(server, 2)
    out = client.cmd("a STATUS INBOX (MESSAGES RECENT UIDNEXT UNSEEN DELETED SIZE)")
    assert (
        out
        == b"* STATUS INBOX (MESSAGES 2 RECENT 2 UIDNEXT 3 UNSEEN 2 DELETED 0 SIZE %d)\r\n"
        % (len(MSG1) + len(MSG2))
        + b"a OK STATUS completed\r\n"
    )


def test_quota_and_acl(client: Transcript, server: ServerThread) -> None:
    shared = '"Partag&AOk-/secretariat@hop.mssante.fr/INBOX"'
    assert (
        client.cmd("a GETQUOTAROOT INBOX")
        == b"* QUOTAROOT INBOX\r\na OK GETQUOTAROOT completed\r\n"
    )
    assert (
        client.cmd("b SETQUOTA x (STORAGE 10)")
        == b"b NO [NOPERM] Quotas are set by the operator\r\n"
    )
    assert client.cmd(f"c MYRIGHTS {shared}") == (
        b"* MYRIGHTS Partag&AOk-/secretariat@hop.mssante.fr/INBOX lrswipkxtea\r\n"
        b"c OK MYRIGHTS completed\r\n"
    )
    assert client.cmd(f'd SETACL {shared} "{BOB}" lr') == b"d OK SETACL completed\r\n"
    out = client.cmd(f"e GETACL {shared}")
    assert b" bob@hop.mssante.fr lr" in out and b"alice@hop.mssante.fr lrswipkxtea" in out
    assert client.cmd(f'f SETACL {shared} "{BOB}" +i') == b"f OK SETACL completed\r\n"
    assert client.cmd(f'g LISTRIGHTS {shared} "{BOB}"') == (
        b"* LISTRIGHTS Partag&AOk-/secretariat@hop.mssante.fr/INBOX bob@hop.mssante.fr "
        b'"" l r s w i p k x t e a\r\n'
        b"g OK LISTRIGHTS completed\r\n"
    )
    assert client.cmd(f'h DELETEACL {shared} "{BOB}"') == b"h OK DELETEACL completed\r\n"
    assert b"bob@" not in client.cmd(f"i GETACL {shared}")


def test_rev2_select_and_esearch_by_default(client: Transcript, server: ServerThread) -> None:
    fill(server, 1)
    client.cmd("e ENABLE IMAP4rev2")
    out = client.cmd("a SELECT INBOX")
    assert b"RECENT" not in out and b'* LIST () "/" INBOX\r\n' in out
    assert client.cmd("b SEARCH ALL") == b'* ESEARCH (TAG "b") ALL 1\r\nb OK SEARCH completed\r\n'


@pytest.mark.parametrize("qresync", [True])
def test_qresync_select_reports_changes(
    client: Transcript, server: ServerThread, qresync: bool
) -> None:
    fill(server, 3)
    client.cmd("e ENABLE QRESYNC")
    out = client.cmd("a SELECT INBOX")
    validity = int(re.search(rb"UIDVALIDITY (\d+)", out).group(1))  # type: ignore[union-attr]
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", out).group(1))  # type: ignore[union-attr]
    client.cmd("b STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert client.cmd("c EXPUNGE") == b"* VANISHED 1\r\nc OK EXPUNGE completed\r\n"
    client.cmd("d UID STORE 3 +FLAGS.SILENT (\\Seen)")
    client.cmd("u UNSELECT")
    out = client.cmd(f"f SELECT INBOX (QRESYNC ({validity} {modseq} 1:3))")
    assert b"* VANISHED (EARLIER) 1\r\n" in out
    assert re.search(rb"\* 2 FETCH \(UID 3 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)\r\n", out)
    out = client.cmd(f"g UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert out.startswith(b"* VANISHED (EARLIER) 1\r\n")
    assert re.search(rb"\* 2 FETCH \(UID 3 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)\r\n", out)
