"""SMTP smuggling (CVE-2023-51764 / 51765 / 51766 class): only CRLF.CRLF ends DATA.

Decision (docs/decisions.md): a message holding a bare LF or bare CR is refused as a whole
(550 5.6.0) after reading up to the real CRLF.CRLF, so nothing after a fake end-of-data ever
becomes a command or a second message. Pure decoder tests here; over-the-wire ones in
tests/smtp/test_relay_server.py (``test_smuggling_over_the_wire``).
"""

from __future__ import annotations

import pytest

from caducee.smtp.protocol import DataDecoder

SMUGGLED = (
    b"MAIL FROM:<ceo@victim.fr>\r\nRCPT TO:<x@b.fr>\r\nDATA\r\nFrom: ceo@victim.fr\r\n\r\nevil\r\n"
)

FAKE_ENDS = [
    b"\n.\n",
    b"\r\n.\n",
    b"\n.\r\n",
    b"\r.\r",
    b"\r\n.\r",
    b"\r.\r\n",
    b"\n.\r",
    b"\r\n\x00.\r\n",
]


@pytest.mark.parametrize("fake", FAKE_ENDS, ids=repr)
@pytest.mark.parametrize("chunk", [1, 3, 7, 10_000])
def test_fake_end_of_data_never_ends_the_message(fake: bytes, chunk: int) -> None:
    stream = b"Subject: hi\r\n\r\nhello" + fake + SMUGGLED + b".\r\nQUIT\r\n"
    dec = DataDecoder(max_size=10**6)
    rest = None
    out = b""
    i = 0
    while rest is None:
        content, rest = dec.feed(stream[i : i + chunk])
        out += content
        i += chunk
    # The decoder stopped at the one real CRLF.CRLF: what follows is exactly the next command.
    assert rest + stream[i:] == b"QUIT\r\n"
    # Everything up to the real end is message content: no command ever escapes.
    assert b"MAIL FROM:<ceo@victim.fr>" in out
    assert out.endswith(b"evil\r\n")
    if fake != b"\r\n\x00.\r\n":
        assert dec.outcome.bare_newline
        refusal = dec.outcome.refusal
        assert refusal is not None and (refusal.code, refusal.enhanced) == (550, "5.6.0")


def test_only_crlf_dot_crlf_ends() -> None:
    dec = DataDecoder(max_size=100)
    content, rest = dec.feed(b"a\r\n.\r\nb")
    assert (content, rest) == (b"a\r\n", b"b")
    assert dec.outcome.refusal is None


@pytest.mark.parametrize("bare", [b"a\nb\r\n", b"a\rb\r\n", b"a\r\r\n", b"\n"])
def test_bare_newlines_anywhere_are_refused(bare: bytes) -> None:
    dec = DataDecoder(max_size=100)
    _, rest = dec.feed(bare + b".\r\n" if bare.endswith(b"\r\n") else bare + b"\r\n.\r\n")
    assert rest == b""
    assert dec.outcome.bare_newline


def test_cr_split_from_lf_across_chunks_is_not_bare() -> None:
    dec = DataDecoder(max_size=100)
    dec.feed(b"a\r")
    _, rest = dec.feed(b"\n.\r\n")
    assert rest == b"" and not dec.outcome.bare_newline
