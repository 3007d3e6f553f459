"""A running API server follows changes made by another process: cached answers and rendered
resources are dropped, and the search version is re-read, when the directory is refreshed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from caducee.directory.api import build_app
from caducee.directory.server import uvicorn_config
from caducee.directory.store import DirectoryStore
from caducee.directory.synth import SynthResult

HELENE = "810000000017"


def _ids(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [e["resource"]["id"] for e in r.json().get("entry", [])]


def _child_import(store: DirectoryStore, request: pytest.FixtureRequest, path: Path) -> str:
    where = (
        ["--db", str(getattr(store, "path"))]  # noqa: B009  # SQLite only
        if store.engine == "sqlite"
        else ["--dsn", request.getfixturevalue("pg_dsn")]
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "caducee", "directory", "import", str(path), *where],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    return proc.stdout


@pytest.mark.slow
def test_server_follows_an_import_by_another_process(
    store: DirectoryStore,
    synth: SynthResult,
    request: pytest.FixtureRequest,
    server_thread: Any,
    tmp_path: Path,
) -> None:
    # the directory as an earlier release left it (search version 1)
    with store._cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(store._q("UPDATE meta SET v = 1 WHERE k = 'search_version'"))  # type: ignore[attr-defined]
    store._search_version = None  # type: ignore[attr-defined]
    app = build_app(store)
    with server_thread(uvicorn_config(app, "127.0.0.1", 0)) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        query = {"family": "lefevre-dupont", "given": "helene"}
        for _ in range(2):  # the second answer comes from the cache
            assert _ids(httpx.get(f"{base}/Practitioner", params=query)) == [HELENE]
        assert httpx.get(f"{base}/Practitioner/{HELENE}").status_code == 200
        assert store.search_version() == 1
        # another process imports a file without Hélène (and upgrades the search documents)
        lines = synth.ps_path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if f"|{HELENE}|" not in line]
        assert len(kept) < len(lines)
        path = tmp_path / synth.ps_path.name
        path.write_text("".join(kept), encoding="utf-8")
        report = _child_import(store, request, path)
        assert "1 removed" in report
        assert _ids(httpx.get(f"{base}/Practitioner", params=query)) == []
        assert httpx.get(f"{base}/Practitioner/{HELENE}").status_code == 404
        assert store.search_version() >= 3
