"""``caducee trust``: inspect a liste blanche; refresh an operator's copy (issue 4 §2)."""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from pathlib import Path

from caducee.core.errors import InvalidInput, TrustError

__all__ = ["register"]


def _read_source(source: str, ca_bundle: Path | None) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    if source.startswith(("https://", "http://")):
        import httpx

        if source.startswith("http://"):
            raise InvalidInput("refusing plain http:// for a liste blanche; use https://")
        try:
            ctx = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
            resp = httpx.get(source, verify=ctx, timeout=30.0)
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            raise TrustError(f"cannot fetch {source}: {exc}") from exc
        return resp.content
    return Path(source).read_bytes()


def _inspect(args: argparse.Namespace) -> int:
    from caducee.trust.inspect import inspect_liste_blanche

    data = _read_source(args.source, args.ca_bundle)
    report = inspect_liste_blanche(data, args.source)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(report.to_text())
    return 0 if report.usable else 1


def _refresh(args: argparse.Namespace) -> int:
    from caducee.config.model import load_config
    from caducee.trust.fetch import refresh_once

    outcome = refresh_once(load_config(args.config))
    print(outcome.summary())
    return 0 if outcome.ok else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("trust", help="liste blanche and trust-space tools")
    tsub = parser.add_subparsers(dest="trust_command", metavar="SUBCOMMAND", required=True)

    p = tsub.add_parser(
        "inspect",
        help="print a liste blanche's figures and every defect found",
        description=(
            "Reads a liste blanche (file, https:// URL, or - for stdin) and prints its "
            "generation date, its counts of entries, domains, certificate DNs and organisations, "
            "and every defect found. Exit status 1 if the list would be refused."
        ),
    )
    p.add_argument("source", metavar="FILE|URL", help="a file, an https:// URL, or -")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--ca-bundle", type=Path, help="CA bundle to verify an https:// source")
    p.set_defaults(func=_inspect)

    r = tsub.add_parser(
        "refresh",
        help="fetch, verify and install the liste blanche and CRLs now",
        description=(
            "Fetches the liste blanche named by trust.liste_blanche in the node configuration, "
            "verifies its checksum and CMS signature when configured, and installs it as the "
            "last good copy (trust.cache_file, default DATA_DIR/trust/liste-blanche.xml); "
            "fetches trust.crl_urls into tls.crl_dir. On any failure the last good copy stays "
            "and the exit status is 1. A running node applies it at its next refresh."
        ),
    )
    r.add_argument("--config", type=Path, required=True, help="node configuration (TOML)")
    r.set_defaults(func=_refresh)
