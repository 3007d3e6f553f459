"""``caducee demo``: a whole trust space on this machine, and a first message through it.

Initialises a sandbox in ``--dir`` if there is none (``caducee sandbox init``), starts every
operator in this process, sends a message from an account of the first operator to one of the
second through submission (real STARTTLS and AUTH), waits until it is in the recipient's INBOX
(relayed between the operators over mutual TLS), then prints how to read it and how to send one
with standard tools, and keeps running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from caducee.core.errors import CaduceeError, ConfigError

__all__ = ["register", "send_demo_message"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo", help="run a sandbox trust space and send a first message", description=__doc__
    )
    parser.add_argument("--dir", type=Path, default=Path("demo"), help="sandbox directory")
    parser.add_argument(
        "--operators", type=int, default=2, help="operators when creating the sandbox"
    )
    parser.add_argument("--port-base", type=int, default=None, help="first port (sandbox init)")
    parser.add_argument(
        "--no-wait", action="store_true", help="stop after the first message (for scripts)"
    )
    parser.set_defaults(func=cmd_demo)


def _init_sandbox(args: argparse.Namespace) -> None:
    from caducee.cli.main import main

    argv = ["sandbox", "init", "--dir", str(args.dir), "--operators", str(args.operators)]
    if args.port_base is not None:
        argv += ["--port-base", str(args.port_base)]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: the sandbox command group is not installed
        code = exc.code if isinstance(exc.code, int) else 2
    if code != 0:
        raise ConfigError([f"could not create a sandbox in {args.dir}"])


def _hostport(value: Any) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError([f"sandbox.json: not host:port: {value!r}"])
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def _submission_context(ca_bundle: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_bundle))
    # The sandbox listens on 127.0.0.1 while certificates name the operators' hosts: verify
    # the chain, not the name (``curl --connect-to`` below shows the strict way).
    ctx.check_hostname = False
    return ctx


def send_demo_message(
    submission: tuple[str, int],
    ca_bundle: Path,
    login: str,
    password: str,
    sender: str,
    recipient: str,
    *,
    subject: str = "Premier message de la démo Caducée",
) -> str:
    """Sends one message through submission (STARTTLS + AUTH PLAIN); returns its Message-ID."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    msg.set_content(
        "Bonjour,\n\nCe message a traversé l'espace de confiance du bac à sable Caducée :\n"
        "soumission (STARTTLS + AUTH), puis relais entre opérateurs en TLS mutuel avec\n"
        "vérification du DN du certificat dans la liste blanche.\n"
    )
    with smtplib.SMTP(submission[0], submission[1], timeout=30) as client:
        client.starttls(context=_submission_context(ca_bundle))
        client.login(login, password)
        client.send_message(msg, from_addr=sender, to_addrs=[recipient])
    return str(msg["Message-ID"])


