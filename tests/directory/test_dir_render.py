"""Per-worker caches of the FHIR API: whole answers bounded in bytes, emptied by a new
generation; JSON bytes as the standard library writes them."""

from __future__ import annotations

import json

from caducee.directory.render import ResultCache, dumps


def test_result_cache_generation_and_bound() -> None:
    cache = ResultCache(max_bytes=16 * 100)
    cache.put("a", 1, b"x" * 100)  # generation 1 never seen by get: not stored
    assert cache.get("a", 1) is None
    cache.put("a", 1, b"x" * 100)
    assert cache.get("a", 1) == b"x" * 100
    assert cache.get("a", 2) is None  # data changed: everything forgotten
    cache.put("a", 1, b"x" * 100)  # computed under the old generation: dropped
    assert cache.get("a", 2) is None
    cache.put("big", 2, b"y" * 101)  # over a sixteenth of the budget: not kept
    assert cache.get("big", 2) is None
    for i in range(20):
        cache.put(i, 2, b"z" * 100)
    kept = [i for i in range(20) if cache.get(i, 2) is not None]
    assert kept == list(range(4, 20))  # least recently used went first, budget respected


def test_dumps_is_compact_utf8_json() -> None:
    obj = {"name": [{"family": "Lefèvre-Dupont", "given": ["Hélène"]}], "n": 3, "ok": True}
    assert dumps(obj) == json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
