"""The ``caducee`` command.

Each command group lives in its own module of this package and exposes
``register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None``; every
sub-command sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an
exit code). Errors are one clear line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import cast

from caducee import __version__
from caducee.core.errors import CaduceeError

__all__ = ["build_parser", "main"]

# Command-group modules, in help order. A group whose module is not present yet is left out.
GROUPS: tuple[str, ...] = (
    "demo",
    "sandbox",
    "operator",
    "mailbox",
    "queue",
    "trust",
    "authority",
    "conformance",
    "directory",
    "documents",
    "send",
    "integrate",
    "idp",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caducee",
        description="Caducée: secure health messaging (MSSanté-style trust space).",
    )
    parser.add_argument("--version", action="version", version=f"caducee {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in GROUPS:
        try:
            module = importlib.import_module(f"caducee.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"caducee.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(cast(Callable[[argparse.Namespace], int], func)(args))
    except KeyboardInterrupt:
        print("caducee: interrupted", file=sys.stderr)
        return 130
    except CaduceeError as exc:
        if args.debug:
            raise
        print(f"caducee: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if args.debug:
            raise
        print(
            f"caducee: error: {exc.strerror or exc} ({exc.filename or ''})".rstrip(" ()"),
            file=sys.stderr,
        )
        return 1
