"""``caducee authority``: the trust authority node (issue 4 §1)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
from pathlib import Path

from caducee.core.errors import ConfigError

__all__ = ["register"]

_PASS_ENV = "CADUCEE_AUTHORITY_PASSPHRASE"  # noqa: S105  # a variable name, not a secret


def _passphrase(args: argparse.Namespace) -> bytes:
    if args.passphrase_file is not None:
        path: Path = args.passphrase_file
        return path.read_text(encoding="utf-8").splitlines()[0].encode()
    value = os.environ.get(_PASS_ENV)
    if value:
        return value.encode()
    raise ConfigError([f"the CA passphrase: give --passphrase-file or set {_PASS_ENV}"])


def _author(args: argparse.Namespace) -> str:
    return str(args.author or os.environ.get("USER") or getpass.getuser())


def _init(args: argparse.Namespace) -> int:
    from caducee.trust.authority import Authority

    auth = Authority.init(args.dir, _passphrase(args), label=args.label, author=_author(args))
    print(
        f"authority created in {auth.directory}; CA bundle: {auth.directory}/public/ca-bundle.pem"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from caducee.trust.authority import Authority
    from caducee.trust.authority.server import serve_authority

    pw = _passphrase(args)
    auth = Authority.open(args.dir, pw)

    def ready(bound: dict[str, tuple[str, int]]) -> None:
        for name, (host, port) in bound.items():
            print(f"authority {name}: {name}://{host}:{port}/", flush=True)

    asyncio.run(
        serve_authority(
            auth,
            pw,
            https_listen=args.https,
            http_listen=args.http,
            on_ready=ready,
            handle_signals=True,
        )
    )
    return 0


def _op_add(args: argparse.Namespace) -> int:
    from caducee.trust.authority import Authority, CertKind

    auth = Authority.open(args.dir, _passphrase(args))
    author = _author(args)
    auth.add_operator(
        args.name,
        organisation=args.organisation,
        structure_id=args.structure_id,
        state=args.state,
        domains=args.domain,
        author=author,
        contact=args.contact or "",
    )
    args.out.mkdir(parents=True, exist_ok=True)
    from cryptography.hazmat.primitives import serialization

    kinds: tuple[tuple[CertKind, Path | None], ...] = (
        ("server", args.csr),
        ("client", args.client_csr),
    )
    for kind, csr in kinds:
        if csr is None:
            continue
        cert = auth.issue_from_csr(args.name, csr.read_bytes(), kind, author=author)
        path = args.out / f"{args.name}-{kind}.pem"
        path.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + auth.intermediate.cert.public_bytes(serialization.Encoding.PEM)
        )
        print(f"{kind} certificate: {path} (serial {cert.serial_number:x})")
    print(f"operator {args.name} added with domains {', '.join(args.domain)}")
    return 0


def _op_revoke(args: argparse.Namespace) -> int:
    from caducee.trust.authority import Authority

    auth = Authority.open(args.dir, _passphrase(args))
    serials = auth.revoke_operator(args.name, author=_author(args), reason=args.reason or "")
    print(f"operator {args.name} revoked ({len(serials)} certificate(s)) and delisted")
    return 0


def _op_list(args: argparse.Namespace) -> int:
    from caducee.trust.authority import Authority

    auth = Authority.open(args.dir, _passphrase(args))
    ops = auth.operators()
    if args.json:
        print(json.dumps(ops, ensure_ascii=False, indent=2))
        return 0
    for name, op in sorted(ops.items()):
        print(
            f"{name:<20} {op['status']:<8} {op['organisation']} ({op['structure_id']}): "
            f"{', '.join(op['domains'])}"
        )
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, required=True, help="the authority's data directory")
    p.add_argument(
        "--passphrase-file", type=Path, help=f"file holding the CA key passphrase (or ${_PASS_ENV})"
    )
    p.add_argument("--author", help="who makes the change (audit; default: $USER)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("authority", help="the trust authority: PKI, liste blanche, OCSP")
    asub = parser.add_subparsers(dest="authority_command", metavar="SUBCOMMAND", required=True)

    p = asub.add_parser("init", help="create the authority's CA, signer and HTTPS certificate")
    _common(p)
    p.add_argument("--label", default="CADUCEE", help="name part of the CA names")
    p.set_defaults(func=_init)

    p = asub.add_parser(
        "serve",
        help="publish the list (HTTPS), CRLs and OCSP (HTTP) until interrupted",
        description="Serves the signed liste blanche over HTTPS and CRLs + OCSP over HTTP.",
    )
    _common(p)
    p.add_argument("--https", default="127.0.0.1:8443", help="HTTPS listen address")
    p.add_argument("--http", default="127.0.0.1:8080", help="HTTP (CRL, OCSP) listen address")
    p.set_defaults(func=_serve)

    op = asub.add_parser("operator", help="onboard, revoke and list operators")
    osub = op.add_subparsers(dest="operator_command", metavar="ACTION", required=True)
    a = osub.add_parser("add", help="register an operator, issue its certificates, list domains")
    _common(a)
    a.add_argument("--name", required=True)
    a.add_argument("--organisation", required=True, help="O= of the certificate")
    a.add_argument("--structure-id", required=True, help="OU=: 1 + FINESS or 3 + SIRET")
    a.add_argument("--state", required=True, help='ST=, e.g. "Paris (75)"')
    a.add_argument("--domain", action="append", required=True, help="a domain (repeat)")
    a.add_argument("--csr", type=Path, help="CSR of the MTA server certificate (PEM)")
    a.add_argument("--client-csr", type=Path, help="CSR of an organisation client certificate")
    a.add_argument("--contact", help="contact shown in the liste blanche")
    a.add_argument("--out", type=Path, default=Path(), help="where to write certificates")
    a.set_defaults(func=_op_add)
    r = osub.add_parser("revoke", help="revoke every certificate of an operator and delist it")
    _common(r)
    r.add_argument("--name", required=True)
    r.add_argument("--reason")
    r.set_defaults(func=_op_revoke)
    lst = osub.add_parser("list", help="list operators")
    _common(lst)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=_op_list)
