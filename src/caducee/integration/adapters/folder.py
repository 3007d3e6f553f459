"""Watched-folder hand-off: one file per document and a JSON sidecar written last.

``<id>.xml`` (the CDA), optionally ``<id>.pdf``, then ``<id>.json`` (metadata: action,
document and set ids, version, replaced document, type, patient local id, INS and traits).
A deletion writes ``<id>.delete.json``. Every file is written to a temporary name, flushed
and renamed, so the practice software never sees a partial file; writing the same document
again produces the same names and content (idempotent).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

from caducee.integration.adapters import AdapterUnavailable, Delivery

__all__ = ["FolderAdapter", "file_id"]


def file_id(doc_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", doc_id)[:180]


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def sidecar(d: Delivery) -> dict[str, Any]:
    doc = d.doc
    t = doc.patient.traits
    return {
        "action": d.action,
        "control_id": d.control_id,
        "document_id": doc.unique_id,
        "set_id": str(doc.set_id) if doc.set_id else None,
        "version": doc.version,
        "replaces": d.parent_document_id,
        "type": {"code": doc.type_code.code, "display": doc.type_code.display}
        if doc.type_code
        else None,
        "title": doc.title,
        "effective_time": doc.effective_time,
        "confidentiality": doc.confidentiality.code if doc.confidentiality else None,
        "author": {
            "id": str(doc.author.id) if doc.author and doc.author.id else None,
            "family": doc.author.family if doc.author else None,
            "given": doc.author.given if doc.author else None,
            "organisation": doc.author.organisation if doc.author else None,
        },
        "patient": {
            "local_id": d.patient.id,
            "ins": doc.patient.ins.extension if doc.patient.ins else None,
            "ins_oid": doc.patient.ins.root if doc.patient.ins else None,
            "birth_name": t.birth_family,
            "first_birth_forename": t.first_birth_given,
            "birth_date": t.birth_date,
            "sex": t.sex,
        },
        "message": {"from": d.sender, "to": d.recipient, "subject": d.subject},
        "source": d.source,
    }


class FolderAdapter:
    def __init__(self, path: str | Path, *, name: str = "folder") -> None:
        self.name = name
        self.path = Path(path)

    def _write(self, d: Delivery) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fid = file_id(d.doc.unique_id)
        meta = json.dumps(sidecar(d), ensure_ascii=False, indent=2).encode("utf-8")
        if d.action == "delete":
            _atomic_write(self.path / f"{fid}.delete.json", meta)
            return
        _atomic_write(self.path / f"{fid}.xml", d.doc.raw)
        if d.pdf is not None:
            _atomic_write(self.path / f"{fid}.pdf", d.pdf)
        _atomic_write(self.path / f"{fid}.json", meta)

    async def deliver(self, delivery: Delivery) -> None:
        try:
            await asyncio.to_thread(self._write, delivery)
        except OSError as exc:
            raise AdapterUnavailable(f"cannot write to {self.path}: {exc.strerror}") from exc

    async def close(self) -> None:
        return None
