"""``caducee sandbox init``: a whole trust space on one machine (issue 2 §8).

Creates, under one directory: a CA hierarchy shaped like IGC-Santé (root, then an
"ORGANISATIONS" intermediate, marked SANDBOX), CRLs, a server and a client certificate per
operator with subject ``CN=<mx fqdn>,OU=<1+FINESS or 3+SIRET>,O=<organisation>,
ST=<Département (NN)>,C=FR`` (the IGC-Santé structure identifier form seen in the real list),
a liste blanche in the real XML schema, for each operator a key ring, a node configuration
(``NodeConfig`` TOML) and its storage with demo accounts and mailboxes of the four types
(PER, ORG, APP, CAB) with random passwords, a set of deliberately bad certificates for the
conformance scenarios, and ``sandbox.json`` (mode 0600) describing every endpoint. The schema of
``sandbox.json`` is documented in ``docs/sandbox.md`` and stays stable.

Layout::

    D/sandbox.json            endpoints, certificates, accounts (secrets: mode 0600)
    D/ca/                     root.pem, intermediate.pem, ca-bundle.pem, private/, issued/
    D/crl/                    aci.crl (intermediate CRL), acr.crl (root ARL), PEM
    D/liste-blanche.xml       the liste blanche of the sandbox
    D/<operator>/node.toml    node configuration (paths relative to it)
    D/<operator>/tls/         server.{chain,key}.pem, client.{chain,key}.pem
    D/<operator>/keyring      blob key ring (0600)
    D/<operator>/data/        storage (SQLite)
    D/test-certs/             bad certificates: expired, revoked, other CA, DN not listed...
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caducee.config.model import load_config
from caducee.core.errors import Conflict, InvalidInput
from caducee.core.model import MailboxType
from caducee.storage.keyring import create_keyring
from caducee.testing.certs import IssuedCert, TrustSpaceCA
from caducee.trust.listeblanche import DomainEntry, ListeBlanche, save_liste_blanche

__all__ = [
    "SCHEMA_VERSION",
    "OperatorPlan",
    "create_sandbox",
    "init_sandbox",
    "luhn_complete",
    "plan_operators",
]

SCHEMA_VERSION = 1
DEFAULT_PORT_BASE = 12500
_PORTS = {"relay": 0, "submission": 1, "imap": 2, "imaps": 3, "web": 4}
_FULL_RIGHTS = "lrswipkxtea"  # RFC 4314: everything
_DELEGATE_RIGHTS = "lrswipte"  # read, write, post, delete; no admin


def luhn_complete(digits: str) -> str:
    """Appends the Luhn check digit (SIRET and FINESS numbers are Luhn-valid)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return digits + str((10 - total % 10) % 10)


@dataclass(frozen=True)
class OperatorPlan:
    """Who an operator of the sandbox is."""

    name: str
    organisation: str
    structure_id: str  # IGC-Santé form: "1" + FINESS or "3" + SIRET
    state: str  # ST=<Département (NN)>
    domains: tuple[str, ...]
    people: tuple[str, str]  # PER mailbox local part, CAB mailbox local part

    @property
    def mx(self) -> str:
        return f"mx.{self.domains[0]}"


_KNOWN: tuple[tuple[str, str, str, str, tuple[str, ...], tuple[str, str]], ...] = (
    (
        "ch-exemple",
        "CENTRE HOSPITALIER EXEMPLE SANDBOX",
        "1" + luhn_complete("75999001"),
        "Paris (75)",
        ("ch-exemple.mssante.test",),
        ("camille.martin", "consultations"),
    ),
    (
        "medecin",
        "GIP MESSAGERIE SANDBOX",
        "3" + luhn_complete("9990000100001"),
        "Haute-Garonne (31)",
        ("medecin.mssante.test", "pharmacien.mssante.test"),
        ("jean.dupont", "cabinet-dupont"),
    ),
    (
        "labo-exemple",
        "LABORATOIRE EXEMPLE SANDBOX",
        "3" + luhn_complete("9990000200001"),
        "Rhône (69)",
        ("labo-exemple.mssante.test",),
        ("lea.bernard", "cabinet-bernard"),
    ),
    (
        "ehpad-exemple",
        "EHPAD EXEMPLE SANDBOX",
        "1" + luhn_complete("33999002"),
        "Gironde (33)",
        ("ehpad-exemple.mssante.test",),
        ("hugo.petit", "cabinet-petit"),
    ),
)


