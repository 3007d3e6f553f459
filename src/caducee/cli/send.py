"""``caducee send``: send CDA documents as an MSSanté message through any submission port."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from caducee.core.errors import ConfigError, InvalidInput
from caducee.documents.mss import build_message
from caducee.integration.submit import SubmissionSettings, parse_server, submit

__all__ = ["register"]

_MAX_FILE = 40 * 1024 * 1024


def _read(path: str, what: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"{what}: no such file: {path}")
    if p.stat().st_size > _MAX_FILE:
        raise InvalidInput(f"{what}: {path} is too large")
    return p.read_bytes()


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        value = Path(args.password_file).read_text(encoding="utf-8").rstrip("\r\n")
    else:
        value = os.environ.get(args.password_env, "")
    if not value:
        raise ConfigError(
            [f"password: set ${args.password_env} or --password-file (never a CLI arg)"]
        )
    return value


def _send(args: argparse.Namespace) -> int:
    host, port = parse_server(args.server)
    settings = SubmissionSettings(
        host=host, port=port, user=args.user, password=_password(args), ca_file=args.ca_file
    )
    text = args.text
    if args.text_file:
        text = Path(args.text_file).read_text(encoding="utf-8")
    msg = build_message(
        sender=args.sender,
        recipients=list(args.to),
        cdas=[_read(p, "--cda") for p in args.cda],
        pdf=_read(args.pdf, "--pdf") if args.pdf else None,
        text=text,
        nil=args.nil,
        end_exchange=args.fin,
        request_mdn=not args.no_mdn,
        sender_name=args.sender_name,
        reply_to=args.reply_to,
        max_bytes=args.max_size,
        delete=args.delete,
    )
    result = submit(msg, settings, dsn=not args.no_dsn)
    accepted = [r for r in args.to if r not in result.refused]
    print(
        f"sent {msg['Message-ID']} to {len(accepted)} recipient(s)"
        + ("; DSN requested" if result.dsn_requested else "; server offers no DSN")
    )
    for rcpt, (code, _) in result.refused.items():
        print(f"refused: {rcpt} ({code})", file=sys.stderr)
    return 0 if not result.refused else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "send",
        help="send CDA documents as an MSSanté message (IHE_XDM.zip) via SMTP submission",
        description="Build an MSSanté message (Ref#2 ECO.2.x); submit it (STARTTLS, AUTH PLAIN).",
    )
    p.add_argument("--from", dest="sender", required=True, help="sender MSSanté address")
    p.add_argument("--to", action="append", required=True, help="recipient (repeatable)")
    p.add_argument("--cda", action="append", required=True, help="CDA R2 document (repeatable)")
    p.add_argument("--pdf", help="PDF rendering of the document")
    p.add_argument("--text", help="message body (UTF-8)")
    p.add_argument("--text-file", help="message body from a UTF-8 file")
    p.add_argument("--server", required=True, help="submission server HOST:PORT (STARTTLS)")
    p.add_argument("--user", required=True, help="SMTP AUTH user")
    p.add_argument(
        "--password-env",
        default="CADUCEE_SMTP_PASSWORD",
        help="environment variable holding the password (default %(default)s)",
    )
    p.add_argument("--password-file", help="file holding the password")
    p.add_argument("--ca-file", help="CA bundle to verify the server certificate")
    p.add_argument(
        "--nil",
        default=os.environ.get("CADUCEE_MSS_NIL", "CADUCEE"),
        help="X-MSS-NIL software reference (default $CADUCEE_MSS_NIL or CADUCEE)",
    )
    p.add_argument(
        "--fin", action="store_true", help="to a patient: end the exchange (X-MSS-MES: FIN)"
    )
    p.add_argument(
        "--delete",
        action="store_true",
        help="ask the recipient to delete these documents (XDM entries marked Deprecated)",
    )
    p.add_argument("--no-mdn", action="store_true", help="do not request an MDN")
    p.add_argument("--no-dsn", action="store_true", help="do not request a DSN")
    p.add_argument("--sender-name", help="sender display name")
    p.add_argument("--reply-to", help="Reply-To address")
    p.add_argument("--max-size", type=int, default=None, help="refuse messages over N bytes")
    p.set_defaults(func=_send)
