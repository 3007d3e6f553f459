"""Import of the public extracts, full or as a daily diff (notes §6.3).

Two passes over the file: the first validates every line and computes, per person (IDNPS) or
per mailbox address, an order-independent hash of its lines; comparing with the stored hashes
gives the adds, changes and removals. The second pass writes only what changed, in a single
transaction, so a refresh never half-applies. Bad lines are reported with their number and
skipped; too many bad lines, or a file that would remove too large a share of the directory
(a truncated download), aborts before anything is written.
"""

from __future__ import annotations

import time
import zipfile
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from caducee.core.errors import InvalidInput
from caducee.directory.extracts import BadLine, ExtractKind, detect_kind, open_extract, read_records
from caducee.directory.model import MAILBOX_TYPES, idnst
from caducee.directory.progress import Progress
from caducee.directory.rows import (
    HASH_MASK,
    SEARCH_VERSION,
    activity_id,
    activity_row,
    line_hash,
    mailbox_org_row,
    mailbox_row,
    org_row,
    person_row,
    raw_hash,
)
from caducee.directory.store import DirectoryStore, ImportSession

__all__ = ["ImportReport", "import_extract"]

_BATCH = 5000


@dataclass(slots=True)
class ImportReport:
    """What an import did: counts per entity (persons or mailboxes) and the bad lines."""

    kind: str
    lines: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    bad_count: int = 0
    bad: list[BadLine] = field(default_factory=list)
    orgs_pruned: int = 0
    upgraded: int = 0  # search documents brought to the current version
    seconds: float = 0.0

    def summary(self) -> str:
        entity = "persons" if self.kind == ExtractKind.PS else "mailboxes"
        return (
            f"{self.kind}: {self.lines} lines; {entity}: {self.added} added, {self.changed}"
            f" changed, {self.removed} removed, {self.unchanged} unchanged; {self.bad_count}"
            f" bad lines skipped; {self.seconds:.1f}s"
            + (f"; {self.upgraded} search documents upgraded" if self.upgraded else "")
        )


def _size(path: Path) -> int:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return sum(m.file_size for m in zf.infolist())
    return path.stat().st_size


def _records(path: Path, bar: Progress | None) -> Iterator[tuple[int, list[str] | BadLine, bytes]]:
    """``(line number, fields | BadLine, raw)`` of every data line (see ``read_records``)."""
    with open_extract(path) as raw:
        _, records = read_records(raw, None if bar is None else bar.update)
        yield from records


def _check(kind: str, number: int, f: list[str]) -> BadLine | None:
    if kind == ExtractKind.PS:
        if not f[2] or not f[1]:
            return BadLine(number, "missing person identifier")
        if not f[7]:
            return BadLine(number, "missing name")
        return None
    if f[0] not in MAILBOX_TYPES:
        return BadLine(number, f"unknown mailbox type {f[0][:10]!r}")
    if "@" not in f[1]:
        return BadLine(number, "invalid mailbox address")
    return None


def _valid(
    kind: str, number: int, f: list[str] | BadLine, raw: bytes
) -> tuple[int, BadLine | None]:
    """(line hash, None) of a valid line, else (0, why); an MSS address is put in lower case
    first (the hash is that of the fields as stored)."""
    if isinstance(f, BadLine):
        return 0, f
    bad = _check(kind, number, f)
    if bad is not None:
        return 0, bad
    if kind == ExtractKind.MSS:
        low = f[1].lower()
        if low != f[1]:
            f[1] = low
            return line_hash(f), None
    return raw_hash(raw), None


