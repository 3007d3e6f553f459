"""A directory for the sandbox: a generated population plus the sandbox's own accounts."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from caducee.directory.importer import import_extract
from caducee.directory.open import open_store
from caducee.directory.store import DirectoryStore
from caducee.directory.synth import ExtraPerson, generate

__all__ = ["ExtraPerson", "SandboxDirectory", "build_sandbox_directory"]


@dataclass(frozen=True, slots=True)
class SandboxDirectory:
    """The store, and the IDNPS of each extra person in the order given."""

    store: DirectoryStore
    extra_ids: tuple[str, ...]


def build_sandbox_directory(
    path: Path,
    extra_people: Sequence[ExtraPerson] = (),
    *,
    persons: int = 2000,
    seed: int = 1,
    dsn: str | None = None,
) -> SandboxDirectory:
    """Create (or refresh) the directory at ``path`` (SQLite; PostgreSQL when ``dsn``) with
    ``persons`` generated professionals plus ``extra_people`` (each with its PER mailbox when
    ``mailbox`` is set). Deterministic for a given seed."""
    store = open_store(path, dsn)
    with tempfile.TemporaryDirectory(prefix="caducee-dir-") as tmp:
        files = generate(Path(tmp), persons, seed=seed, extra=extra_people)
        import_extract(store, files.ps_path, force=True)
        import_extract(store, files.mss_path, force=True)
    return SandboxDirectory(store, files.extra_ids)