def _pick(
    info: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    ops = [op for op in info.get("operators", []) if op.get("accounts") and op.get("submission")]
    if len(ops) < 2:
        raise ConfigError(["sandbox.json: the demo needs two operators with accounts"])
    a, b = ops[0], ops[1]
    sender = next((acc for acc in a["accounts"] if acc.get("password")), None)
    recipient = b["accounts"][0]
    if sender is None:
        raise ConfigError(["sandbox.json: the first operator has no account with a password"])
    return a, sender, b, recipient


def _howto(
    ca_bundle: Path,
    a: dict[str, Any],
    sender: dict[str, Any],
    recipient: dict[str, Any],
    op_a: Any,
    op_b: Any,
    config_b: str,
) -> str:
    ca_q = shlex.quote(str(ca_bundle.resolve()))
    sub_host, sub_port = _hostport(a["submission"])
    mx_a = op_a.cfg.smtp.hostname
    mx_b = op_b.cfg.smtp.hostname
    lines = [
        "",
        "How to send one with standard tools (submission: STARTTLS required, then AUTH PLAIN):",
        f"  swaks --server {sub_host} --port {sub_port} --tls --tls-verify --tls-ca-path {ca_q} \\",
        f"        --auth PLAIN --auth-user {shlex.quote(sender['login'])}"
        f" --auth-password {shlex.quote(sender['password'])} \\",
        f"        --from {sender['address']} --to {recipient['address']}"
        " --header 'Subject: test swaks'",
        "",
        f"  printf 'From: <{sender['address']}>\\r\\nTo: <{recipient['address']}>\\r\\n"
        "Subject: test curl\\r\\n\\r\\nBonjour\\r\\n' > /tmp/m.eml",
        "  # --connect-to keeps full certificate checking (name included) on the loopback port",
        f"  curl --ssl-reqd --cacert {ca_q} \\",
        f"       --connect-to {mx_a}:{sub_port}:{sub_host}:{sub_port} \\",
        f"       smtp://{mx_a}:{sub_port} \\",
        f"       --user {shlex.quote(sender['login'] + ':' + sender['password'])} \\",
        f"       --mail-from {sender['address']} --mail-rcpt {recipient['address']}"
        " --upload-file /tmp/m.eml",
        "",
        "How to read it:",
    ]
    imap = op_b.addresses.get("imap")
    if imap and recipient.get("password"):
        host, port = imap[0]
        lines += [
            f"  curl --ssl-reqd --cacert {ca_q} --connect-to {mx_b}:{port}:{host}:{port} \\",
            f"       --user {shlex.quote(recipient['login'] + ':' + recipient['password'])}"
            f" 'imap://{mx_b}:{port}/INBOX;UID=1'",
            f"  (or any IMAP client: server {host} port {port}, STARTTLS,"
            f" login {recipient['login']})",
        ]
    lines.append(
        f"  caducee mailbox messages {recipient['address']} --config {shlex.quote(config_b)}"
        "   (metadata only)"
    )
    return "\n".join(lines)


def _services_howto(info: dict[str, Any], ca_bundle: Path, recipient: dict[str, Any]) -> str:
    """The trust authority's and the directory's endpoints, and a line to try each."""
    from caducee.cli.sandbox import endpoints

    text = endpoints(info)
    if not text:
        return ""
    ca_q = shlex.quote(str(ca_bundle.resolve()))
    lines = ["", "Trust authority and directory of the sandbox:", text]
    auth = info.get("authority")
    if isinstance(auth, dict) and auth.get("list_url"):
        lines += [
            "  caducee trust inspect --ca-bundle " + ca_q + " " + str(auth["list_url"]),
        ]
    node = info.get("directory_node")
    if isinstance(node, dict) and node.get("fhir_url"):
        lines.append(
            f"  curl --cacert {ca_q} '{node['fhir_url']}/Practitioner?"
            f"mailbox-mss={recipient['address']}'"
        )
    return "\n".join(lines)


async def _wait_in_inbox(op: Any, address: str, before: int, limit: float) -> int:
    storage = op.storage
    mailbox = await storage.accounts.get_mailbox(address)
    if mailbox is None:
        raise ConfigError([f"no mailbox {address} on {op.name}"])
    folder = await storage.messages.get_folder(mailbox.mailbox_id, "INBOX")
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        msgs = await storage.messages.list_messages(folder.folder_id)
        if len(msgs) > before:
            return int(msgs[-1].uid)
        await asyncio.sleep(0.05)
    raise CaduceeError(f"the message did not reach {address} within {limit:.0f} s")


async def _inbox_count(op: Any, address: str) -> int:
    mailbox = await op.storage.accounts.get_mailbox(address)
    if mailbox is None:
        return 0
    folder = await op.storage.messages.get_folder(mailbox.mailbox_id, "INBOX")
    return len(await op.storage.messages.list_messages(folder.folder_id))


def cmd_demo(args: argparse.Namespace) -> int:
    from caducee.cli.operator import run_until_signalled
    from caducee.sandbox.run import describe, load_sandbox, start_sandbox, stop_all

    directory: Path = args.dir
    if not (directory / "sandbox.json").is_file():
        print(f"creating a sandbox trust space in {directory} ...", flush=True)
        _init_sandbox(args)
    sandbox = load_sandbox(directory)
    a, sender, b, recipient = _pick(sandbox.info)
    ca_bundle = Path(str(sandbox.info["ca_bundle"]))
    if not ca_bundle.is_absolute():
        ca_bundle = directory / ca_bundle
    operators: list[Any] = []

    async def start() -> None:
        _, started = await start_sandbox(directory)
        operators.extend(started)
        count = sum(1 for op in operators if hasattr(op, "cfg"))
        print(f"sandbox {directory}: {count} operator(s) running", flush=True)
        print(describe(operators), flush=True)
        op_b = next(op for op in operators if op.name == b["name"])
        before = await _inbox_count(op_b, recipient["address"])
        t0 = time.monotonic()
        msgid = await asyncio.to_thread(
            send_demo_message,
            _hostport(a["submission"]),
            ca_bundle,
            sender["login"],
            sender["password"],
            sender["address"],
            recipient["address"],
        )
        print(
            f"\nsent {msgid} from {sender['address']} ({a['name']}) to {recipient['address']}"
            f" ({b['name']}) through submission",
            flush=True,
        )
        uid = await _wait_in_inbox(op_b, recipient["address"], before, 30.0)
        ms = (time.monotonic() - t0) * 1000
        print(
            f"arrived in {recipient['address']} INBOX as UID {uid} after {ms:.0f} ms"
            " (relayed over mutual TLS, peer DN checked against the liste blanche)",
            flush=True,
        )
        op_a = next(op for op in operators if op.name == a["name"])
        config_b = str(b.get("config") or directory / b["name"] / "node.toml")
        print(_howto(ca_bundle, a, sender, recipient, op_a, op_b, config_b), flush=True)
        print(_services_howto(sandbox.info, ca_bundle, recipient), flush=True)
        from caducee.web.sandbox import describe_web

        print(describe_web(sandbox.info), flush=True)
        if args.no_wait:
            raise _Done
        print("\nThe sandbox keeps running; Ctrl-C to stop.", flush=True)

    async def stop() -> None:
        await stop_all(operators)

    with contextlib.suppress(_Done):
        asyncio.run(run_until_signalled(start, stop))
    print("sandbox stopped", flush=True)
    return 0


class _Done(Exception):
    """--no-wait: the demo has shown what it had to show."""