def _note_bad(report: ImportReport, bad: BadLine, max_bad: int | None) -> None:
    """Count a bad line; with ``max_bad``, raise as soon as there are too many."""
    report.bad_count += 1
    if len(report.bad) < 100:
        report.bad.append(bad)
    if max_bad is not None and report.bad_count > max_bad:
        raise InvalidInput(
            f"{report.bad_count} bad lines (more than {max_bad}); first: {report.bad[0]};"
            " nothing imported"
        )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def import_extract(
    store: DirectoryStore,
    path: Path,
    *,
    progress: bool = False,
    max_bad: int = 1000,
    max_removal_ratio: float = 0.5,
    force: bool = False,
    now: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> ImportReport:
    """Import one extract file (ZIP or TXT), detected from its header; return the report.

    Raises :class:`InvalidInput` (and writes nothing) on an unknown header, more than
    ``max_bad`` bad lines, or when the refresh would remove more than ``max_removal_ratio`` of
    the stored entries (unless ``force``).
    """
    start = time.monotonic()
    stamp = now or _now()
    with open_extract(path) as raw:
        kind = detect_kind(raw.readline().decode("utf-8", "replace"))
    report = ImportReport(kind)
    if kind == ExtractKind.PS and store.counts()["person"] == 0:
        _first_load(store, path, report, progress, max_bad, stamp)
    elif kind == ExtractKind.MSS and not store.mailbox_hashes():
        _first_mailboxes(store, path, report, progress, max_bad, stamp)
    else:
        _refresh(store, path, report, progress, max_bad, max_removal_ratio, force, stamp)
    report.seconds = time.monotonic() - start
    if echo is not None:
        echo(report.summary())
    return report


def _refresh(
    store: DirectoryStore, path: Path, report: ImportReport, progress: bool, max_bad: int,
    max_removal_ratio: float, force: bool, stamp: str,
) -> None:  # fmt: skip
    """A diff against what is stored: hash pass, then the changes in one transaction."""
    kind = report.kind
    total = _size(path)
    bar1 = Progress(total, "checking", enabled=progress)
    groups: dict[str, int] = {}
    counts: dict[str, int] = {}
    hashes = array("q")  # per valid line, reused by the second pass
    col = 2 if kind == ExtractKind.PS else 1
    for number, f, raw in _records(path, bar1):
        report.lines += 1
        lh, bad = _valid(kind, number, f, raw)
        if bad is not None:
            _note_bad(report, bad, None)
            continue
        key = f[col]  # type: ignore[index]  # a valid line is a list of fields
        hashes.append(lh)
        groups[key] = (groups.get(key, 0) + lh) & HASH_MASK
        counts[key] = counts.get(key, 0) + 1
    bar1.close()
    if report.bad_count > max_bad:
        raise InvalidInput(
            f"{report.bad_count} bad lines (more than {max_bad}); first: {report.bad[0]}; "
            "nothing imported"
        )
    old = store.person_hashes() if kind == ExtractKind.PS else store.mailbox_hashes()
    removed = [k for k in old if k not in groups]
    if old and not force and len(removed) > max_removal_ratio * len(old):
        raise InvalidInput(
            f"the file would remove {len(removed)} of {len(old)} entries (over"
            f" {max_removal_ratio:.0%}): a truncated download? nothing imported (use --force)"
        )
    added = {k for k in groups if k not in old}
    changed = {k for k in groups if k in old and old[k] != groups[k]}
    report.added, report.changed, report.removed = len(added), len(changed), len(removed)
    report.unchanged = len(groups) - len(added) - len(changed)
    targets = added | changed
    bar2 = Progress(total, "importing", enabled=progress)
    with store.importing() as session:
        if kind == ExtractKind.PS:
            if store.search_version() < SEARCH_VERSION:  # imported by an earlier version
                report.upgraded = session.upgrade_search()
            session.delete_persons(sorted(changed | set(removed)))
            if targets:  # nothing new: no second pass over the file
                _write_persons(session, path, bar2, targets, counts, hashes, stamp)
        else:
            session.delete_mailboxes(sorted(changed | set(removed)), source="extract")
            if targets:
                _write_mailboxes(session, store, path, bar2, targets, hashes, stamp)
        if old:
            report.orgs_pruned = session.prune_orgs()
    bar2.close()


class _PersonWriter:
    """Turns complete groups of PS lines (one person) into rows, written in batches."""

    def __init__(self, session: ImportSession, stamp: str, bulk: bool) -> None:
        self.session, self.stamp, self.bulk = session, stamp, bulk
        self.persons: list[tuple[object, ...]] = []
        self.acts: list[tuple[object, ...]] = []
        self.orgs: dict[str, tuple[object, ...]] = {}
        self.seen_orgs: set[str] = set()
        self.written = 0

    def add(self, entry: list[tuple[list[str], int]]) -> None:
        h = 0
        for _, lh in entry:
            h += lh
        self.persons.append(person_row([line for line, _ in entry], h & HASH_MASK, self.stamp))
        ids: set[str] = set()
        acts, seen = self.acts, self.seen_orgs
        for line, lh in entry:
            okey = idnst(line[21], line[19], line[23])
            acts.append(activity_row(line, activity_id(line, ids, lh), okey))
            if not okey or okey in seen:
                continue
            seen.add(okey)
            o = org_row(line, self.stamp)
            if o is not None:
                self.orgs[okey] = o
        self.written += 1
        if len(self.persons) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        self.session.insert_persons(self.persons)
        self.session.insert_activities(self.acts)
        if self.orgs:
            self.session.upsert_orgs(list(self.orgs.values()))
        self.persons.clear()
        self.acts.clear()
        self.orgs.clear()
        if not self.bulk:
            self.seen_orgs.clear()


def _write_persons(
    session: ImportSession,
    path: Path,
    bar: Progress,
    targets: set[str],
    counts: dict[str, int],
    line_hashes: array[int],
    stamp: str,
) -> None:
    pending: dict[str, list[tuple[list[str], int]]] = {}
    writer = _PersonWriter(session, stamp, False)
    valid = -1
    for number, f, _ in _records(path, bar):
        if isinstance(f, BadLine) or _check(ExtractKind.PS, number, f) is not None:
            continue
        valid += 1
        key = f[2]
        if key not in targets:
            continue
        entry = pending.setdefault(key, [])
        entry.append((f, line_hashes[valid]))
        if len(entry) < counts[key]:
            continue
        del pending[key]
        writer.add(entry)
    writer.flush()


def _first_load(
    store: DirectoryStore, path: Path, report: ImportReport, progress: bool, max_bad: int,
    stamp: str,
) -> None:  # fmt: skip
    """First load of a persons file into an empty store, in one pass over the file.

    A person's lines are normally consecutive; a person whose lines are not is noted, and
    rewritten at the end from a second read that keeps only their lines. Too many bad lines
    raise inside the transaction, so nothing is written.
    """
    bar = Progress(_size(path), "importing", enabled=progress)
    written: set[str] = set()
    late: set[str] = set()
    with store.importing(bulk=True) as session:
        writer = _PersonWriter(session, stamp, bulk=True)
        key = ""  # never a valid identifier
        entry: list[tuple[list[str], int]] = []
        lines = 0

        def close_group() -> None:
            if key in written:
                late.add(key)
            else:
                written.add(key)
                writer.add(entry)

        for number, f, raw in _records(path, bar):
            lines += 1
            # the common case inline: a well-formed line with its identifiers and name
            if isinstance(f, BadLine) or not (f[1] and f[2] and f[7]):
                bad = f if isinstance(f, BadLine) else _check(ExtractKind.PS, number, f)
                _note_bad(report, bad or BadLine(number, "?"), max_bad)
                continue
            if f[2] != key:
                if entry:
                    close_group()
                key, entry = f[2], []
            entry.append((f, raw_hash(raw)))
        if entry:
            close_group()
        report.lines = lines
        writer.flush()
        if late:
            session.delete_persons(sorted(late))
            groups: dict[str, list[tuple[list[str], int]]] = {k: [] for k in late}
            for number, f, raw in _records(path, None):
                lh, bad = _valid(ExtractKind.PS, number, f, raw)
                if bad is None and f[2] in groups:  # type: ignore[index]
                    groups[f[2]].append((f, lh))  # type: ignore[index,arg-type]
            for k in sorted(groups):
                writer.add(groups[k])
            writer.flush()
    bar.close()
    report.added = len(written)


def _write_mailboxes(
    session: ImportSession,
    store: DirectoryStore,
    path: Path,
    bar: Progress,
    targets: set[str],
    line_hashes: array[int],
    stamp: str,
) -> None:
    _mailbox_lines(session, store, path, bar, None, targets, line_hashes, stamp)


def _mailbox_lines(
    session: ImportSession, store: DirectoryStore, path: Path, bar: Progress,
    report: ImportReport | None, targets: set[str] | None, line_hashes: array[int] | None,
    stamp: str, max_bad: int | None = None,
) -> set[str]:  # fmt: skip
    """Write the mailboxes of the file (those in ``targets`` when given); return the addresses
    seen. With ``report``, bad lines are counted there (and raise above ``max_bad``)."""
    skip = store.operator_addresses()
    seen: set[str] = set()
    rows: list[tuple[Any, ...]] = []
    orgs: dict[str, tuple[object, ...]] = {}
    valid = -1
    for number, f, raw in _records(path, bar):
        if report is not None:
            report.lines += 1
        lh, bad = _valid(ExtractKind.MSS, number, f, raw)
        if bad is not None:
            if report is not None:
                _note_bad(report, bad, max_bad)
            continue
        assert not isinstance(f, BadLine)  # noqa: S101  # narrowed by _valid
        valid += 1
        addr = f[1]
        if targets is None:
            seen.add(addr)
        elif addr not in targets:
            continue
        if addr in skip:
            continue
        rows.append(mailbox_row(f, lh if line_hashes is None else line_hashes[valid], stamp))
        o = mailbox_org_row(f, stamp)
        if o is not None:
            orgs.setdefault(str(o[0]), o)
        if len(rows) >= _BATCH:
            session.insert_mailboxes(rows)
            rows.clear()
    session.insert_mailboxes(rows)
    if orgs:
        session.upsert_orgs(list(orgs.values()), only_new=True)
    return seen


def _first_mailboxes(
    store: DirectoryStore, path: Path, report: ImportReport, progress: bool, max_bad: int,
    stamp: str,
) -> None:  # fmt: skip
    """First load of a mailbox file (no extract mailbox stored yet), in one pass: with nothing
    to compare, every address is an addition. Too many bad lines raise inside the
    transaction, so nothing is written."""
    bar = Progress(_size(path), "importing", enabled=progress)
    with store.importing() as session:
        added = _mailbox_lines(session, store, path, bar, report, None, None, stamp, max_bad)
    bar.close()
    report.added = len(added)
