"""The public extracts of the Annuaire Santé, byte for byte (notes §6.3).

- ``PS_LibreAcces_Personne_activite``: one line per activity (situation d'exercice), 52
  pipe-separated columns and a trailing ``|``, UTF-8.
- ``Extraction_Correspondance_MSSante``: one line per mailbox (BAL), 31 pipe-separated columns.

Both come as a ZIP (the ANS download service) or as the bare ``.txt``. Parsing is a pure function
over one line; :func:`iter_lines` reads either container and yields ``(line_number, fields)``
or ``(line_number, error)`` so an importer can report a bad line with its number and go on.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from caducee.core.errors import InvalidInput

__all__ = [
    "MSS_COLUMNS",
    "MSS_HEADER",
    "PS_COLUMNS",
    "PS_HEADER",
    "BadLine",
    "ExtractKind",
    "detect_kind",
    "format_line",
    "iter_lines",
    "open_extract",
    "read_records",
]

PS_COLUMNS: Final[tuple[str, ...]] = (
    "Type d'identifiant PP",
    "Identifiant PP",
    "Identification nationale PP",
    "Code civilité d'exercice",
    "Libellé civilité d'exercice",
    "Code civilité",
    "Libellé civilité",
    "Nom d'exercice",
    "Prénom d'exercice",
    "Code profession",
    "Libellé profession",
    "Code catégorie professionnelle",
    "Libellé catégorie professionnelle",
    "Code type savoir-faire",
    "Libellé type savoir-faire",
    "Code savoir-faire",
    "Libellé savoir-faire",
    "Code mode exercice",
    "Libellé mode exercice",
    "Numéro SIRET site",
    "Numéro SIREN site",
    "Numéro FINESS site",
    "Numéro FINESS établissement juridique",
    "Identifiant technique de la structure",
    "Raison sociale site",
    "Enseigne commerciale site",
    "Complément destinataire (coord. structure)",
    "Complément point géographique (coord. structure)",
    "Numéro Voie (coord. structure)",
    "Indice répétition voie (coord. structure)",
    "Code type de voie (coord. structure)",
    "Libellé type de voie (coord. structure)",
    "Libellé Voie (coord. structure)",
    "Mention distribution (coord. structure)",
    "Bureau cedex (coord. structure)",
    "Code postal (coord. structure)",
    "Code commune (coord. structure)",
    "Libellé commune (coord. structure)",
    "Code pays (coord. structure)",
    "Libellé pays (coord. structure)",
    "Téléphone (coord. structure)",
    "Téléphone 2 (coord. structure)",
    "Télécopie (coord. structure)",
    "Adresse e-mail (coord. structure)",
    "Code Département (structure)",
    "Libellé Département (structure)",
    "Ancien identifiant de la structure",
    "Autorité d'enregistrement",
    "Code secteur d'activité",
    "Libellé secteur d'activité",
    "Code section tableau pharmaciens",
    "Libellé section tableau pharmaciens",
)
PS_HEADER: Final[str] = "|".join(PS_COLUMNS) + "|"

MSS_COLUMNS: Final[tuple[str, ...]] = (
    "Type de BAL",
    "Adresse BAL",
    "Type Identifiant PP",
    "Identifiant PP",
    "Identification nationale PP",
    "Type identifiant structure",
    "Identification Structure",
    "Service de rattachement",
    "Civilité d'exercice",
    "Nom d'exercice",
    "Prénom d'exercice",
    "Catégorie profession",
    "Libellé de catégorie profession",
    "Code Profession",
    "Libellé Profession",
    "Code savoir-faire",
    "Libellé savoir-faire",
    "Dématérialisation",
    "Raison Sociale structure BAL",
    "Enseigne commerciale structure BAL",
    "L2COMPLEMENTLOCALISATION structure BAL",
    "L3COMPLEMENTDISTRIBUTION structure BAL",
    "L4NUMEROVOIE structure BAL",
    "L4COMPLEMENTNUMEROVOIE structure BAL",
    "NL4TYPEVOIE structure BAL",
    "L4LIBELLEVOIE structure BAL",
    "L5LIEUDITMENTION structure BAL",
    "L6LIGNEACHEMINEMENT structure BAL",
    "Code postal structure BAL",
    "Département structure BAL",
    "Pays structure BAL",
)
MSS_HEADER: Final[str] = "|".join(MSS_COLUMNS)


class ExtractKind:
    """The two extract formats, with their column count and canonical header."""

    PS: Final = "ps"
    MSS: Final = "mss"


_NCOLS = {ExtractKind.PS: len(PS_COLUMNS), ExtractKind.MSS: len(MSS_COLUMNS)}


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that could not be parsed: its 1-based number in the file and why."""

    number: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.reason}"


