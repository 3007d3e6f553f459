"""Fixtures shared by the whole suite.

- ``shared_dir``: ``../shared`` beside the clone (corpora and reference). Tests that need it
  skip with a clear reason when it is absent (a user's clone); in CI it is present.
- ``pg_dsn``: a fresh, empty PostgreSQL database for one test, dropped afterwards. Outside CI
  the PostgreSQL tests skip when no server answers; with ``CADUCEE_REQUIRE_POSTGRES=1`` (set by
  ``.ci/run``) they fail instead, so CI always runs them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_DSN = os.environ.get("CADUCEE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _find_shared() -> Path | None:
    env = os.environ.get("CADUCEE_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [ROOT.parent / "shared", ROOT.parent.parent / "shared"]
    for cand in candidates:
        if (cand / "corpora").is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    found = _find_shared()
    if found is None:
        pytest.skip("../shared (test corpora) is not beside this clone")
    return found


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    problem = _pg_available()
    if problem is not None:
        if os.environ.get("CADUCEE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but not reachable at {PG_ADMIN_DSN}: {problem}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {problem}")
    return PG_ADMIN_DSN


@pytest.fixture
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    import psycopg

    name = f"caducee_test_{secrets.token_hex(6)}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_admin_dsn.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
