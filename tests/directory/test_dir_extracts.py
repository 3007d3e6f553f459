"""The two public extract formats, byte for byte (notes §6.3)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from caducee.core.errors import InvalidInput
from caducee.directory.extracts import (
    MSS_COLUMNS,
    MSS_HEADER,
    PS_COLUMNS,
    PS_HEADER,
    BadLine,
    ExtractKind,
    detect_kind,
    format_line,
    iter_lines,
    open_extract,
)


def test_ps_header_is_the_published_one(shared_dir: Path) -> None:
    notes = (shared_dir / "reference" / "mssante-notes.md").read_text(encoding="utf-8")
    section = notes[notes.index("- **PS_LibreAcces_Personne_activite**") :]
    published = section.split("`")[1]
    assert published == PS_HEADER
    assert len(PS_COLUMNS) == 52 and PS_HEADER.endswith("|")


def test_mss_header_is_the_published_one(shared_dir: Path) -> None:
    notes = (shared_dir / "reference" / "mssante-notes.md").read_text(encoding="utf-8")
    section = notes[notes.index("- **Extraction_Correspondance_MSSante**") :]
    published = [c.strip() for c in section.split("`")[1].split("|")]
    assert list(MSS_COLUMNS) == published
    assert len(MSS_COLUMNS) == 31


def test_header_variants_are_recognised() -> None:
    assert detect_kind(PS_HEADER + "\r\n") == ExtractKind.PS
    assert detect_kind("\ufeff" + MSS_HEADER) == ExtractKind.MSS
    short = "|".join(c.removesuffix(" structure BAL") for c in MSS_COLUMNS)
    assert detect_kind(short) == ExtractKind.MSS
    with pytest.raises(InvalidInput, match="unknown header"):
        detect_kind("a|b|c")


def _stream(*lines: bytes) -> io.BytesIO:
    return io.BytesIO(b"\n".join(lines) + b"\n")


def test_bad_lines_are_numbered_and_the_rest_parsed() -> None:
    good = format_line(["x"] * 31, ExtractKind.MSS).encode()
    out = list(
        iter_lines(_stream(MSS_HEADER.encode(), good, b"too|few", b"\xff\xfe|bad", b"", good))
    )
    assert [n for _, n, _ in out] == [2, 3, 4, 6]
    assert isinstance(out[1][2], BadLine) and "2 columns" in str(out[1][2])
    assert isinstance(out[2][2], BadLine) and "UTF-8" in out[2][2].reason
    assert out[3][2] == ["x"] * 31


def test_trailing_pipe_and_crlf() -> None:
    line = format_line(["v"] * 52, ExtractKind.PS)
    assert line.endswith("|") and line.count("|") == 52
    out = list(iter_lines(_stream(PS_HEADER.encode() + b"\r", line.encode() + b"\r")))
    assert out[0][2] == ["v"] * 52
    with pytest.raises(ValueError, match="may not contain"):
        format_line(["a|b"] + ["v"] * 51, ExtractKind.PS)


def test_zip_and_txt_are_read_alike(tmp_path: Path) -> None:
    txt = tmp_path / "Extraction_Correspondance_MSSante_202601010300.txt"
    txt.write_text(MSS_HEADER + "\n" + "|".join(["y"] * 31) + "\n", encoding="utf-8")
    zpath = tmp_path / "x.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(txt, txt.name)
    for path in (txt, zpath):
        with open_extract(path) as raw:
            assert next(iter(iter_lines(raw)))[2] == ["y"] * 31
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a.txt", "x")
        zf.writestr("b.txt", "y")
    with pytest.raises(InvalidInput, match="expected one extract"):
        open_extract(two)
