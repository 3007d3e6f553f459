"""THREAD=REFERENCES and THREAD=ORDEREDSUBJECT (RFC 5256): byte-level transcripts over a small
conversation with a reply by In-Reply-To only, a lost parent and a subject-only reply."""

from __future__ import annotations

import pytest
from imap_harness import ALICE, ServerThread, Transcript

# (Message-ID, extra header, subject, time on 3 Mar 2026 UTC)
CONVERSATION = [
    ("r1", "", "Bilan", "10:00"),
    ("r2", "References: <r1@x>", "Re: Bilan", "11:00"),
    ("r3", "In-Reply-To: <r1@x>", "Re: Bilan", "10:30"),
    ("r4", "References: <r1@x> <r2@x>", "Re: Bilan", "12:00"),
    ("r5", "", "Analyse", "09:00"),
    ("r6", "References: <gone@x>", "Re: Résultat", "13:00"),
    ("r7", "References: <gone@x>", "Re: Résultat", "14:00"),
    ("r8", "", "Re: Analyse", "15:00"),
]


@pytest.fixture
def conversation(client: Transcript, server: ServerThread) -> Transcript:
    for mid, extra, subject, time in CONVERSATION:
        head = f"Message-ID: <{mid}@x>\r\n" + (extra + "\r\n" if extra else "")
        head += f"Subject: {subject}\r\nDate: Tue, 3 Mar 2026 {time}:00 +0000\r\n\r\nx\r\n"
        server.deliver(ALICE, head.encode())
    client.cmd("s SELECT INBOX")
    return client


def test_thread_references(conversation: Transcript) -> None:
    # 3 answers 1 through In-Reply-To and is earlier than 2; 6 and 7 share a lost parent
    # (an empty container kept at the root); 8 joins 5 by its base subject only
    assert conversation.cmd("a THREAD REFERENCES UTF-8 ALL") == (
        b"* THREAD (5 8)(1 (3)(2 4))((6)(7))\r\na OK THREAD completed\r\n"
    )
    # without 2, its child 4 hangs from 1 directly (its References still name 1)
    assert conversation.cmd("b THREAD REFERENCES UTF-8 NOT SUBJECT analyse NOT 2") == (
        b"* THREAD (1 (3)(4))((6)(7))\r\nb OK THREAD completed\r\n"
    )
    assert conversation.cmd("c UID THREAD REFERENCES UTF-8 1:4") == (
        b"* THREAD (1 (3)(2 4))\r\nc OK UID THREAD completed\r\n"
    )


def test_thread_orderedsubject_and_errors(conversation: Transcript) -> None:
    assert conversation.cmd("a THREAD ORDEREDSUBJECT UTF-8 ALL") == (
        b"* THREAD (5 8)(1 (3)(2)(4))(6 7)\r\na OK THREAD completed\r\n"
    )
    assert conversation.cmd("b THREAD ORDEREDSUBJECT US-ASCII SUBJECT nothing") == (
        b"* THREAD\r\nb OK THREAD completed\r\n"
    )
    assert conversation.cmd("c THREAD SPAGHETTI UTF-8 ALL").startswith(b"c BAD ")
