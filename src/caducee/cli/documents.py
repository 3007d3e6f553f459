"""``caducee documents``: read clinical documents (CDA R2, IHE XDM, MSSanté messages)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from caducee.core.errors import InvalidInput
from caducee.documents.inspect import MAX_INPUT_BYTES, inspect_bytes
from caducee.documents.validate import SCHEMA_ENV

__all__ = ["register"]


def _read_input(path: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"no such file: {path}")
    if p.stat().st_size > MAX_INPUT_BYTES:
        raise InvalidInput(f"{path} is too large (limit {MAX_INPUT_BYTES} bytes)")
    return p.read_bytes()


def _print_cda(d: dict[str, Any], indent: str = "") -> None:
    t = d.get("type") or {}
    p = d["patient"]
    a = d.get("author") or {}
    v = d["verdict"]
    out = sys.stdout
    out.write(
        f"{indent}Document: {t.get('display') or d.get('title') or '-'} ({t.get('code') or '-'})\n"
    )
    out.write(f"{indent}  title: {d.get('title') or '-'}\n")
    ids = f"id: {d.get('document_id') or '-'}  setId: {d.get('set_id') or '-'}"
    out.write(f"{indent}  {ids}  version: {d.get('version')}\n")
    out.write(f"{indent}  effective time: {d.get('effective_time') or '-'}\n")
    conf = d.get("confidentiality") or {}
    out.write(f"{indent}  confidentiality: {conf.get('code') or '-'}\n")
    out.write(f"{indent}  author: {a.get('name') or '-'} ({a.get('organisation') or '-'})\n")
    name = " ".join(x for x in (p.get("birth_name"), p.get("first_birth_forename")) if x) or "-"
    out.write(
        f"{indent}  patient: {name}, born {p.get('birth_date') or '-'}, sex {p.get('sex') or '-'}\n"
    )
    if p.get("ins"):
        status = "qualified" if p["ins_qualified"] else "NOT qualified"
        out.write(f"{indent}  INS: {p['ins']} [{p.get('ins_kind')}] {status}\n")
    else:
        out.write(f"{indent}  INS: absent\n")
    for prob in p.get("ins_problems") or []:
        out.write(f"{indent}    - {prob}\n")
    verdict = "conformant" if v["conformant"] else "NOT conformant"
    schema = (
        "schema checked"
        if v["schema_checked"]
        else f"schema not checked (set {SCHEMA_ENV} or --schema)"
    )
    out.write(f"{indent}  verdict: {verdict} ({schema})\n")
    for reason in v["reasons"]:
        out.write(f"{indent}    - {reason}\n")


def _print(result: dict[str, Any]) -> None:
    kind = result["kind"]
    if kind == "cda":
        _print_cda(result)
        return
    if kind == "xdm":
        sys.stdout.write(
            f"IHE XDM package ({result['subset'] or 'root'}): {len(result['entries'])} entries\n"
        )
        for prob in result["problems"]:
            sys.stdout.write(f"  ! {prob}\n")
        for e in result["entries"]:
            sys.stdout.write(
                f"  - {e['uri']} [{e['mime_type']}] hash {e['hash_ok']} size {e['size_ok']}\n"
            )
            if e["document"]:
                _print_cda(e["document"], indent="    ")
        return
    sys.stdout.write(f"Message {result.get('message_id') or '-'}\n  subject: {result['subject']}\n")
    for k, v in result["x_mss"].items():
        sys.stdout.write(f"  {k}: {v}\n")
    sys.stdout.write(f"  MDN requested: {'yes' if result['mdn_requested'] else 'no'}\n")
    for prob in result["problems"]:
        sys.stdout.write(f"  ! {prob}\n")
    for att in result["attachments"]:
        _print(att)


def _inspect(args: argparse.Namespace) -> int:
    result = inspect_bytes(_read_input(args.file), schema=args.schema)
    if args.json:
        json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        _print(result)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("documents", help="read clinical documents (CDA, IHE XDM, messages)")
    dsub = parser.add_subparsers(dest="documents_command", metavar="SUBCOMMAND")
    dsub.required = True
    insp = dsub.add_parser(
        "inspect",
        help="print header facts, INS status and validation verdict",
        description="Inspect a CDA R2 document, an IHE_XDM.zip, or a whole message (.eml).",
    )
    insp.add_argument("file", help="CDA .xml, IHE_XDM.zip or .eml")
    insp.add_argument("--json", action="store_true", help="print JSON")
    insp.add_argument(
        "--schema",
        default=None,
        help=f"CDA XML schema (CDA_extended.xsd); default: ${SCHEMA_ENV}",
    )
    insp.set_defaults(func=_inspect)
