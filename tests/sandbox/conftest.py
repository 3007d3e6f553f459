"""Shared helpers of the sandbox tests."""

from __future__ import annotations

import secrets
import socket

import pytest


def free_port_base() -> int:
    """A port base whose operator ports (base..base+20) and service ports (authority +900,
    +901, directory +902) are free now (the sandbox listens on fixed offsets)."""
    for _ in range(200):
        base = 30000 + secrets.randbelow(250) * 100
        try:
            for port in [*range(base, base + 20), *range(base + 900, base + 903)]:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


@pytest.fixture
def port_base() -> int:
    return free_port_base()
