"""Shared helpers of the sandbox tests."""

from __future__ import annotations

import secrets
import socket

import pytest


def free_port_base() -> int:
    """A port base whose operator ports (base..base+20) and service ports (authority +900,
    +901, directory +902) are free now (the sandbox listens on fixed offsets). All of them
    below Linux's ephemeral range (32768-60999): the nodes fetch from the authority while
    others are still binding, and a source port of those connections must not take a port a
    listener is about to bind."""
    for _ in range(200):
        base = 20000 + secrets.randbelow(118) * 100  # all below 32768 (see below)
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
