"""Rendering over the MIME corpus: never crash, always a syntactically valid response; byte
exact sections (RFC 9051 §6.4.5, §7.5.2)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from response_syntax import check_body, check_envelope, read_all

from caducee.imap.matcher import MessageFacts, decode_header_value, matches
from caducee.imap.mime import MAX_DEPTH, Part, parse_message
from caducee.imap.parser import parse_command
from caducee.imap.render import (
    SectionError,
    UnknownCte,
    binary_bytes,
    body_structure,
    envelope,
    section_bytes,
)


def corpus(shared: Path) -> list[Path]:
    files = [
        p
        for p in sorted((shared / "corpora" / "mime").rglob("*"))
        if p.is_file() and p.suffix != ".json" and p.name not in ("COPYING", "SOURCES.md")
    ]
    return files


def paths(part: Part, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    kids = (
        part.children
        if part.is_multipart
        else (part.message.children if part.message and part.message.is_multipart else [])
    )
    for i, child in enumerate(kids, 1):
        out.append((*prefix, i))
        out.extend(paths(child, (*prefix, i)))
    return out


def test_every_corpus_message_renders_valid_structures(shared_dir: Path) -> None:
    files = corpus(shared_dir)
    assert len(files) >= 140
    for path in files:
        data = path.read_bytes()
        root = parse_message(data)
        for extended in (True, False):
            bs = body_structure(data, root, extended=extended)
            try:
                check_body(read_all(bs), extended=extended)
            except Exception as exc:
                raise AssertionError(f"{path.name}: {exc}: {bs[:400]!r}") from exc
        check_envelope(read_all(envelope(root)))
        for p in [(), *paths(root)]:
            sec = ".".join(map(str, p))
            for text in ["", "HEADER", "TEXT"] if not p else ["", "MIME", "HEADER", "TEXT"]:
                full = f"{sec}.{text}" if sec and text else sec or text
                try:
                    out = section_bytes(data, root, full, ("SUBJECT",))
                except SectionError:
                    continue
                assert isinstance(out, bytes)
            with contextlib.suppress(SectionError, UnknownCte):
                binary_bytes(data, root, sec)
        # SEARCH text over decoded content never crashes
        facts = MessageFacts(1, 1, frozenset(), root_date(), len(data), 1, data=data)
        key = parse_command([b"a SEARCH OR TEXT zzqx BODY \xc3\xa9"]).args
        assert key is not None
        matches(key.key, facts)


def root_date():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime(2026, 1, 1, tzinfo=UTC)


NESTED = (
    b"From: a@b.c\r\nSubject: outer\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n"
    b"--o\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
    b"--o\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: x@y.z\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n"
    b"--i\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--i\r\nContent-Type: text/html\r\n\r\n"
    b"<p>inner</p>\r\n--i--\r\n"
    b"--o--\r\n"
)


def test_sections_are_byte_exact_in_nested_messages() -> None:
    root = parse_message(NESTED)
    assert section_bytes(NESTED, root, "1") == b"first"
    assert section_bytes(NESTED, root, "1.MIME") == b"Content-Type: text/plain\r\n\r\n"
    assert section_bytes(NESTED, root, "2.HEADER").startswith(b"From: x@y.z\r\nSubject: inner")
    assert section_bytes(NESTED, root, "2.1") == b"inner text"
    assert section_bytes(NESTED, root, "2.2") == b"<p>inner</p>"
    assert section_bytes(NESTED, root, "2.HEADER.FIELDS", ("SUBJECT",)) == b"Subject: inner\r\n\r\n"
    assert section_bytes(NESTED, root, "HEADER.FIELDS.NOT", ("FROM", "CONTENT-TYPE")) == (
        b"Subject: outer\r\n\r\n"
    )
    bs = body_structure(NESTED, root, extended=False)
    assert bs == (
        b'(("TEXT" "PLAIN" NIL NIL NIL "7BIT" 5 1)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 176 '
        b'(NIL "inner" ((NIL NIL "x" "y.z")) ((NIL NIL "x" "y.z")) ((NIL NIL "x" "y.z")) NIL NIL '
        b'NIL NIL NIL) (("TEXT" "PLAIN" NIL NIL NIL "7BIT" 10 1)("TEXT" "HTML" NIL NIL NIL "7BIT" '
        b'12 1) "ALTERNATIVE") 13) "MIXED")'
    )


def test_deep_nesting_is_capped_and_still_valid() -> None:
    depth = MAX_DEPTH + 30
    data = b"Subject: deep\r\n"
    for i in range(depth):
        data += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
    data += b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for i in reversed(range(depth)):
        data += b"--b%d--\r\n" % i
    root = parse_message(data)
    bs = body_structure(data, root, extended=True)
    check_body(read_all(bs), extended=True)


def test_missing_boundary_and_empty_multipart() -> None:
    for data in (
        b"Content-Type: multipart/mixed\r\n\r\nno boundary\r\n",
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nnothing here\r\n",
        b"",
        b"\r\n",
        b"Subject: only headers",
    ):
        root = parse_message(data)
        check_body(read_all(body_structure(data, root, extended=True)), extended=True)
        check_envelope(read_all(envelope(root)))


def test_rfc2047_headers_decode_for_search() -> None:
    assert decode_header_value(b"=?utf-8?q?R=C3=A9sultats?= =?iso-8859-1?q?_d=E9finitifs?=") == (
        "Résultats définitifs"
    )
    assert decode_header_value("Résumé".encode()) == "Résumé"


@pytest.mark.parametrize(
    ("query", "hit"),
    [
        (b"SUBJECT r\xc3\xa9sultats", True),
        (b"BODY h\xc3\xa9matologie", True),
        (b"BODY HEMATOLOGIE", False),
        (b"TEXT h\xc3\x89MATOLOGIE", True),
        (b'HEADER X-MSS-NIL "DEV9"', True),
        (b"FROM j\xc3\xa9r\xc3\xb4me", True),
        (b"NOT FROM j\xc3\xa9r\xc3\xb4me", False),
        (b"SENTSINCE 1-Mar-2026 SENTBEFORE 3-Mar-2026", True),
        (b"SENTON 3-Mar-2026", False),
        (b"LARGER 10 SMALLER 100000", True),
    ],
)
def test_search_matches_decoded_text(query: bytes, hit: bool) -> None:
    data = (
        b"From: =?utf-8?q?J=C3=A9r=C3=B4me?= <j@x.fr>\r\nSubject: =?utf-8?b?UsOpc3VsdGF0cw==?=\r\n"
        b"X-MSS-NIL: DEV935997\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"\r\nH=E9matologie normale\r\n"
    )
    facts = MessageFacts(1, 1, frozenset(), root_date(), len(data), 1, data=data)
    args = parse_command([b"a SEARCH CHARSET UTF-8 " + query]).args
    assert matches(args.key, facts) is hit
