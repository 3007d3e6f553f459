"""Malformed MIME (../shared/corpora/mime) is accepted over the wire, stored byte-exact, and
never crashes the server (issue 2, Bad input). The relay does not parse MIME at all; the
submission port reads only the header block (From:)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from smtp_harness import Node, body_of


def _corpus(shared_dir: Path) -> list[tuple[str, bytes]]:
    root = shared_dir / "corpora" / "mime"
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            # What a client puts on the wire: CRLF line ends, a final CRLF (RFC 5321 §2.3.8).
            data = re.sub(rb"\r\n|\r|\n", b"\r\n", p.read_bytes())
            if not data.endswith(b"\r\n"):
                data += b"\r\n"
            out.append((str(p.relative_to(root)), data))
    return out


async def test_malformed_mime_corpus_stored_byte_exact(node: Node, shared_dir: Path) -> None:
    corpus = _corpus(shared_dir)
    assert len(corpus) >= 149

    def send() -> list[str]:
        refused = []
        with node.relay_client() as c:
            for name, data in corpus:
                if c.sendmail("x@a.test", ["bob@b.test"], data, ["BODY=8BITMIME"]):
                    refused.append(name)
            c.noop()
        return refused

    assert await asyncio.to_thread(send) == []
    stored = await node.folder_messages("bob@b.test")
    assert len(stored) == len(corpus)
    for (name, data), got in zip(corpus, stored, strict=True):
        assert body_of(got) == data, name