def plan_operators(count: int) -> list[OperatorPlan]:
    """The sandbox's operators: four named ones, then ``operateurN``."""
    if not 1 <= count <= 50:
        raise InvalidInput("--operators must be between 1 and 50")
    plans = [OperatorPlan(*row) for row in _KNOWN[:count]]
    for i in range(len(plans), count):
        n = i + 1
        plans.append(
            OperatorPlan(
                name=f"operateur{n}",
                organisation=f"OPERATEUR {n} SANDBOX",
                structure_id="3" + luhn_complete(f"99900{n:04d}0001"),
                state="Nord (59)",
                domains=(f"operateur{n}.mssante.test",),
                people=(f"praticien{n}", f"cabinet{n}"),
            )
        )
    return plans


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON strings are valid TOML basic strings


def _node_toml(plan: OperatorPlan, host: str, ports: dict[str, int], routes: dict[str, str]) -> str:
    def addr(key: str) -> str:
        return _toml_str(f"{host}:{ports[key]}")

    domains = ", ".join(_toml_str(d) for d in plan.domains)
    route_lines = "".join(f"{_toml_str(d)} = {_toml_str(r)}\n" for d, r in sorted(routes.items()))
    return f"""# Node configuration of sandbox operator {plan.name} (made by caducee sandbox init).
# Paths are relative to this file.
name = {_toml_str(plan.name)}
data_dir = "data"
domains = [{domains}]

[storage]
engine = "sqlite"

[crypto]
keyring_file = "keyring"

[tls]
cert_file = "tls/server.chain.pem"
key_file = "tls/server.key.pem"
ca_bundle = "../ca/ca-bundle.pem"
crl_dir = "../crl"
min_version = "TLSv1.2"

[trust]
liste_blanche = "../liste-blanche.xml"
refresh_seconds = 3600

[trust.routes]
{route_lines}
[smtp]
hostname = {_toml_str(plan.mx)}
relay_listen = {addr("relay")}
submission_listen = {addr("submission")}

[imap]
listen = {addr("imap")}
listen_tls = {addr("imaps")}

[web]
# listen = {addr("web")}  (the web front-end comes with its own issue)
"""


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.chmod(0o600)


