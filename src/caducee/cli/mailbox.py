"""``caducee mailbox``: the BALs of a node (types PER/ORG/APP/CAB, TRE_R257) and their accounts.

A PER mailbox belongs to one professional (holder: RPPS/ADELI, stored as IDNPS) and gets an
account of the same login by default. ORG and CAB mailboxes (holder: SIRET/FINESS) are
delegated to several accounts; APP mailboxes are used by software.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from caducee.cli._node import (
    add_config_arg,
    add_password_args,
    node_config,
    parse_size,
    read_password,
    with_storage,
)
from caducee.core.errors import Conflict, InvalidInput, NotFound
from caducee.core.identifiers import holder_for
from caducee.core.model import Address, AuditEvent, MailboxType
from caducee.storage.interfaces import Storage

__all__ = ["DELEGATE_RIGHTS", "FULL_RIGHTS", "register"]

FULL_RIGHTS = "lrswipkxtea"  # RFC 4314: everything, for the holder's own account
DELEGATE_RIGHTS = "lrswipktea"  # delegates: all but administering the folder tree (x)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "mailbox", help="manage mailboxes (BAL) and accounts", description=__doc__
    )
    cmds = parser.add_subparsers(dest="mailbox_command", metavar="COMMAND", required=True)

    add = cmds.add_parser("add", help="create a mailbox", description="Creates a BAL.")
    add_config_arg(add)
    add.add_argument("address", help="the mailbox address, e.g. jean.dupont@medecin.mssante.fr")
    add.add_argument("--type", "-t", required=True, choices=[t.value for t in MailboxType])
    add.add_argument(
        "--holder",
        required=True,
        help="PER: RPPS (11 digits) or ADELI (9); ORG/APP/CAB: SIRET (14) or FINESS (9)",
    )
    add.add_argument("--display-name", default="", help="name shown to correspondents")
    add.add_argument("--quota", default="0", help="e.g. 2G, 500M; 0 = unlimited (default)")
    add.add_argument(
        "--login",
        help="account holding the BAL (created if missing); default for PER: the address",
    )
    add.add_argument(
        "--delegate",
        action="append",
        default=[],
        metavar="LOGIN",
        help="ORG/CAB: an existing account to delegate the BAL to (repeatable)",
    )
    add.add_argument("--no-password", action="store_true", help="account without a password")
    add_password_args(add)
    add.set_defaults(func=cmd_add)

    lst = cmds.add_parser("list", help="list mailboxes", description="Lists the node's BALs.")
    add_config_arg(lst)
    lst.add_argument("--domain", help="only this domain")
    lst.set_defaults(func=cmd_list)

    delete = cmds.add_parser("delete", help="delete a mailbox and its messages")
    add_config_arg(delete)
    delete.add_argument("address")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(func=cmd_delete)

    passwd = cmds.add_parser("passwd", help="set an account's password")
    add_config_arg(passwd)
    passwd.add_argument("login")
    add_password_args(passwd)
    passwd.set_defaults(func=cmd_passwd)

    msgs = cmds.add_parser(
        "messages",
        help="list the messages of a mailbox folder (metadata only)",
        description="UID, date, size and flags; never contents.",
    )
    add_config_arg(msgs)
    msgs.add_argument("address")
    msgs.add_argument("--folder", default="INBOX")
    msgs.set_defaults(func=cmd_messages)

    deleg = cmds.add_parser("delegate", help="delegate an ORG/CAB mailbox to an account")
    add_config_arg(deleg)
    deleg.add_argument("address")
    deleg.add_argument("login")
    deleg.add_argument("--remove", action="store_true", help="withdraw the delegation")
    deleg.set_defaults(func=cmd_delegate)


def _check_domain(domains: list[str], address: str) -> Address:
    addr = Address.parse(address)
    if addr.domain not in {d.lower() for d in domains}:
        raise InvalidInput(f"{addr.domain} is not a domain of this node ({', '.join(domains)})")
    return addr


def cmd_add(args: argparse.Namespace) -> int:
    cfg = node_config(args)
    addr = _check_domain(cfg.domains, args.address)
    mtype = MailboxType(args.type)
    holder = holder_for(mtype, args.holder)
    quota = parse_size(args.quota)
    login: str | None = args.login or (str(addr) if mtype is MailboxType.PER else None)
    if args.delegate and mtype not in (MailboxType.ORG, MailboxType.CAB):
        raise InvalidInput("only ORG and CAB mailboxes are delegated")
    password: str | None = None

    async def action(storage: Storage) -> None:
        nonlocal password
        if await storage.accounts.get_mailbox(str(addr)) is not None:
            raise Conflict(f"mailbox {addr} already exists")
        for delegate in args.delegate:
            if await storage.accounts.get_account(delegate) is None:
                raise NotFound(f"no account {delegate!r} to delegate to")
        if login is not None and await storage.accounts.get_account(login) is None:
            if password is None and not args.no_password:
                password = read_password(args)
            idnps = holder if mtype is MailboxType.PER else None
            await storage.accounts.create_account(
                login, password, display_name=args.display_name, idnps=idnps
            )
        mailbox = await storage.accounts.create_mailbox(
            str(addr), mtype, holder, display_name=args.display_name, quota_bytes=quota
        )
        if login is not None:
            await storage.accounts.grant(login, mailbox.address, FULL_RIGHTS)
        for delegate in args.delegate:
            await storage.accounts.grant(delegate, mailbox.address, DELEGATE_RIGHTS)
        await storage.audit.record(
            AuditEvent(
                "mailbox.created",
                "ok",
                "cli",
                mailbox.address,
                {"type": mtype.value, "delegates": str(len(args.delegate))},
                node=cfg.name,
            )
        )

    with_storage(cfg, action)
    owner = f", account {login}" if login else ""
    print(f"created {mtype.value} mailbox {addr}{owner}")
    _publish(args, str(addr), mtype.value, holder, args.display_name)
    return 0


def _publish(args: argparse.Namespace, address: str, mtype: str, holder: str, name: str) -> None:
    """Publishes a new mailbox in the directory when the node publishes (issue 5 §6)."""
    from caducee.sandbox.directory import publish_node_mailbox

    note = publish_node_mailbox(Path(args.config), address, mtype, holder, name)
    if note is not None:
        print(note)


def _unpublish(args: argparse.Namespace, address: str, mtype: str, holder: str) -> None:
    """Withdraws a deleted mailbox from the directory when the node publishes."""
    from caducee.sandbox.directory import unpublish_node_mailbox

    note = unpublish_node_mailbox(Path(args.config), address, mtype, holder)
    if note is not None:
        print(note)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{n}B" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{n}B"


def cmd_list(args: argparse.Namespace) -> int:
    cfg = node_config(args)

    async def action(storage: Storage) -> list[tuple[str, str, str, str, str]]:
        rows = []
        for mb in await storage.accounts.list_mailboxes(args.domain):
            quota = _size(mb.quota_bytes) if mb.quota_bytes else "-"
            rows.append((mb.address, mb.type.value, mb.holder_id, _size(mb.used_bytes), quota))
        return rows

    rows = with_storage(cfg, action)
    header = ("ADDRESS", "TYPE", "HOLDER", "USED", "QUOTA")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    cfg = node_config(args)
    if not args.yes:
        answer = input(f"Delete mailbox {args.address} and all its messages? [y/N] ")
        if answer.strip().lower() not in ("y", "yes", "o", "oui"):
            print("nothing deleted")
            return 1

    deleted: list[tuple[str, str]] = []  # (type, holder), for the directory

    async def action(storage: Storage) -> None:
        mailbox = await storage.accounts.get_mailbox(args.address)
        if mailbox is None:
            raise NotFound(f"no mailbox {args.address}")
        deleted.append((mailbox.type.value, mailbox.holder_id))
        await storage.accounts.delete_mailbox(args.address)
        await storage.audit.record(
            AuditEvent("mailbox.deleted", "ok", "cli", args.address, node=cfg.name)
        )

    with_storage(cfg, action)
    print(f"deleted {args.address}")
    _unpublish(args, args.address, *deleted[0])
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    cfg = node_config(args)

    async def action(storage: Storage) -> None:
        if await storage.accounts.get_account(args.login) is None:
            raise NotFound(f"no account {args.login!r}")
        await storage.accounts.set_password(args.login, read_password(args))
        await storage.audit.record(
            AuditEvent("account.password_set", "ok", "cli", args.login, node=cfg.name)
        )

    with_storage(cfg, action)
    print(f"password of {args.login} changed")
    return 0


def cmd_messages(args: argparse.Namespace) -> int:
    cfg = node_config(args)

    async def action(storage: Storage) -> list[str]:
        mb = await storage.accounts.get_mailbox(args.address)
        if mb is None:
            raise NotFound(f"no mailbox {args.address}")
        folder = await storage.messages.get_folder(mb.mailbox_id, args.folder)
        if folder is None:
            raise NotFound(f"no folder {args.folder!r} in {args.address}")
        out = []
        for m in await storage.messages.list_messages(folder.folder_id):
            flags = " ".join(sorted(m.flags)) or "-"
            when = m.internal_date.strftime("%Y-%m-%d %H:%M:%S")
            out.append(f"{m.uid:>6}  {when}  {m.size:>9}  {flags}")
        return out

    lines = with_storage(cfg, action)
    print(f"{'UID':>6}  {'DATE':<19}  {'SIZE':>9}  FLAGS")
    for line in lines:
        print(line)
    print(f"{len(lines)} message(s) in {args.folder}")
    return 0


def cmd_delegate(args: argparse.Namespace) -> int:
    cfg = node_config(args)

    async def action(storage: Storage) -> None:
        mb = await storage.accounts.get_mailbox(args.address)
        if mb is None:
            raise NotFound(f"no mailbox {args.address}")
        if mb.type not in (MailboxType.ORG, MailboxType.CAB):
            raise InvalidInput(f"{args.address} is a {mb.type.value} mailbox; only ORG and CAB")
        if await storage.accounts.get_account(args.login) is None:
            raise NotFound(f"no account {args.login!r}")
        if args.remove:
            await storage.accounts.revoke(args.login, mb.address)
        else:
            await storage.accounts.grant(args.login, mb.address, DELEGATE_RIGHTS)
        kind = "mailbox.delegation_removed" if args.remove else "mailbox.delegated"
        await storage.audit.record(
            AuditEvent(kind, "ok", "cli", mb.address, {"login": args.login}, node=cfg.name)
        )

    with_storage(cfg, action)
    print(f"{'removed' if args.remove else 'delegated'}: {args.address} -> {args.login}")
    return 0
