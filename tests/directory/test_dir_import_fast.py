"""The block reader of the extracts and the hashes it feeds (first load and daily diff agree)."""

from __future__ import annotations

import io
from pathlib import Path

from caducee.directory.extracts import (
    MSS_HEADER,
    PS_HEADER,
    BadLine,
    ExtractKind,
    format_line,
    read_records,
)
from caducee.directory.importer import import_extract
from caducee.directory.rows import line_hash, raw_hash
from caducee.directory.store import DirectoryStore
from caducee.directory.synth import SynthResult


def test_records_across_blocks_crlf_and_no_final_newline() -> None:
    long = ["é" * 30_000] * 31  # ~1.8 MB a line: every line straddles a 1 MiB block
    lines = [format_line(long, ExtractKind.MSS), format_line(["x"] * 31, ExtractKind.MSS)]
    body = MSS_HEADER + "\r\n" + "\r\n".join(lines) + "\r\n\r\n" + "|".join(["z"] * 31)
    seen: list[int] = []
    kind, records = read_records(io.BytesIO(body.encode()), seen.append)
    out = list(records)
    assert kind == ExtractKind.MSS
    assert [n for n, _, _ in out] == [2, 3, 5]  # the blank line 4 is skipped
    assert [f for _, f, _ in out] == [long, ["x"] * 31, ["z"] * 31]
    assert seen[0] < seen[-1] == len(body.encode()) and seen == sorted(seen)


def test_raw_bytes_hash_as_the_joined_fields() -> None:
    """The first load hashes the bytes read; a refresh may hash the fields: same value, so
    a refresh after a first load finds nothing changed."""
    ps = ["v"] * 51 + ["Libellé é"]
    mss = ["PER", "a.b@x.mssante.fr"] + ["ü"] * 29
    body = (
        f"{PS_HEADER}\n{format_line(ps, ExtractKind.PS)}\n"
        + "|".join(ps)  # 52 columns without the trailing pipe: accepted as well
        + "\n"
        + "|".join([*ps, "extra"])
        + "\n"
    )
    _, records = read_records(io.BytesIO(body.encode()))
    out = list(records)
    assert [f for _, f, _ in out[:2]] == [ps, ps]
    assert all(raw_hash(raw) == line_hash(ps) for _, _, raw in out[:2])
    assert isinstance(out[2][1], BadLine) and "53 columns" in out[2][1].reason
    _, records = read_records(io.BytesIO((MSS_HEADER + "\n" + "|".join(mss)).encode()))
    ((_, fields, raw),) = list(records)
    assert fields == mss and raw_hash(raw) == line_hash(mss)


def test_refresh_after_first_load_changes_nothing_even_with_upper_case_addresses(
    empty_store: DirectoryStore, synth: SynthResult, tmp_path: Path
) -> None:
    text = synth.mss_path.read_text(encoding="utf-8").splitlines()
    upper = [text[0]] + [
        line.replace("@", "@X", 1).upper() if i % 3 == 0 else line
        for i, line in enumerate(text[1:])
    ]
    mss = tmp_path / "Extraction_Correspondance_MSSante_202601020300.txt"
    mss.write_text("\n".join(upper) + "\n", encoding="utf-8")
    import_extract(empty_store, synth.ps_path)
    first = import_extract(empty_store, mss)
    assert first.added > 0 and first.bad_count == 0
    ps_again = import_extract(empty_store, synth.ps_path)
    mss_again = import_extract(empty_store, mss)
    assert (ps_again.added, ps_again.changed, ps_again.removed) == (0, 0, 0)
    assert (mss_again.added, mss_again.changed, mss_again.removed) == (0, 0, 0)
    assert mss_again.unchanged == first.added
    assert empty_store.find_mailbox(upper[1].split("|")[1].lower())