def _place(cert: IssuedCert, directory: Path, stem: str) -> tuple[Path, Path]:
    """Copies an issued certificate's chain and key under ``directory`` as stem.{chain,key}.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    chain = directory / f"{stem}.chain.pem"
    key = directory / f"{stem}.key.pem"
    shutil.copyfile(cert.chain_path, chain)
    _write_private(key, cert.key_path.read_bytes())
    return chain, key


def _accounts_for(plan: OperatorPlan, index: int) -> list[dict[str, Any]]:
    d = plan.domains[0]
    per, cab = plan.people
    rpps = "8" + luhn_complete(f"1099{index:06d}")  # IDNPS = 8 + RPPS (fictional)
    return [
        {"address": f"{per}@{d}", "type": MailboxType.PER, "holder": rpps},
        {"address": f"secretariat@{d}", "type": MailboxType.ORG, "holder": plan.structure_id},
        {"address": f"{cab}@{d}", "type": MailboxType.CAB, "holder": plan.structure_id},
        {"address": f"resultats@{d}", "type": MailboxType.APP, "holder": plan.structure_id},
    ]


async def _populate_storage(node_toml: Path, accounts: list[dict[str, Any]]) -> None:
    from caducee.storage import open_storage

    cfg = load_config(node_toml)
    storage = await open_storage(cfg)
    try:
        per_login = accounts[0]["login"]
        for acc in accounts:
            display = str(acc["address"]).split("@")[0].replace(".", " ").title()
            await storage.accounts.create_account(
                acc["login"],
                acc["password"],
                display_name=display,
                idnps=acc["holder"] if acc["type"] == MailboxType.PER else None,
            )
            await storage.accounts.create_mailbox(
                acc["address"], acc["type"], acc["holder"], display_name=display
            )
            await storage.accounts.grant(acc["login"], acc["address"], _FULL_RIGHTS)
        # ORG and CAB mailboxes are delegated to several accounts (issue 2 §7)
        for acc in accounts:
            if acc["type"] in (MailboxType.ORG, MailboxType.CAB):
                await storage.accounts.grant(per_login, acc["address"], _DELEGATE_RIGHTS)
    finally:
        await storage.close()


async def create_sandbox(
    directory: Path,
    *,
    operators: int = 2,
    port_base: int = DEFAULT_PORT_BASE,
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """Creates the sandbox under ``directory`` and returns the content of ``sandbox.json``."""
    info, populate = await asyncio.to_thread(_build, directory, operators, port_base, host)
    for node_toml, accounts in populate:
        await _populate_storage(node_toml, accounts)
    from caducee.web.sandbox import add_web  # the IdP, the directory and the webmails

    await asyncio.to_thread(add_web, Path(info["directory"]), info, host, port_base)
    # sandbox.json last: its presence means "complete"
    data = (json.dumps(info, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    await asyncio.to_thread(_write_private, Path(info["directory"]) / "sandbox.json", data)
    return info


def _build(
    directory: Path, operators: int, port_base: int, host: str
) -> tuple[dict[str, Any], list[tuple[Path, list[dict[str, Any]]]]]:
    """Every file but the storage and sandbox.json (blocking; run in a thread)."""
    if port_base < 1024 or port_base + 10 * operators > 65535:
        raise InvalidInput("--port-base must leave room for 10 ports per operator (1024-65535)")
    plans = plan_operators(operators)  # validates the count before touching the disk
    directory = directory.resolve()
    if (directory / "sandbox.json").exists():
        raise Conflict(f"{directory} already holds a sandbox (sandbox.json exists)")
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise Conflict(f"{directory} is not empty; choose a new directory")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    ca = TrustSpaceCA.create(directory / "ca")
    ports = [{k: port_base + 10 * i + off for k, off in _PORTS.items()} for i in range(operators)]
    routes = {d: f"{host}:{ports[i]['relay']}" for i, p in enumerate(plans) for d in p.domains}

    entries: list[DomainEntry] = []
    populate: list[tuple[Path, list[dict[str, Any]]]] = []
    ops_json: list[dict[str, Any]] = []
    for i, plan in enumerate(plans):
        op_dir = directory / plan.name
        (op_dir / "data").mkdir(parents=True)
        ident = (plan.mx, plan.structure_id, plan.organisation, plan.state)
        server = ca.issue_server(*ident, name=f"{plan.name}-server")
        client = ca.issue_client(*ident, name=f"{plan.name}-client")
        server_chain, server_key = _place(server, op_dir / "tls", "server")
        client_chain, client_key = _place(client, op_dir / "tls", "client")
        for domain in plan.domains:
            entries.append(
                DomainEntry(
                    name=domain,
                    dn=server.subject_dn,
                    description=f"Domaine MSSanté (bac à sable) de {plan.organisation}",
                    responsable_contact=f"01 00 00 00 0{i % 10}, responsable@{plan.domains[0]}",
                    support_contact=f"01 00 00 00 0{i % 10}, support@{plan.domains[0]}",
                    updated=now,
                )
            )
        create_keyring(op_dir / "keyring")
        node_toml = op_dir / "node.toml"
        node_toml.write_text(_node_toml(plan, host, ports[i], routes), encoding="utf-8")
        accounts = _accounts_for(plan, i)
        for acc in accounts:
            acc["login"] = acc["address"]
            acc["password"] = secrets.token_urlsafe(18)
        populate.append((node_toml, accounts))
        ops_json.append(
            {
                "name": plan.name,
                "organisation": plan.organisation,
                "structure_id": plan.structure_id,
                "mx": plan.mx,
                "subject_dn": server.subject_dn,
                "domains": list(plan.domains),
                "relay": f"{host}:{ports[i]['relay']}",
                "submission": f"{host}:{ports[i]['submission']}",
                "imap": f"{host}:{ports[i]['imap']}",
                "imaps": f"{host}:{ports[i]['imaps']}",
                "web": None,
                "config": str(node_toml),
                "server_cert": str(server_chain),
                "server_key": str(server_key),
                "client_cert": str(client_chain),
                "client_key": str(client_key),
                "data_dir": str(op_dir / "data"),
                "accounts": [
                    {
                        "login": a["login"],
                        "password": a["password"],
                        "address": a["address"],
                        "type": str(a["type"]),
                        "idnps": a["holder"] if a["type"] == MailboxType.PER else None,
                    }
                    for a in accounts
                ],
            }
        )

    test_certs = _issue_test_certs(ca, directory, plans[0])
    liste_path = directory / "liste-blanche.xml"
    save_liste_blanche(ListeBlanche(now, entries), liste_path)
    crl_dir = directory / "crl"
    # CRLs valid for a year: the sandbox must keep working (fail closed on an expired CRL).
    year = now + dt.timedelta(days=365)
    ca.write_crl(crl_dir / "aci.crl", next_update=year)
    ca.write_root_crl(crl_dir / "acr.crl", next_update=year)

    info: dict[str, Any] = {
        "version": SCHEMA_VERSION,
        "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "directory": str(directory),
        "ca_bundle": str(ca.ca_bundle),
        "crl_dir": str(crl_dir),
        "liste_blanche": str(liste_path),
        "authority": None,
        "operators": ops_json,
        "test_certs": test_certs,
    }
    return info, populate


def _issue_test_certs(ca: TrustSpaceCA, directory: Path, plan: OperatorPlan) -> dict[str, Any]:
    """Certificates for the conformance scenarios (serverAuth + clientAuth, usable inbound and
    outbound), all claiming to be operator ``plan``:
    expired, revoked, issued by another CA, DN not listed, CN listed but DN different."""
    out_dir = directory / "test-certs"
    other = TrustSpaceCA.create_other(out_dir / "other-ca")
    ident = (plan.mx, plan.structure_id, plan.organisation, plan.state)
    cases: dict[str, IssuedCert] = {
        "cert-expire": ca.issue_server(*ident, expired=True, name="cert-expire"),
        "cert-revoque": ca.issue_server(*ident, name="cert-revoque"),
        "cert-non-igc": other.issue_server(*ident, name="cert-non-igc"),
        "cert-no-match": ca.issue_server(
            "mx.inconnu.mssante.test",
            "3" + luhn_complete("9990009900001"),
            "OPERATEUR NON LISTE SANDBOX",
            plan.state,
            name="cert-no-match",
        ),
        "cert-cn-diff-dn": ca.issue_server(
            plan.mx, plan.structure_id, plan.organisation + " USURPE", plan.state, name="cn-diff"
        ),
        "cert-valide": ca.issue_server(*ident, name="cert-valide"),
    }
    ca.revoke(cases["cert-revoque"])
    result: dict[str, Any] = {}
    for case, cert in cases.items():
        chain, key = _place(cert, out_dir, case)
        result[case] = {"cert": str(chain), "key": str(key), "subject_dn": cert.subject_dn}
    return result


def init_sandbox(
    directory: Path,
    *,
    operators: int = 2,
    port_base: int = DEFAULT_PORT_BASE,
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """Synchronous :func:`create_sandbox` (for the CLI)."""
    return asyncio.run(
        create_sandbox(directory, operators=operators, port_base=port_base, host=host)
    )