def _norm_header(name: str) -> str:
    name = name.strip().lstrip("\ufeff").casefold()
    return name.removesuffix(" structure bal")


def detect_kind(header: str) -> str:
    """Which extract a header line belongs to; :class:`InvalidInput` when neither."""
    cols = [_norm_header(c) for c in header.rstrip("\r\n").split("|")]
    if cols and cols[-1] == "":
        cols.pop()
    if cols == [_norm_header(c) for c in PS_COLUMNS]:
        return ExtractKind.PS
    if cols == [_norm_header(c) for c in MSS_COLUMNS]:
        return ExtractKind.MSS
    raise InvalidInput(
        f"line 1: unknown header ({len(cols)} columns, starts with {header[:40]!r}); expected "
        "PS_LibreAcces_Personne_activite or Extraction_Correspondance_MSSante"
    )


def format_line(fields: list[str] | tuple[str, ...], kind: str) -> str:
    """One line of the given extract (no newline), as the ANS writes it."""
    ncols = _NCOLS[kind]
    if len(fields) != ncols:
        raise ValueError(f"{len(fields)} fields, expected {ncols}")
    for f in fields:
        if "|" in f or "\n" in f:
            raise ValueError("a field may not contain '|' or a newline")
    text = "|".join(fields)
    return text + "|" if kind == ExtractKind.PS else text


def open_extract(path: Path) -> IO[bytes]:
    """Open a downloaded extract: the ``.txt`` itself or the ZIP holding one ``.txt``."""
    if zipfile.is_zipfile(path):
        zf = zipfile.ZipFile(path)
        members = [m for m in zf.infolist() if not m.is_dir()]
        txt = [m for m in members if m.filename.lower().endswith((".txt", ".csv"))] or members
        if len(txt) != 1:
            raise InvalidInput(
                f"{path.name}: expected one extract file in the ZIP, found {len(txt)}"
            )
        return zf.open(txt[0])
    return path.open("rb")


def iter_lines(stream: IO[bytes]) -> Iterator[tuple[str, int, list[str] | BadLine]]:
    """Yield ``(kind, line_number, fields | BadLine)`` for each data line of an extract.

    The first line must be one of the two known headers. Blank lines are skipped; a line that
    is not UTF-8 or has the wrong column count becomes a :class:`BadLine`.
    """
    kind, records = read_records(stream)
    for number, fields, _ in records:
        yield kind, number, fields


def read_records(
    stream: IO[bytes], on_bytes: Callable[[int], None] | None = None
) -> tuple[str, Iterator[tuple[int, list[str] | BadLine, bytes]]]:
    """The kind of an extract and its data lines as ``(line_number, fields | BadLine, raw)``.

    ``raw`` is the UTF-8 of ``"|".join(fields)`` (the line without its trailing ``|``), what
    :func:`caducee.directory.rows.line_hash` hashes, taken from the bytes read instead of
    joined again. The stream is read in blocks of 1 MiB (``on_bytes`` is called with the
    total read after each), which costs far less per line than iterating over the stream.
    """
    first = stream.readline()
    if not first:
        raise InvalidInput("empty extract (no header line)")
    try:
        header = first.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("line 1: header is not UTF-8") from exc
    kind = detect_kind(header)
    return kind, _records(stream, _NCOLS[kind], len(first), on_bytes)


def _records(
    stream: IO[bytes], ncols: int, done: int, on_bytes: Callable[[int], None] | None
) -> Iterator[tuple[int, list[str] | BadLine, bytes]]:
    number = 1
    rest = b""
    while True:
        block = stream.read(1 << 20)
        done += len(block)
        if on_bytes is not None:
            on_bytes(done)
        if block:
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
        else:
            lines, rest = ([rest] if rest else []), b""
        for raw in lines:
            number += 1
            if raw[-1:] == b"\r":
                raw = raw[:-1]
            if not raw:
                continue
            try:
                fields = raw.decode("utf-8").split("|")
            except UnicodeDecodeError:
                yield number, BadLine(number, "not valid UTF-8"), raw
                continue
            n = len(fields)
            if n == ncols + 1 and not fields[-1]:
                fields.pop()
                raw = raw[:-1]
            elif n != ncols:
                n -= 1 if fields[-1] == "" else 0
                yield number, BadLine(number, f"{n} columns, expected {ncols}"), raw
                continue
            yield number, fields, raw
        if not block:
            return
