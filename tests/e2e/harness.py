"""Two (or more) operator nodes on loopback with certificates made for the run.

Each node gets its own server certificate from one IGC-Santé-shaped test CA, its keyring, a
shared liste blanche naming every node's DN for its domain, and (``write_toml``) a node TOML
file so the same node can be run as a separate process (``caducee operator serve``).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

from caducee.app import Operator
from caducee.cli.mailbox import FULL_RIGHTS
from caducee.config.model import NodeConfig
from caducee.core.model import MailboxType
from caducee.smtp.worker import WorkerSettings
from caducee.storage.interfaces import Storage
from caducee.storage.keyring import create_keyring
from caducee.testing.certs import IssuedCert, TrustSpaceCA
from caducee.trust.listeblanche import DomainEntry, ListeBlanche, save_liste_blanche

PASSWORD = "correct horse battery"


def free_port() -> int:
    """A port free right now (for nodes run as separate processes, whose config is a file)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NodeSpec:
    name: str
    domain: str
    cert: IssuedCert
    keyring: Path
    data_dir: Path
    ports: dict[str, int] = field(default_factory=dict)  # fixed ports (process mode)


@dataclass
class TrustSpace:
    root: Path
    ca: TrustSpaceCA
    liste_path: Path
    nodes: dict[str, NodeSpec]

    def config(
        self,
        name: str,
        *,
        pg_dsn: str | None = None,
        retry_base: float = 0.2,
        lifetime: int = 3600,
    ) -> NodeConfig:
        return NodeConfig.model_validate(self.config_dict(name, pg_dsn, retry_base, lifetime))

    def config_dict(
        self, name: str, pg_dsn: str | None, retry_base: float, lifetime: int
    ) -> dict[str, Any]:
        spec = self.nodes[name]
        ports = spec.ports
        routes = {
            other.domain: f"127.0.0.1:{other.ports['relay']}"
            for other in self.nodes.values()
            if other.name != name and "relay" in other.ports
        }
        storage: dict[str, Any] = {"engine": "sqlite"}
        if pg_dsn:
            storage = {"engine": "postgres", "dsn": pg_dsn, "pool_size": 4}
        return {
            "name": name,
            "data_dir": str(spec.data_dir),
            "domains": [spec.domain],
            "storage": storage,
            "crypto": {"keyring_file": str(spec.keyring)},
            "tls": {
                "cert_file": str(spec.cert.chain_path),
                "key_file": str(spec.cert.key_path),
                "ca_bundle": str(self.ca.ca_bundle),
            },
            "trust": {"liste_blanche": str(self.liste_path), "routes": routes},
            "smtp": {
                "hostname": f"mx.{spec.domain}",
                "relay_listen": f"127.0.0.1:{ports.get('relay', 0)}",
                "submission_listen": f"127.0.0.1:{ports.get('submission', 0)}",
                "queue_lifetime_seconds": lifetime,
                "retry_base_seconds": retry_base,
                "retry_max_seconds": max(retry_base * 4, 1.0),
            },
            "imap": {"listen": "", "listen_tls": ""},  # no IMAP in these tests
        }

    def write_toml(self, name: str, path: Path, **kwargs: Any) -> Path:
        cfg = self.config_dict(
            name,
            kwargs.get("pg_dsn"),
            kwargs.get("retry_base", 0.2),
            kwargs.get("lifetime", 3600),
        )
        path.write_text(_toml(cfg), encoding="utf-8")
        return path


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml(cfg: dict[str, Any]) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    for section, values in cfg.items():
        if not isinstance(values, dict):
            continue
        lines.append(f"\n[{section}]")
        for k, v in values.items():
            if isinstance(v, dict):
                continue
            if v is not None:
                lines.append(f"{k} = {_toml_value(v)}")
        for k, v in values.items():
            if isinstance(v, dict):
                lines.append(f"\n[{section}.{k}]")
                lines += [f'"{kk}" = {_toml_value(vv)}' for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def make_trust_space(root: Path, names: dict[str, str], *, fixed_ports: bool = False) -> TrustSpace:
    """``names``: node name -> its domain."""
    ca = TrustSpaceCA.create(root / "ca")
    nodes: dict[str, NodeSpec] = {}
    entries = []
    for i, (name, domain) in enumerate(names.items()):
        cert = ca.issue_server(f"mx.{domain}", f"1234567890{i:04d}", f"OPERATEUR {name.upper()}")
        keyring = root / name / "keyring"
        keyring.parent.mkdir(parents=True, exist_ok=True)
        create_keyring(keyring)
        ports = {"relay": free_port(), "submission": free_port()} if fixed_ports else {}
        nodes[name] = NodeSpec(name, domain, cert, keyring, root / name / "data", ports)
        entries.append(
            DomainEntry(
                name=domain, dn=cert.subject_dn, description=name, updated=datetime.now(UTC)
            )
        )
    liste_path = root / "listeblanche.xml"
    save_liste_blanche(ListeBlanche(datetime.now(UTC), entries), liste_path)
    return TrustSpace(root, ca, liste_path, nodes)


async def add_user(storage: Storage, address: str) -> None:
    await storage.accounts.create_account(address, PASSWORD)
    await storage.accounts.create_mailbox(address, MailboxType.PER, "810001045367")
    await storage.accounts.grant(address, address, FULL_RIGHTS)


async def start_pair(
    space: TrustSpace, *, pg: dict[str, str] | None = None, retry_base: float = 0.2
) -> dict[str, Operator]:
    """Starts every node on ephemeral ports, then routes each domain to its node's relay."""
    ops: dict[str, Operator] = {}
    for name in space.nodes:
        cfg = space.config(name, pg_dsn=(pg or {}).get(name), retry_base=retry_base)
        op = Operator(cfg, worker_settings=WorkerSettings(idle_seconds=1.0))
        await op.start()
        ops[name] = op
    for name, op in ops.items():
        for other, other_op in ops.items():
            if other != name:
                host, port = other_op.addresses["relay"][0]
                op.add_route(space.nodes[other].domain, f"{host}:{port}")
    return ops


def client_tls(space: TrustSpace) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(space.ca.ca_bundle))
    ctx.check_hostname = False
    return ctx


def submit(
    addr: tuple[str, int],
    space: TrustSpace,
    login: str,
    sender: str,
    rcpts: list[str],
    data: bytes,
    *,
    rcpt_options: list[str] | None = None,
) -> dict[str, tuple[int, bytes]]:
    """One message through submission with smtplib (STARTTLS + AUTH PLAIN); blocking."""
    with smtplib.SMTP(addr[0], addr[1], timeout=30) as client:
        client.starttls(context=client_tls(space))
        client.login(login, PASSWORD)
        return client.sendmail(sender, rcpts, data, rcpt_options=rcpt_options or [])


async def inbox(storage: Storage, address: str, folder: str = "INBOX") -> list[bytes]:
    mb = await storage.accounts.get_mailbox(address)
    assert mb is not None
    f = await storage.messages.get_folder(mb.mailbox_id, folder)
    assert f is not None
    return [
        await storage.blobs.get(m.blob) for m in await storage.messages.list_messages(f.folder_id)
    ]


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


async def wait_until(pred: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await pred():
            await asyncio.sleep(0.02)
