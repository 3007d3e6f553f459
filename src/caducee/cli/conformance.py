"""``caducee conformance``: the open conformance kit (issue 4 §3), inbound scenarios."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from caducee.core.errors import ConfigError

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    from caducee.trust.conformance import run_conformance

    path: Path = args.sandbox / "sandbox.json"
    try:
        sandbox = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read the sandbox description: {exc}"]) from exc
    rcpt = args.rcpt
    if rcpt is None:
        target_op = next((op for op in sandbox["operators"] if op["relay"] == args.target), None)
        if target_op is None:
            raise ConfigError(["--rcpt is required when the target is not a sandbox operator"])
        rcpt = target_op["accounts"][0]["address"]
    results = run_conformance(args.target, sandbox, rcpt=rcpt, timeout=args.timeout)
    if args.json:
        print(json.dumps([r.to_json() for r in results], ensure_ascii=False, indent=2))
    else:
        for r in results:
            mark = "PASS" if r.passed else "FAIL"
            print(f"{mark}  {r.name:<16} expected {r.expected:<8} {r.observed}")
    return 0 if all(r.passed for r in results) else 1


def _outbound(args: argparse.Namespace) -> int:
    from caducee.trust.conformance import OUTBOUND_SCENARIOS, run_outbound

    path: Path = args.sandbox / "sandbox.json"
    try:
        sandbox = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read the sandbox description: {exc}"]) from exc
    scenarios = tuple(args.scenario) if args.scenario else OUTBOUND_SCENARIOS
    unknown = set(scenarios) - set(OUTBOUND_SCENARIOS)
    if unknown:
        raise ConfigError([f"--scenario: unknown {', '.join(sorted(unknown))}"])
    results = run_outbound(sandbox, via=args.via, scenarios=scenarios, wait_seconds=args.wait)
    if args.json:
        print(json.dumps([r.to_json() for r in results], ensure_ascii=False, indent=2))
    else:
        for r in results:
            mark = "PASS" if r.passed else "FAIL"
            print(f"{mark}  {r.name:<16} expected {r.expected:<14} {r.observed}")
    return 0 if all(r.passed for r in results) else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("conformance", help="the open conformance kit for operators")
    csub = parser.add_subparsers(dest="conformance_command", metavar="SUBCOMMAND", required=True)
    p = csub.add_parser(
        "run",
        help="run the trust scenarios against an operator's relay-in",
        description=(
            "Presents, to the relay-in at --target, each scenario of the national audit "
            "(sans-tls, sans-cert, cert-expire, cert-revoque, cert-non-igc, cert-no-match, "
            "cert-cn-diff-dn, cert-valide) with the certificates of the sandbox --sandbox, and "
            "prints a pass/fail table. No message is sent. Exit status 1 on any failure."
        ),
    )
    p.add_argument("--target", required=True, metavar="HOST:PORT", help="relay-in to test")
    p.add_argument("--sandbox", type=Path, required=True, help="sandbox directory (certificates)")
    p.add_argument("--rcpt", help="an existing recipient at the target (default: from sandbox)")
    p.add_argument("--timeout", type=float, default=15.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run)

    o = csub.add_parser(
        "outbound",
        help="does an operator refuse to deliver to peers presenting bad certificates?",
        description=(
            "Takes over the relay address of the sandbox's FIRST operator (which must not be "
            "running) with a capture peer presenting each scenario certificate, submits a "
            "message through operator --via (running) and checks that nothing is delivered to "
            "a bad peer and that cert-valide receives it. An operator that backs off from a "
            "failing peer makes no new attempt: restart it between scenarios, or run them one "
            "at a time with --scenario."
        ),
    )
    o.add_argument("--sandbox", type=Path, required=True, help="sandbox directory")
    o.add_argument("--via", required=True, help="name of the sandbox operator under test")
    o.add_argument("--scenario", action="append", help="run only this scenario (repeatable)")
    o.add_argument("--wait", type=float, default=10.0, help="seconds to wait per scenario")
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=_outbound)
