"""SORT (RFC 5256), SORT=DISPLAY (RFC 5957) and ESORT (RFC 5267): byte-level transcripts and
the base-subject rules (RFC 5256 §2.1) as a pure function."""

from __future__ import annotations

import pytest
from imap_harness import ALICE, ServerThread, Transcript

from caducee.imap.cmd_sort import base_subject


@pytest.mark.parametrize(
    ("raw", "base"),
    [
        ("Compte rendu", "Compte rendu"),
        ("Re: Compte rendu", "Compte rendu"),
        ("RE:  re: Fwd:Compte   rendu", "Compte rendu"),
        ("Compte rendu (fwd)", "Compte rendu"),
        ("[HOP] Re: [urgent] Fw: Compte rendu (FWD) ", "Compte rendu"),
        ("[Fwd: Re: Compte rendu]", "Compte rendu"),
        ("[HOP]", "[HOP]"),  # a blob that is the whole subject stays
        ("Re: [HOP]", "[HOP]"),
        ("Résultats (labo)", "Résultats (labo)"),
        ("", ""),
    ],
)
def test_base_subject(raw: str, base: str) -> None:
    assert base_subject(raw) == base


def _msg(frm: str, to: str, subject: str, date: str, pad: int) -> bytes:
    return (
        f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n\r\n".encode()
        + b"x" * pad
        + b"\r\n"
    )


@pytest.fixture
def sorted_box(client: Transcript, server: ServerThread) -> Transcript:
    # DATE compares instants: 1 is 10:00Z, 2 12:30Z, 3 09:00Z, 4 11:00Z
    day = "Tue, 3 Mar 2026"
    for frm, to, subject, time, pad in (
        ("Zoe <b@cab.fr>", "d@x.fr", "Re: Bilan", "11:00:00 +0100", 30),
        ("a@cab.fr", "Carl <c@x.fr>", "bilan", "14:30:00 +0200", 10),
        ("Max <m@cab.fr>", "a@x.fr", "Analyse", "09:00:00 +0000", 20),
        ("c@cab.fr", "b@x.fr", "[HOP] Fwd: analyse", "06:00:00 -0500", 40),
    ):
        server.deliver(ALICE, _msg(frm, to, subject, f"{day} {time}", pad))
    client.cmd("s SELECT INBOX")
    return client


def test_sort_keys_and_reverse(sorted_box: Transcript) -> None:
    c = sorted_box
    assert c.cmd("a SORT (DATE) UTF-8 ALL") == b"* SORT 3 1 4 2\r\na OK SORT completed\r\n"
    assert c.cmd("b SORT (REVERSE DATE) UTF-8 ALL") == b"* SORT 2 4 1 3\r\nb OK SORT completed\r\n"
    # base subjects ANALYSE ANALYSE BILAN BILAN: ties by sequence, REVERSE SIZE breaks them
    assert c.cmd("c SORT (SUBJECT) US-ASCII ALL") == b"* SORT 3 4 1 2\r\nc OK SORT completed\r\n"
    assert c.cmd("d SORT (SUBJECT REVERSE SIZE) UTF-8 ALL") == (
        b"* SORT 4 3 1 2\r\nd OK SORT completed\r\n"
    )
    # FROM compares the mailbox part: a b c m
    assert c.cmd("e SORT (FROM) UTF-8 ALL") == b"* SORT 2 1 4 3\r\ne OK SORT completed\r\n"
    # DISPLAYFROM the display name, else the address: a@cab.fr c@cab.fr Max Zoe
    assert c.cmd("f SORT (DISPLAYFROM) UTF-8 ALL") == b"* SORT 2 4 3 1\r\nf OK SORT completed\r\n"
    assert c.cmd("g SORT (DISPLAYTO) UTF-8 ALL") == b"* SORT 3 4 2 1\r\ng OK SORT completed\r\n"
    assert c.cmd("h SORT (SIZE) UTF-8 2:4") == b"* SORT 2 3 4\r\nh OK SORT completed\r\n"
    assert c.cmd("i SORT (ARRIVAL) UTF-8 SUBJECT bilan") == b"* SORT 1 2\r\ni OK SORT completed\r\n"


def test_uid_sort_esort_and_errors(sorted_box: Transcript) -> None:
    c = sorted_box
    assert c.cmd("a UID SORT (REVERSE ARRIVAL) UTF-8 ALL") == (
        b"* SORT 4 3 2 1\r\na OK UID SORT completed\r\n"
    )
    # ESORT: MIN/MAX are the first and last in sort order, ALL keeps the order
    assert c.cmd("b SORT RETURN (MIN MAX ALL COUNT) (DATE) UTF-8 ALL") == (
        b'* ESEARCH (TAG "b") MIN 3 MAX 2 ALL 3,1,4,2 COUNT 4\r\nb OK SORT completed\r\n'
    )
    assert c.cmd("c SORT RETURN () (REVERSE ARRIVAL) UTF-8 ALL") == (
        b'* ESEARCH (TAG "c") ALL 4,3,2,1\r\nc OK SORT completed\r\n'
    )
    assert c.cmd("d SORT RETURN (COUNT) (ARRIVAL) UTF-8 SUBJECT nothing") == (
        b'* ESEARCH (TAG "d") COUNT 0\r\nd OK SORT completed\r\n'
    )
    assert c.cmd("e SORT (COLOUR) UTF-8 ALL").startswith(b"e BAD ")
    assert c.cmd("f SORT (REVERSE) UTF-8 ALL").startswith(b"f BAD ")
    assert c.cmd("g SORT (DATE) KOI8-R ALL").startswith(b"g NO [BADCHARSET")
