"""The webmail and its identity provider in a sandbox trust space.

``add_web(directory, info, host, port_base)`` is called by ``caducee sandbox init`` once the
operators exist. It creates:

- ``idp/``: the sandbox identity provider (``caducee idp``) with a self-signed HTTPS
  certificate for ``host`` (``idp/tls-cert.pem``, also used by the webmails), one user per PER
  account (login = the address, the same random password as the account, IDNPS from the account;
  no TOTP: a demo convenience, ``caducee idp`` creates TOTP users by default), and one public
  client per operator webmail (``<operator>-webmail``, PKCE, audience ``mssante-<operator>``);
- the directory for the recipient autocomplete and the directory page: the sandbox's directory
  node's store when it has one (``directory_node.store``), else ``directory.db``, generated with
  every sandbox professional;
- in each ``<operator>/node.toml``: the ``[web]`` section (listen on port ``+4``, the
  certificate, the directory, the PER account as administrator) and ``[auth]`` (the issuer);
- in ``sandbox.json``: each operator's ``web`` URL and ``idp`` (issuer, CA file).

``start_idp(directory)`` runs the IdP (``caducee sandbox run`` and ``caducee demo``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from caducee.auth.idp.oauth import IdpSettings
from caducee.auth.idp.provision import ClientSpec, UserSpec, provision
from caducee.auth.idp.server import IdpServer, IdpTls
from caducee.auth.idp.store import IdpStore

__all__ = ["SandboxIdp", "add_web", "describe_web", "idp_port", "start_idp"]


def idp_port(port_base: int, operators: int) -> int:
    """The IdP listens on the first port after the operators' blocks of ten."""
    return port_base + 10 * operators


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _names(address: str) -> tuple[str, str]:
    local = address.split("@")[0]
    parts = [p for p in local.replace("-", " ").split(".") if p]
    given = parts[0].title() if parts else local
    family = " ".join(parts[1:]).title() if len(parts) > 1 else local.title()
    return given, family


def add_web(directory: Path, info: dict[str, Any], host: str, port_base: int) -> None:
    """Adds the IdP, the directory and the webmails to a sandbox being created (see above)."""
    from caducee.cli.idp import _self_signed
    from caducee.directory.sandbox import ExtraPerson, build_sandbox_directory

    idp_dir = directory / "idp"
    idp_dir.mkdir(exist_ok=True)
    cert, key = _self_signed(idp_dir, host)
    operators = info["operators"]
    port = idp_port(port_base, len(operators))
    node = info.get("directory_node")
    shared_db = Path(str(node["store"])) if isinstance(node, dict) and node.get("store") else None
    directory_db = shared_db or directory / "directory.db"
    issuer = f"https://{host}:{port}"
    users: list[UserSpec] = []
    clients: list[ClientSpec] = []
    extra: list[ExtraPerson] = []
    for i, op in enumerate(operators):
        web_port = port_base + 10 * i + 4
        url = f"https://{host}:{web_port}"
        op["web"] = url
        pers = [a for a in op["accounts"] if a["type"] == "PER"]
        for a in pers:
            given, family = _names(a["address"])
            users.append(
                UserSpec(a["login"], a["idnps"], a["password"], False, given, family, "10",
                         a["address"])
            )  # fmt: skip
            extra.append(
                ExtraPerson(family=family, given=given, profession="10", rpps=a["idnps"][1:],
                            mailbox=a["address"])
            )  # fmt: skip
        clients.append(
            ClientSpec(
                f"{op['name']}-webmail",
                (f"mssante-{op['name']}",),
                (f"{url}/auth/callback",),
                name=f"Messagerie {op['name']}",
            )
        )
        admins = ", ".join(_toml(a["login"]) for a in pers)
        config = Path(op["config"])
        text = config.read_text(encoding="utf-8")
        head, sep, _ = text.partition("\n[web]\n")
        text = (head + "\n" if sep else text) + (
            "[web]\n"
            f"listen = {_toml(f'{host}:{web_port}')}\n"
            f"public_url = {_toml(url)}\n"
            f"cert_file = {_toml(str(cert))}\n"
            f"key_file = {_toml(str(key))}\n"
            f"directory_db = {_toml(str(directory_db))}\n"
            f"admins = [{admins}]\n"
            "\n[auth]\n"
            f"oidc_issuer = {_toml(issuer)}\n"
            f"audience = {_toml('mssante-' + op['name'])}\n"
            f"ca_file = {_toml(str(cert))}\n"
        )
        config.write_text(text, encoding="utf-8")
    store = IdpStore(idp_dir)
    try:
        provision(store, users, clients)
    finally:
        store.close()
    if shared_db is None:  # no directory node in this sandbox: a small one of our own
        sd = build_sandbox_directory(directory_db, extra, persons=500, seed=1)
        sd.store.close()
    info["idp"] = {"issuer": issuer, "ca_file": str(cert), "dir": str(idp_dir)}


class SandboxIdp:
    """The IdP as one more server of an operator (``start`` / ``stop`` like the others), so it
    stops with the operator it is attached to."""

    def __init__(self, server: IdpServer) -> None:
        self.server = server

    async def start(self) -> list[tuple[str, int]]:
        return [await self.server.start()]

    async def stop(self) -> None:
        await self.server.stop()


async def start_idp(directory: Path, info: dict[str, Any]) -> SandboxIdp | None:
    """Starts the sandbox IdP described in ``sandbox.json`` (None when it has none)."""
    idp = info.get("idp")
    if not isinstance(idp, dict):
        return None
    issuer = str(idp["issuer"])
    host, _, port = issuer.removeprefix("https://").rpartition(":")
    idp_dir = Path(str(idp.get("dir") or directory / "idp"))
    server = IdpServer(
        idp_dir,
        IdpTls(idp_dir / "tls-cert.pem", idp_dir / "tls-key.pem"),
        host=host,
        port=int(port),
        settings=IdpSettings(issuer=issuer),
    )
    idp = SandboxIdp(server)
    await idp.start()
    return idp


def describe_web(info: dict[str, Any]) -> str:
    """The webmail URLs and demo logins of a sandbox, for ``make demo``."""
    idp = info.get("idp")
    if not isinstance(idp, dict):
        return ""
    lines = [
        "",
        f"Webmail (HTTPS, self-signed sandbox certificate: accept it, or trust {idp['ca_file']}):",
    ]
    for op in info["operators"]:
        if not op.get("web"):
            continue
        lines.append(f"  {op['name']}: {op['web']}/")
        for a in op["accounts"]:
            if a["type"] == "PER":
                lines.append(f"    login {a['login']}  password {a['password']}")
    lines.append(f"  identity provider (Pro Santé Connect-like): {idp['issuer']}")
    lines.append("  the PER account also reaches its ORG and CAB mailboxes (switcher) and /admin")
    return "\n".join(lines)
