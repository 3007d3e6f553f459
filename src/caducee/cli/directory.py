"""``caducee directory``: import the public extracts, generate synthetic ones, search, serve."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from caducee.core.errors import InvalidInput

__all__ = ["register"]


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db", help="SQLite database file (default: directory.db or $CADUCEE_DIRECTORY_DB)"
    )
    p.add_argument("--dsn", help="PostgreSQL DSN instead of SQLite (or $CADUCEE_DIRECTORY_DSN)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser(
        "directory", help="national directory (Annuaire Santé): import, search, FHIR API"
    )
    cmds = group.add_subparsers(dest="directory_command", metavar="COMMAND")

    def _help(_args: argparse.Namespace) -> int:
        group.print_help()
        return 2

    group.set_defaults(func=_help)

    p = cmds.add_parser(
        "import", help="import PS_LibreAcces / Extraction_Correspondance_MSSante (zip or txt)"
    )
    p.add_argument("files", nargs="+", type=Path, help="extract files, persons before mailboxes")
    _store_args(p)
    p.add_argument("--progress", action="store_true", help="show a progress bar even without a tty")
    p.add_argument(
        "--max-bad",
        type=int,
        default=1000,
        help="abort (nothing written) above this many bad lines",
    )
    p.add_argument(
        "--force", action="store_true", help="apply even if the file removes over half the entries"
    )
    p.set_defaults(func=_import)

    p = cmds.add_parser("synth", help="generate synthetic extracts in the exact public formats")
    p.add_argument("--persons", type=int, required=True, help="number of persons")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--seed", type=int, default=1, help="random seed (same seed, same files)")
    p.add_argument("--zip", action="store_true", help="write .zip files as the ANS download does")
    p.add_argument("--progress", action="store_true", help="show a progress bar even without a tty")
    p.set_defaults(func=_synth)

    p = cmds.add_parser("search", help="search practitioners (or structures with --org)")
    p.add_argument(
        "text",
        nargs="?",
        default="",
        help="name words (prefixes; accents, case and small typos ignored)",
    )
    p.add_argument("--profession", action="append", default=[], help="TRE_G15 code, e.g. 10")
    p.add_argument("--specialty", action="append", default=[], help="savoir-faire code, e.g. SM26")
    p.add_argument("--city", default="", help="commune name")
    p.add_argument("--postal-code", default="", help="postal code or department (75, 2A)")
    p.add_argument("--mailbox", default="", help="part of a mailbox address")
    p.add_argument("--org", action="store_true", help="search structures (name, FINESS) instead")
    p.add_argument("--limit", type=int, default=20, help="at most this many results")
    p.add_argument("--json", action="store_true", help="print FHIR resources as JSON lines")
    _store_args(p)
    p.set_defaults(func=_search)

    p = cmds.add_parser("serve", help="serve the FHIR API (Annuaire Santé v2 compatible)")
    _store_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--cert", type=Path, help="TLS server certificate (PEM)")
    p.add_argument("--key", type=Path, help="TLS server key (PEM)")
    p.add_argument(
        "--client-ca", type=Path, help="CA bundle to verify client certificates (mutual TLS)"
    )
    p.add_argument(
        "--auth", type=Path, help='JSON: {"operators": {DN: [domains]}, "tokens": {token: name}}'
    )
    p.add_argument("--base-url", default="", help="public base URL used in bundle links")
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    p.set_defaults(func=_serve)


def _import(args: argparse.Namespace) -> int:
    from caducee.directory.importer import import_extract
    from caducee.directory.open import open_store
    from caducee.directory.progress import Progress

    store = open_store(args.db, args.dsn)
    try:
        for path in args.files:
            if not path.exists():
                raise InvalidInput(f"{path}: no such file")
            report = import_extract(store, path, progress=Progress.wanted(args.progress),
                                    max_bad=args.max_bad, force=args.force)  # fmt: skip
            for bad in report.bad[:20]:
                print(f"{path.name}: {bad} (skipped)", file=sys.stderr)
            if report.bad_count > 20:
                print(f"{path.name}: ... {report.bad_count - 20} more bad lines", file=sys.stderr)
            print(f"{path.name}: {report.summary()}")
    finally:
        store.close()
    return 0


def _synth(args: argparse.Namespace) -> int:
    from caducee.directory.progress import Progress
    from caducee.directory.synth import generate

    if args.persons < 1:
        raise InvalidInput("--persons must be at least 1")
    res = generate(args.out, args.persons, seed=args.seed, zip_files=args.zip,
                   progress=Progress.wanted(args.progress))  # fmt: skip
    print(f"{res.ps_path} ({res.activity_lines} activity lines, {res.persons} persons)")
    print(f"{res.mss_path} ({res.mailboxes} mailboxes)")
    return 0


def _search(args: argparse.Namespace) -> int:
    from caducee.directory import fhir
    from caducee.directory.open import open_store
    from caducee.directory.store import OrgQuery, PersonQuery

    store = open_store(args.db, args.dsn)
    try:
        if args.org:
            keys = store.search_orgs(OrgQuery(text=args.text, city=args.city,
                                              postal_code=args.postal_code, mailbox=args.mailbox,
                                              mailbox_match="contains"), 0, args.limit)  # fmt: skip
            for o in store.get_orgs(keys):
                if args.json:
                    print(json.dumps(fhir.organization(o), ensure_ascii=False))
                else:
                    boxes = ", ".join(m.address for m in o.mailboxes if not m.liste_rouge)
                    print(f"{o.key}  {o.name}  {o.postal_code} {o.city}  {boxes}".rstrip())
            return 0
        q = PersonQuery(text=args.text, professions=tuple(args.profession),
                        specialties=tuple(args.specialty), city=args.city,
                        postal_code=args.postal_code, mailbox=args.mailbox,
                        mailbox_match="contains")  # fmt: skip
        for p in store.get_persons(store.search_persons(q, 0, args.limit)):
            if args.json:
                print(json.dumps(fhir.practitioner(p), ensure_ascii=False))
                continue
            prof = p.activities[0].profession_label if p.activities else ""
            boxes = ", ".join(m.address for m in p.mailboxes if not m.liste_rouge)
            print(f"{p.idnps}  {p.family} {p.given}  {prof}  {boxes}".rstrip())
    finally:
        store.close()
    return 0


def _serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from caducee.directory.api import build_app
    from caducee.directory.open import open_store
    from caducee.directory.publication import PatchHandler
    from caducee.directory.server import load_auth_table, uvicorn_config

    if (args.cert is None) != (args.key is None):
        raise InvalidInput("--cert and --key go together")
    auth = load_auth_table(args.auth)  # validated before binding
    scheme = "https" if args.cert else "http"
    print(f"directory FHIR API on {scheme}://{args.host}:{args.port}/", file=sys.stderr)
    tls = {"certfile": args.cert, "keyfile": args.key, "client_ca": args.client_ca}
    if args.workers > 1:
        for key, value in (
            ("DB", args.db),
            ("DSN", args.dsn),
            ("BASE_URL", args.base_url),
            ("AUTH", str(args.auth) if args.auth else None),
        ):
            if value:
                os.environ[f"CADUCEE_DIRECTORY_{key}"] = value
        config = uvicorn_config(
            "caducee.directory.server:create_app", args.host, args.port, workers=args.workers, **tls
        )
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return 0
    store = open_store(args.db, args.dsn)
    app = build_app(store, auth=auth, base_url=args.base_url, publisher=PatchHandler(store, auth))
    uvicorn.Server(uvicorn_config(app, args.host, args.port, **tls)).run()
    return 0
