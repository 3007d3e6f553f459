"""Pure tests of the sans-IO SMTP core (RFC 5321, 1870, 3461, 6531, 6152)."""

from __future__ import annotations

import pytest

from caducee.smtp.protocol import (
    MAX_DATA_LINE,
    DataDecoder,
    HeaderCollector,
    Reply,
    SmtpSyntaxError,
    format_received,
    header_addresses,
    parse_command,
    parse_mail,
    parse_rcpt,
    xtext_decode,
    xtext_encode,
)


def decode_all(
    chunks: list[bytes], max_size: int = 10**9
) -> tuple[bytes, bytes | None, DataDecoder]:
    dec = DataDecoder(max_size=max_size)
    out = b""
    rest = None
    for c in chunks:
        if rest is not None:
            rest += c  # after the end: what the connection would read next
            continue
        content, rest = dec.feed(c)
        out += content
    return out, rest, dec


def test_parse_command_verb_and_argument() -> None:
    assert parse_command(b"mail FROM:<a@b.fr> SIZE=10") == ("MAIL", "FROM:<a@b.fr> SIZE=10")
    assert parse_command(b"QUIT") == ("QUIT", "")


@pytest.mark.parametrize("line", [b"MAIL\x00 FROM:<a@b>", b"MAIL FROM:<\xff@b>", b"1234", b""])
def test_parse_command_rejects_bad_lines(line: bytes) -> None:
    with pytest.raises(SmtpSyntaxError) as err:
        parse_command(line)
    assert err.value.code == 500


def test_parse_mail_with_all_esmtp_parameters() -> None:
    m = parse_mail(
        "FROM:<dr.house@ch-exemple.mssante.test> SIZE=1000 BODY=8BITMIME RET=HDRS "
        "ENVID=QQ314159+2B1 AUTH=<>",
        max_size=2000,
    )
    assert m.address == "dr.house@ch-exemple.mssante.test"
    assert (m.size, m.body, m.ret, m.envid, m.smtputf8) == (
        1000,
        "8BITMIME",
        "HDRS",
        "QQ314159+1",
        False,
    )


def test_parse_mail_null_path_lowercases_domain_and_ignores_source_route() -> None:
    assert parse_mail("FROM:<>", max_size=10).address == ""
    assert parse_mail("FROM: <@relay.fr:Jean@EXEMPLE.FR>", max_size=10).address == "Jean@exemple.fr"


def test_parse_mail_size_over_limit_is_552() -> None:
    with pytest.raises(SmtpSyntaxError) as err:
        parse_mail("FROM:<a@b.fr> SIZE=2001", max_size=2000)
    assert (err.value.code, err.value.enhanced) == (552, "5.3.4")


@pytest.mark.parametrize(
    ("arg", "code"),
    [
        ("FROM:a@b.fr", 501),
        ("FROM:<a@b.fr", 501),
        ("FROM:<a@b.fr>x", 501),
        ("FROM:<a b@c.fr>", 501),
        ("FROM:<a@b.fr> BODY=BINARYMIME", 555),
        ("FROM:<a@b.fr> FOO=1", 555),
        ("FROM:<a@b.fr> SIZE=1 SIZE=2", 501),
        ("FROM:<a@b.fr> RET=ALL", 501),
        ("FROM:<a@b.fr> ENVID=bad+zz", 501),
        ("FROM:<jérôme@b.fr>", 553),
        ("TO:<a@b.fr>", 501),
    ],
)
def test_parse_mail_refusals(arg: str, code: int) -> None:
    with pytest.raises(SmtpSyntaxError) as err:
        parse_mail(arg, max_size=100)
    assert err.value.code == code


def test_smtputf8_allows_utf8_addresses() -> None:
    m = parse_mail("FROM:<jérôme@hôpital.fr> SMTPUTF8", max_size=10)
    assert m.smtputf8 and m.address == "jérôme@hôpital.fr"
    r = parse_rcpt("TO:<zoé@clinique.fr>", smtputf8=True)
    assert r.address == "zoé@clinique.fr"
    with pytest.raises(SmtpSyntaxError):
        parse_rcpt("TO:<zoé@clinique.fr>", smtputf8=False)


def test_parse_rcpt_dsn_parameters() -> None:
    r = parse_rcpt("TO:<b@c.fr> NOTIFY=success,FAILURE ORCPT=rfc822;b+2Bx@c.fr")
    assert r.notify == {"SUCCESS", "FAILURE"}
    assert r.orcpt == "rfc822;b+x@c.fr"
    assert parse_rcpt("TO:<b@c.fr> NOTIFY=NEVER").notify == {"NEVER"}
    for bad in ("TO:<b@c.fr> NOTIFY=NEVER,SUCCESS", "TO:<b@c.fr> ORCPT=rfc822", "TO:<>"):
        with pytest.raises(SmtpSyntaxError):
            parse_rcpt(bad)


def test_xtext_round_trip() -> None:
    for text in ["a+b=c", "plain", "é\x01 x"]:
        assert xtext_decode(xtext_encode(text)) == text
    assert xtext_encode("a+b") == "a+2Bb"


