"""Sans-IO parser and framer: exact bytes in, commands or reasons out (RFC 9051 §9)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from caducee.imap.framing import (
    BigLiteralChunk,
    BigLiteralEnd,
    BigLiteralStart,
    CommandReady,
    Framer,
    NeedContinuation,
    Rejected,
)
from caducee.imap.lexer import Literal, ParseError
from caducee.imap.parser import (
    AppendArgs,
    CopyArgs,
    FetchArgs,
    ListArgs,
    LoginArgs,
    SearchArgs,
    SelectArgs,
    SeqSet,
    StoreArgs,
    parse_command,
)
from caducee.imap.search import BadCharset, SearchKey


def events(framer: Framer) -> list[object]:
    out: list[object] = []
    while (ev := framer.next_event()) is not None:
        out.append(ev)
    return out


def parse(line: bytes, *lits: bytes) -> object:
    texts = line.split(b"\x00")
    return parse_command(texts, [Literal(len(x), x) for x in lits])


def test_framer_sync_literal_asks_continuation_then_completes() -> None:
    f = Framer()
    f.feed(b"a1 LOGIN {5}\r\n")
    assert events(f) == [NeedContinuation()]
    f.feed(b"alice {3+}\r\npwd\r\n")
    (ev,) = events(f)
    assert isinstance(ev, CommandReady)
    assert ev.texts == [b"a1 LOGIN {5}", b" {3+}", b""]
    cmd = parse_command(ev.texts, ev.literals)
    assert cmd.args == LoginArgs(b"alice", b"pwd")


def test_framer_splits_pipelined_commands_and_partial_lines() -> None:
    f = Framer()
    f.feed(b"a NOOP\r\nb CAPA")
    evs = events(f)
    assert [e.texts for e in evs if isinstance(e, CommandReady)] == [[b"a NOOP"]]
    f.feed(b"BILITY\r\n")
    assert [e.texts for e in events(f) if isinstance(e, CommandReady)] == [[b"b CAPABILITY"]]


def test_framer_line_too_long_is_rejected_and_stream_recovers() -> None:
    f = Framer(max_line=100)
    f.feed(b"x1 NOOP " + b"A" * 500)
    (ev,) = events(f)
    assert isinstance(ev, Rejected) and ev.reason == "command line too long"
    f.feed(b"A" * 50 + b"\r\nx2 NOOP\r\n")
    evs = events(f)
    assert [e.texts for e in evs if isinstance(e, CommandReady)] == [[b"x2 NOOP"]]


def test_framer_literal_over_limit_refused_without_continuation() -> None:
    f = Framer(max_literal=1000)
    f.feed(b"a APPEND INBOX {5000}\r\nb NOOP\r\n")
    evs = events(f)
    assert isinstance(evs[0], Rejected) and evs[0].reason == "literal too large"
    assert evs[0].texts == [b"a APPEND INBOX {5000}"]
    assert [e.texts for e in evs[1:] if isinstance(e, CommandReady)] == [[b"b NOOP"]]


def test_framer_nonsync_literal_over_limit_is_swallowed() -> None:
    f = Framer(max_literal=10)
    f.feed(b"a APPEND INBOX {20+}\r\n" + b"x" * 20 + b"\r\nb NOOP\r\n")
    evs = events(f)
    assert isinstance(evs[0], Rejected)
    assert [e.texts for e in evs[1:] if isinstance(e, CommandReady)] == [[b"b NOOP"]]


def test_literal_minus_limited_to_4096() -> None:
    f = Framer()
    f.feed(b"a LOGIN {5000-}\r\n")
    (ev,) = events(f)
    assert isinstance(ev, Rejected) and "4096" in ev.reason


def test_framer_streams_big_literals_in_chunks() -> None:
    f = Framer(inline_literal=10)
    f.feed(b"a APPEND INBOX {25+}\r\n" + b"y" * 25 + b"\r\n")
    start = f.next_event()
    assert isinstance(start, BigLiteralStart) and start.size == 25 and not start.sync
    data = b""
    while isinstance(ev := f.next_event(), BigLiteralChunk):
        data += ev.data
    assert data == b"y" * 25
    assert isinstance(ev, BigLiteralEnd)
    f.attach_literal(Literal(25, None, spool="ref"))
    ready = f.next_event()
    assert isinstance(ready, CommandReady)
    assert ready.literals[0].spool == "ref"
    assert ready.texts == [b"a APPEND INBOX {25+}", b""]


def test_reset_drops_buffered_plaintext() -> None:
    f = Framer()
    f.feed(b"a STARTTLS\r\nb LOGIN x y\r\n")
    first = f.next_event()
    assert isinstance(first, CommandReady)
    f.reset()
    assert f.next_event() is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "missing or invalid tag"),
        (b"a", "expected a space"),
        (b"a FROB", "unknown command 'FROB'"),
        (b"a LOGIN x", "expected a space"),
        (b'a LOGIN "x y', "unterminated quoted string"),
        (b"a FETCH 0 FLAGS", "expected a non-zero 32-bit number"),
        (b"a FETCH 1 (FLAGS", "expected a space"),
        (b"a FETCH 1 BODY[3.FOO]", "invalid section text 'FOO'"),
        (b"a FETCH 1 XYZ", "unknown fetch attribute 'XYZ'"),
        (b"a SEARCH FOO", "unknown search key 'FOO'"),
        (b"a SEARCH SINCE 32-Foo-2020", "invalid date"),
        (b"a STORE 1 FLAGZ (\\Seen)", "expected FLAGS"),
        (b"a NOOP extra", "unexpected data"),
        (b"a UID FROB 1", "unknown UID command 'FROB'"),
        (b"a APPEND INBOX (\\Seen)", "expected a space"),
    ],
)
def test_syntax_errors_have_a_reason(line: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_command([line])
    assert reason in info.value.reason


def test_parse_error_keeps_tag() -> None:
    with pytest.raises(ParseError) as info:
        parse_command([b"t42 FETCH"])
    assert info.value.tag == "t42"


def test_sequence_sets_with_star_and_saved_result() -> None:
    cmd = parse(b"a FETCH 1:3,7,9:* FLAGS")
    assert isinstance(cmd.args, FetchArgs)
    assert cmd.args.seqset == SeqSet(((1, 3), (7, 7), (9, 0)))
    assert cmd.args.seqset.resolve(10) == {1, 2, 3, 7, 9, 10}
    saved = parse(b"a UID COPY $ Trash").args
    assert isinstance(saved, CopyArgs) and saved.seqset.saved


def test_fetch_attributes_sections_partial_and_macros() -> None:
    cmd = parse(
        b"a UID FETCH 1:* (FAST BODY.PEEK[1.2.HEADER.FIELDS.NOT (X-A x-b)]<10.20> BINARY.SIZE[2])"
    )
    args = cmd.args
    assert isinstance(args, FetchArgs) and cmd.uid
    names = [a.name for a in args.atts]
    assert names == ["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY.PEEK", "BINARY.SIZE"]
    peek = args.atts[4]
    assert peek.section == "1.2.HEADER.FIELDS.NOT"
    assert peek.fields == ("X-A", "x-b")
    assert peek.partial == (10, 20)
    assert peek.label == "BODY[1.2.HEADER.FIELDS.NOT (X-A x-b)]"


def test_fetch_changedsince_modifier() -> None:
    args = parse(b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)").args
    assert isinstance(args, FetchArgs)
    assert args.changedsince == 12345 and args.vanished


def test_store_variants() -> None:
    args = parse(b"a STORE 2:4 (UNCHANGEDSINCE 9) -FLAGS.SILENT (\\Seen $Label1)").args
    assert args == StoreArgs(SeqSet(((2, 4),)), "-", True, ("\\Seen", "$Label1"), 9)
    args = parse(b"a STORE 1 FLAGS \\Draft").args
    assert isinstance(args, StoreArgs) and args.flags == ("\\Draft",) and args.mode == ""


def test_append_multi_with_flags_dates_and_literal8() -> None:
    line = b'a APPEND Sent (\\Seen) "05-Mar-2026 09:08:07 -0130" {3}\x00 ~{2}\x00'
    cmd = parse(line, b"abc", b"\x00\x01")
    args = cmd.args
    assert isinstance(args, AppendArgs) and args.mailbox == b"Sent"
    first, second = args.messages
    assert first.flags == ("\\Seen",)
    assert first.date == datetime(
        2026, 3, 5, 9, 8, 7, tzinfo=timezone(-timedelta(hours=1, minutes=30))
    )
    assert first.literal.data == b"abc" and second.literal.data == b"\x00\x01"


def test_search_program_tree_and_charset() -> None:
    args = parse(
        b"a SEARCH RETURN (MIN COUNT) CHARSET UTF-8 "
        b'OR FROM "j\xc3\xa9" NOT (SEEN 1:3) SINCE 1-Feb-2026'
    ).args
    assert isinstance(args, SearchArgs)
    assert args.return_opts == ("MIN", "COUNT") and args.charset == "UTF-8"
    key = args.key
    assert key.op == "AND"
    assert key.args[0] == SearchKey(
        "OR",
        (
            SearchKey("FROM", ("jé",)),
            SearchKey(
                "NOT",
                (SearchKey("AND", (SearchKey("SEEN"), SearchKey("SEQ", (SeqSet(((1, 3),)),)))),),
            ),
        ),
    )
    assert key.args[1] == SearchKey("SINCE", (datetime(2026, 2, 1, tzinfo=UTC),))


def test_search_unknown_charset() -> None:
    with pytest.raises(BadCharset):
        parse(b"a SEARCH CHARSET KOI8-R TEXT x")


def test_search_nesting_is_bounded() -> None:
    with pytest.raises(ParseError, match="nested too deeply"):
        parse(b"a SEARCH " + b"NOT " * 60 + b"ALL")


def test_list_extended_forms() -> None:
    args = parse(
        b'a LIST (SUBSCRIBED) "" ("INBOX" Partag&AOk-/*) RETURN (CHILDREN STATUS (MESSAGES))'
    ).args
    assert isinstance(args, ListArgs) and args.extended
    assert args.select_opts == {"SUBSCRIBED"}
    assert args.patterns == (b"INBOX", b"Partag&AOk-/*")
    assert args.status_atts == ("MESSAGES",)


def test_select_condstore_and_qresync() -> None:
    args = parse(b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211))").args
    assert isinstance(args, SelectArgs)
    assert args.qresync == (67890007, 20050715194045000, SeqSet(((41, 41), (43, 211))))
    assert parse(b"a EXAMINE INBOX (CONDSTORE)").args == SelectArgs(b"INBOX", True, None)


def test_authenticate_with_initial_response() -> None:
    cmd = parse(b"a AUTHENTICATE PLAIN AGFsaWNlAHB3ZA==")
    assert cmd.args is not None and cmd.args.initial == b"AGFsaWNlAHB3ZA=="
    assert parse(b"a AUTHENTICATE PLAIN =").args.initial == b"="
