"""``caducee sandbox``: create and run a whole trust space on one machine (issue 2 §8)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from caducee.core.errors import CaduceeError

__all__ = ["register"]


def _init(args: argparse.Namespace) -> int:
    from caducee.sandbox.init import init_sandbox

    info = init_sandbox(
        args.dir, operators=args.operators, port_base=args.port_base, host=args.host
    )
    print(f"sandbox created in {info['directory']} ({len(info['operators'])} operators)")
    for op in info["operators"]:
        print(
            f"  {op['name']:<14} {', '.join(op['domains'])}: relay {op['relay']}, "
            f"submission {op['submission']}, imap {op['imap']}, imaps {op['imaps']}"
        )
    print(f"endpoints, certificates and demo accounts: {info['directory']}/sandbox.json")
    print(f"run it with: caducee sandbox run --dir {args.dir}")
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module("caducee.sandbox.run")
    except ModuleNotFoundError as exc:
        if exc.name == "caducee.sandbox.run":
            raise CaduceeError("sandbox run is not available in this build") from exc
        raise
    result = module.run_sandbox(args.dir)
    return int(result) if isinstance(result, int) else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from caducee.sandbox.init import DEFAULT_PORT_BASE

    parser = sub.add_parser("sandbox", help="a whole trust space on this machine")
    ssub = parser.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND", required=True)
    p = ssub.add_parser(
        "init",
        help="create CA, certificates, liste blanche, operators and demo accounts",
        description=(
            "Creates a sandbox trust space in DIR: an IGC-Santé-shaped CA (marked SANDBOX), "
            "CRLs, per operator a server and a client certificate, a key ring, a node "
            "configuration and storage with demo mailboxes of the four types (random "
            "passwords), a liste blanche in the real schema, and DIR/sandbox.json (mode 0600). "
            "Operator i uses ports P+10*i + 0 relay, 1 submission, 2 imap, 3 imaps, 4 web."
        ),
    )
    p.add_argument("--dir", type=Path, required=True, help="new or empty directory")
    p.add_argument("--operators", type=int, default=2, help="number of operators (default 2)")
    p.add_argument(
        "--port-base",
        type=int,
        default=DEFAULT_PORT_BASE,
        help=f"first port (default {DEFAULT_PORT_BASE})",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.set_defaults(func=_init)
    r = ssub.add_parser(
        "run",
        help="run every operator of a sandbox in one process until interrupted",
        description="Runs every operator described by DIR/sandbox.json until Ctrl-C.",
    )
    r.add_argument("--dir", type=Path, required=True, help="a directory made by sandbox init")
    r.set_defaults(func=_run)