def test_reply_formatting_multiline_and_no_crlf_injection() -> None:
    assert Reply(250, "2.0.0", "Ok").to_bytes() == b"250 2.0.0 Ok\r\n"
    assert Reply(250, "", ("h", "SIZE 1")).to_bytes() == b"250-h\r\n250 SIZE 1\r\n"
    assert Reply(550, "5.1.1", "a\r\nb").to_bytes() == b"550 5.1.1 a  b\r\n"


def test_data_unstuffs_dots_and_returns_pipelined_rest() -> None:
    out, rest, dec = decode_all([b"Subject: x\r\n\r\n..hidden\r\n.\r\nQUIT\r\n"])
    assert out == b"Subject: x\r\n\r\n.hidden\r\n"
    assert rest == b"QUIT\r\n"
    assert dec.outcome.refusal is None


def test_data_leading_dot_and_empty_message() -> None:
    assert decode_all([b"..a\r\n.\r\n"])[0] == b".a\r\n"
    out, rest, _ = decode_all([b".\r\n"])
    assert (out, rest) == (b"", b"")


def test_data_end_split_across_every_boundary() -> None:
    msg = b"A: b\r\n\r\nline\r\n..dot\r\n.\r\nNEXT"
    for cut in range(len(msg) + 1):
        for cut2 in range(cut, len(msg) + 1):
            out, rest, _ = decode_all([msg[:cut], msg[cut:cut2], msg[cut2:]])
            assert out == b"A: b\r\n\r\nline\r\n.dot\r\n", (cut, cut2)
            assert rest == b"NEXT", (cut, cut2)


def test_data_byte_by_byte() -> None:
    msg = b"x\r\n.\r\n"
    out, rest, _ = decode_all([bytes([b]) for b in msg])
    assert (out, rest) == (b"x\r\n", b"")


def test_data_size_limit_counts_content() -> None:
    _, _, dec = decode_all([b"x" * 100 + b"\r\n.\r\n"], max_size=50)
    assert dec.outcome.too_big
    assert dec.outcome.refusal is not None and dec.outcome.refusal.code == 552


def test_data_long_lines_accepted_up_to_bound_then_refused() -> None:
    ok = b"a" * 5000 + b"\r\n"
    _, _, dec = decode_all([ok, b".\r\n"])
    assert dec.outcome.refusal is None
    long = b"a" * (MAX_DATA_LINE + 10)
    _, _, dec = decode_all([long[:1000], long[1000:], b"\r\n.\r\n"])
    assert dec.outcome.line_too_long
    _, _, dec = decode_all([b"h\r\n" + long + b"\r\nx\r\n.\r\n"])
    assert dec.outcome.line_too_long


def test_nul_is_recorded_but_not_refused() -> None:
    out, _, dec = decode_all([b"a\x00b\r\n.\r\n"])
    assert out == b"a\x00b\r\n" and dec.outcome.nul and dec.outcome.refusal is None


def test_header_collector_keeps_only_headers() -> None:
    hc = HeaderCollector(limit=1000)
    for piece in (b"From: A <a@b.fr>\r\nTo: c@d.fr\r", b"\n\r\nbody " * 1, b"x" * 5000):
        hc.feed(piece)
    assert hc.complete and hc.block == b"From: A <a@b.fr>\r\nTo: c@d.fr\r\n"
    big = HeaderCollector(limit=10)
    big.feed(b"X-Long: " + b"y" * 100)
    assert big.overflow and big.block == b""
    in_one = HeaderCollector(limit=10)
    in_one.feed(b"X-Long: " + b"y" * 100 + b"\r\n\r\nbody\r\n")
    assert in_one.overflow and not in_one.complete


def test_header_addresses_unfolds_and_lists_each_field() -> None:
    block = b'from: "Dr, X" <x@a.fr>,\r\n\ty@a.fr\r\nSubject: s\r\nFrom: z@b.fr\r\n'
    assert header_addresses(block, "From") == [["x@a.fr", "y@a.fr"], ["z@b.fr"]]
    assert header_addresses(b"Subject: s\r\n", "From") == []


def test_received_header_shape() -> None:
    r = format_received(
        helo="mx.a.fr\r\nX-Evil: 1",
        peer_ip="127.0.0.1",
        hostname="mx.b.fr",
        protocol="ESMTPS",
        queue_id="abc",
        tls="using TLSv1.3",
        recipient="u@b.fr",
    )
    assert r.startswith(b"Received: from mx.a.fr??X-Evil:?1 ([127.0.0.1])\r\n\tby mx.b.fr")
    assert b"with ESMTPS id abc\r\n\tfor <u@b.fr>;" in r and r.endswith(b"\r\n")
    assert r.count(b"\r\n") == r.count(b"\n")


def test_line_length_check_matches_naive_definition() -> None:
    import random

    rng = random.Random(5321)
    for _ in range(300):
        lines = [b"a" * rng.choice([0, 5, 48, 49, 50, 51, 120]) for _ in range(rng.randint(1, 12))]
        msg = b"".join(line + b"\r\n" for line in lines)
        expected = max(len(line) for line in lines) > 50
        dec = DataDecoder(max_size=10**6, max_line=50)
        stream = msg + b".\r\n"
        i = 0
        while i < len(stream):
            step = rng.randint(1, 200)
            _, rest = dec.feed(stream[i : i + step])
            i += step
            if rest is not None:
                break
        assert dec.done
        assert dec.outcome.line_too_long == expected, lines
