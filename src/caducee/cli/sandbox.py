"""``caducee sandbox``: create and run a whole trust space on one machine (issue 2 §8)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from caducee.core.errors import CaduceeError

__all__ = ["endpoints", "register"]


def _init(args: argparse.Namespace) -> int:
    from caducee.sandbox.init import init_sandbox

    info = init_sandbox(
        args.dir,
        operators=args.operators,
        port_base=args.port_base,
        host=args.host,
        refresh_seconds=args.refresh_seconds,
    )
    print(f"sandbox created in {info['directory']} ({len(info['operators'])} operators)")
    for op in info["operators"]:
        print(
            f"  {op['name']:<14} {', '.join(op['domains'])}: relay {op['relay']}, "
            f"submission {op['submission']}, imap {op['imap']}, imaps {op['imaps']}"
        )
    print(endpoints(info))
    warning = _ephemeral_overlap(args.port_base)
    if warning:
        print(warning)
    print(f"endpoints, certificates and demo accounts: {info['directory']}/sandbox.json")
    print(f"run it with: caducee sandbox run --dir {args.dir}")
    return 0


def _ephemeral_overlap(port_base: int) -> str | None:
    """A warning when the sandbox ports fall in the kernel's ephemeral (source) port range."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return None
    if port_base <= high and port_base + 910 >= low:
        return (
            f"warning: ports {port_base}-{port_base + 910} overlap the ephemeral port range "
            f"{low}-{high}: a listener may find its port taken by an outgoing connection; "
            "prefer a --port-base below it"
        )
    return None


def endpoints(info: dict[str, Any]) -> str:
    """The authority's and the directory's endpoints, from sandbox.json (for people)."""
    lines = []
    auth = info.get("authority")
    if isinstance(auth, dict):
        lines += [
            f"  authority      liste blanche {auth.get('list_url')}",
            f"                 CRL {auth.get('crl_url')}, OCSP {auth.get('ocsp_url')}",
        ]
        if auth.get("directory"):
            lines.append(
                f"                 revoke an operator: caducee authority operator revoke "
                f"--dir {auth['directory']} --passphrase-file {auth.get('passphrase_file')} "
                "--name NAME"
            )
    node = info.get("directory_node")
    if isinstance(node, dict):
        lines.append(f"  directory      FHIR {node.get('fhir_url')}")
    return "\n".join(lines)


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
            "Operator i uses ports P+10*i + 0 relay, 1 submission, 2 imap, 3 imaps, 4 web; "
            "the trust authority P+900 (HTTPS) and P+901 (HTTP: CRL, OCSP), the directory "
            "P+902 (FHIR over HTTPS)."
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
    p.add_argument(
        "--refresh-seconds",
        type=int,
        default=3600,
        help="how often operators re-fetch the liste blanche and CRLs (default 3600, min 10)",
    )
    p.set_defaults(func=_init)
    r = ssub.add_parser(
        "run",
        help="run every operator of a sandbox in one process until interrupted",
        description="Runs every operator described by DIR/sandbox.json until Ctrl-C.",
    )
    r.add_argument("--dir", type=Path, required=True, help="a directory made by sandbox init")
    r.set_defaults(func=_run)
