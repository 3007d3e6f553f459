"""Two operators with their webmails, one identity provider, one directory: the webmail tests'
world, all real (HTTPS, SMTP relay between operators, SQLite storage), on 127.0.0.1.

- ``chu`` (``ch-exemple.mssante.test``): the nurse Inès Moreau (PER) with a delegation on the
  ORG mailbox ``secretariat@``; Paul Martin, another professional (PER) there.
- ``cabinet`` (``medecin.mssante.test``): the dermatologist Claire Lefèvre-Dupont (PER).
"""

from __future__ import annotations

import contextlib
import html
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from caducee.app import Operator
from caducee.auth.idp.oauth import IdpSettings
from caducee.auth.idp.provision import ClientSpec, UserSpec, provision
from caducee.auth.idp.server import IdpServer, IdpTls
from caducee.auth.totp import totp
from caducee.cli.idp import _self_signed
from caducee.cli.mailbox import FULL_RIGHTS
from caducee.config.model import NodeConfig
from caducee.core.model import MailboxType
from caducee.directory.sandbox import ExtraPerson, build_sandbox_directory
from caducee.smtp.worker import WorkerSettings
from e2e.harness import make_trust_space

PASSWORD = "Mot-de-passe-de-test-1"


@dataclass(frozen=True)
class User:
    key: str
    login: str  # at the IdP
    idnps: str
    address: str
    operator: str
    totp_secret: str
    given: str
    family: str


USERS = {
    "infirmiere": ("Inès", "Moreau", "60", "", "chu", "ines.moreau@ch-exemple.mssante.test"),
    "dermato": ("Claire", "Lefèvre-Dupont", "10", "SM15", "cabinet",
                "claire.lefevre-dupont@medecin.mssante.test"),
    "autre": ("Paul", "Martin", "10", "", "chu", "paul.martin@ch-exemple.mssante.test"),
}  # fmt: skip
DOMAINS = {"chu": "ch-exemple.mssante.test", "cabinet": "medecin.mssante.test"}
ORG_BOX = "secretariat@ch-exemple.mssante.test"


@dataclass
class World:
    ops: dict[str, Operator]
    idp: IdpServer
    urls: dict[str, str]
    users: dict[str, User]
    ca_files: list[Path]

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        for f in self.ca_files:
            ctx.load_verify_locations(cafile=str(f))
        return ctx

    def client(self, op: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.urls[op], verify=self.ssl_context(), timeout=20)

    def code(self, user: str) -> str:
        return totp(self.users[user].totp_secret)


_HIDDEN = re.compile(r'<input type="hidden" name="(csrf|query)" value="([^"]*)"')


async def web_login(
    world: World, client: httpx.AsyncClient, user: str, *, password: str = PASSWORD
) -> httpx.Response:
    """Drives the browser part without a browser: webmail -> IdP form -> callback. Returns the
    last response (a 303 to /courrier on success)."""
    resp = await client.get("/auth/login")
    assert resp.status_code == 302, resp.text
    idp_url = resp.headers["location"]
    async with httpx.AsyncClient(verify=world.ssl_context(), timeout=20) as browser:
        page = await browser.get(idp_url)
        fields = {k: html.unescape(v) for k, v in _HIDDEN.findall(page.text)}
        u = world.users[user]
        resp = await browser.post(
            urljoin(idp_url, "/login/password"),
            data={**fields, "username": u.login, "password": password, "totp": world.code(user)},
        )
        if resp.status_code != 303:
            return resp
        resp = await browser.get(urljoin(idp_url, resp.headers["location"]))
        assert resp.status_code == 302, resp.text
        callback = resp.headers["location"]
    return await client.get(callback)


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF field"
    return m.group(1)


@contextlib.asynccontextmanager
async def world(root: Path, *, admins: dict[str, list[str]] | None = None) -> AsyncIterator[World]:
    space = make_trust_space(root / "ts", DOMAINS)
    idp_dir = root / "idp"
    idp_dir.mkdir()
    idp_cert, idp_key = _self_signed(idp_dir, "127.0.0.1")
    idp = IdpServer(idp_dir, IdpTls(idp_cert, idp_key), settings=IdpSettings(issuer=""))
    await idp.start()
    urls: dict[str, str] = {}  # known once each webmail is bound (port 0)
    specs: list[UserSpec] = []
    for key, (given, family, prof, _sm, _op, addr) in USERS.items():
        specs.append(UserSpec(key, _idnps(key), PASSWORD, True, given, family, prof, addr))
    made = provision(idp.store, specs)
    users = {
        k: User(k, k, _idnps(k), v[5], v[4], made.totp_secrets[k], v[0], v[1])
        for k, v in USERS.items()
    }
    directory_db = root / "directory.db"
    extra = [
        ExtraPerson(family=v[1], given=v[0], profession=v[2], rpps=_idnps(k)[1:], specialty=v[3],
                    postal_code="69003" if v[4] == "cabinet" else "75013",
                    city="LYON" if v[4] == "cabinet" else "PARIS", mailbox=v[5])
        for k, v in USERS.items()
    ]  # fmt: skip
    sd = build_sandbox_directory(directory_db, extra, persons=300, seed=3)
    sd.store.close()
    ops: dict[str, Operator] = {}
    try:
        for name in DOMAINS:
            web_cert, web_key = idp_cert, idp_key  # one self-signed certificate for 127.0.0.1
            raw: dict[str, Any] = space.config_dict(name, None, 0.2, 3600)
            raw["web"] = {
                "listen": "127.0.0.1:0",
                "cert_file": str(web_cert),
                "key_file": str(web_key),
                "directory_db": str(directory_db),
                "admins": (admins or {}).get(name, []),
            }
            raw["imap"] = {"listen": "127.0.0.1:0", "listen_tls": None}
            raw["auth"] = {
                "oidc_issuer": idp.issuer,
                "audience": f"mssante-{name}",
                "ca_file": str(idp_cert),
            }
            op = Operator(
                NodeConfig.model_validate(raw), worker_settings=WorkerSettings(idle_seconds=1.0)
            )
            await op.start()
            ops[name] = op
            urls[name] = op.servers["web"].public_url  # type: ignore[attr-defined]
            client = ClientSpec(
                f"{name}-webmail",
                (f"mssante-{name}",),
                (f"{urls[name]}/auth/callback",),
                name=f"Messagerie {name}",
            )
            provision(idp.store, [], [client])  # fmt: skip
            assert op.storage is not None
            acc = op.storage.accounts
            for u in users.values():
                if u.operator != name:
                    continue
                await acc.create_account(
                    u.address, None, display_name=f"{u.given} {u.family}", idnps=u.idnps
                )
                await acc.create_mailbox(
                    u.address, MailboxType.PER, u.idnps, display_name=f"{u.given} {u.family}"
                )
                await acc.grant(u.address, u.address, FULL_RIGHTS)
            if name == "chu":
                await acc.create_mailbox(
                    ORG_BOX, MailboxType.ORG, "1750000000", display_name="Secrétariat"
                )
                await acc.grant(users["infirmiere"].address, ORG_BOX, FULL_RIGHTS)
        for name, op in ops.items():
            for other, oop in ops.items():
                if other != name:
                    host, port = oop.addresses["relay"][0]
                    op.add_route(DOMAINS[other], f"{host}:{port}")
        cas = [idp_cert]
        yield World(ops, idp, urls, users, cas)
    finally:
        for op in ops.values():
            await op.stop()
        await idp.stop()


def _idnps(key: str) -> str:
    return {"infirmiere": "810000000117", "dermato": "810000000125", "autre": "810000000133"}[key]
