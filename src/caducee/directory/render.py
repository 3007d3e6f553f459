"""Rendered FHIR resources as JSON bytes, cached per process.

Building 50 resources from rows on each request costs far more than the search itself; the
cache keeps each resource's JSON (public and authenticated views separately) until the data
changes. Every import and every publication bumps the store's generation; the cache empties
itself when it sees a new one, so a worker never serves a resource older than the last write
it could have seen when the request started.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson

from caducee.directory import fhir
from caducee.directory.store import DirectoryStore

__all__ = ["Rendered", "ResourceCache", "ResultCache", "dumps", "render_records", "render_rows"]

Row = tuple[Any, ...]
Rendered = tuple[bytes, tuple[str, ...]]  # JSON, references ("Practitioner/x", ...)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (the bytes ``json.dumps(ensure_ascii=False, separators=(",", ":"))``
    gives for our str/int/bool/list/dict resources), with orjson."""
    return orjson.dumps(obj)


class ResultCache:
    """Whole answers (bundle bytes) keyed by the exact request (type, query items in order,
    view, base URL), bounded in bytes, emptied when the store's generation changes: a repeated
    search costs a dictionary lookup instead of a query and a bundle."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._bytes = 0
        self._generation = -1
        self._lock = threading.Lock()
        self._items: OrderedDict[Any, bytes] = OrderedDict()

    def get(self, key: Any, generation: int) -> bytes | None:
        with self._lock:
            if generation != self._generation:
                self._items.clear()
                self._bytes = 0
                self._generation = generation
                return None
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: Any, generation: int, body: bytes) -> None:
        if len(body) > self.max_bytes // 16:
            return
        with self._lock:
            if generation != self._generation or key in self._items:
                return
            self._items[key] = body
            self._bytes += len(body)
            while self._bytes > self.max_bytes:
                _k, old = self._items.popitem(last=False)
                self._bytes -= len(old)


class ResourceCache:
    """LRU of rendered resources keyed by (type, id, authenticated)."""

    def __init__(self, store: DirectoryStore, size: int = 50_000) -> None:
        self.store = store
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, str, bool], Rendered] = OrderedDict()
        self._generation = -1

    def refresh(self, generation: int | None = None) -> None:
        """Forget everything if the data changed since the last look."""
        gen = self.store.generation() if generation is None else generation
        if gen != self._generation:
            with self._lock:
                self._items.clear()
                self._generation = gen

    def get(self, kind: str, ids: Sequence[str], authed: bool) -> list[tuple[str, Rendered]]:
        found: dict[str, Rendered] = {}
        missing: list[str] = []
        with self._lock:
            for i in ids:
                hit = self._items.get((kind, i, authed))
                if hit is None:
                    missing.append(i)
                else:
                    self._items.move_to_end((kind, i, authed))
                    found[i] = hit
        if missing:
            fresh = self._render(kind, missing, authed)
            with self._lock:
                for i, item in fresh.items():
                    self._items[(kind, i, authed)] = item
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            found.update(fresh)
        return [(i, found[i]) for i in ids if i in found]

    def _render(self, kind: str, ids: list[str], authed: bool) -> dict[str, Rendered]:
        rows = getattr(self.store, kind_rows[kind], None)
        if rows is None:  # a store without row access: through the records
            return render_records(self.store, kind, ids, authed)
        return render_rows(kind, rows(ids), authed)


kind_rows = {"Practitioner": "person_rows", "Organization": "org_rows",
             "PractitionerRole": "role_rows"}  # fmt: skip


def render_rows(kind: str, fetched: Any, authed: bool) -> dict[str, Rendered]:
    """Resources of ``kind`` from the rows of the store's ``*_rows`` method (see ``sqlbase``)."""
    out: dict[str, Rendered] = {}
    box = fhir.box_from_row
    if kind == "Practitioner":
        people, act_rows, box_rows = fetched
        acts: dict[str, list[Row]] = {}
        for a in act_rows:
            acts.setdefault(a[0], []).append(a[1:])
        boxes: dict[Any, list[Any]] = {}
        for m in box_rows:
            boxes.setdefault(m[0], []).append(box(m, authed))
        for p in people:
            res = fhir.practitioner_from_rows(p, acts.get(p[0], []), boxes.get(p[0], []))
            out[p[0]] = (dumps(res), ())
    elif kind == "Organization":
        orgs, box_rows = fetched
        boxes = {}
        for m in box_rows:
            boxes.setdefault(m[0], []).append(box(m, authed))
        for o in orgs:
            out[o[0]] = (dumps(fhir.organization_from_row(o, boxes.get(o[0], []), authed)), ())
    elif kind == "PractitionerRole":
        roles, box_rows = fetched
        boxes = {}
        for m in box_rows:
            if m[1]:
                boxes.setdefault((m[0], m[1]), []).append(box(m, authed))
        for a in roles:
            rid, idnps, org_key = a[0], a[1], a[8]
            refs = (f"Practitioner/{idnps}",) + ((f"Organization/{org_key}",) if org_key else ())
            res = fhir.role_from_row(a, boxes.get((idnps, org_key), []) if org_key else [])
            out[rid] = (dumps(res), refs)
    return out


def render_records(store: DirectoryStore, kind: str, ids: list[str],
                   authed: bool) -> dict[str, Rendered]:  # fmt: skip
    """Resources of ``kind`` through the store's records and the record mappings of ``fhir``
    (the reference the row renderer is tested against)."""
    s = store
    out: dict[str, Rendered] = {}
    if kind == "Practitioner":
        for p in s.get_persons(ids):
            out[p.idnps] = (dumps(fhir.practitioner(p, authenticated=authed)), ())
    elif kind == "Organization":
        for o in s.get_orgs(ids):
            out[o.key] = (dumps(fhir.organization(o, authenticated=authed)), ())
    elif kind == "PractitionerRole":
        for a in s.get_roles(ids):
            refs = (f"Practitioner/{a.idnps}",) + (
                (f"Organization/{a.org_key}",) if a.org_key else ()
            )
            out[a.id] = (dumps(fhir.practitioner_role(a, authenticated=authed)), refs)
    return out
