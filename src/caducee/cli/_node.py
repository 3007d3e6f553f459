"""Helpers shared by the operator's command groups: config loading, storage sessions, secrets."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from caducee.config.model import NodeConfig, load_config
from caducee.core.errors import InvalidInput
from caducee.storage import open_storage
from caducee.storage.interfaces import Storage

__all__ = ["add_config_arg", "node_config", "parse_size", "read_password", "with_storage"]

T = TypeVar("T")


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=os.environ.get("CADUCEE_CONFIG"),
        required="CADUCEE_CONFIG" not in os.environ,
        help="the node's TOML file (default: $CADUCEE_CONFIG)",
    )


def node_config(args: argparse.Namespace) -> NodeConfig:
    return load_config(Path(args.config))


def with_storage(cfg: NodeConfig, action: Callable[[Storage], Awaitable[T]]) -> T:
    """Runs ``action`` with the node's storage open (migrations applied), then closes it."""

    async def run() -> T:
        storage = await open_storage(cfg)
        try:
            return await action(storage)
        finally:
            await storage.close()

    return asyncio.run(run())


def parse_size(text: str) -> int:
    """``0``, ``2048``, ``500K``, ``100M``, ``2G`` (binary multiples) -> bytes."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if m is None:
        raise InvalidInput(f"not a size: {text!r} (use e.g. 500M or 2G)")
    mult = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2).upper()]
    return int(m.group(1)) * mult


def read_password(args: argparse.Namespace, *, prompt: str = "Password: ") -> str:
    """From --password-file, --password-env, or typed twice on a terminal; never argv."""
    if getattr(args, "password_file", None):
        lines = Path(args.password_file).read_text(encoding="utf-8").splitlines()
        value = lines[0].strip() if lines else ""
    elif getattr(args, "password_env", None):
        value = os.environ.get(args.password_env, "")
        if not value:
            raise InvalidInput(f"environment variable {args.password_env} is empty or not set")
    elif sys.stdin.isatty():
        value = getpass.getpass(prompt)
        if getpass.getpass("Again: ") != value:
            raise InvalidInput("the two passwords differ")
    else:
        raise InvalidInput("give the password with --password-file or --password-env")
    if len(value) < 8:
        raise InvalidInput("password too short (8 characters at least)")
    return value


def add_password_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--password-file", type=Path, help="read the password from this file")
    group.add_argument("--password-env", metavar="VAR", help="read it from this variable")
