"""``caducee sandbox init``: a whole trust space on one machine (issue 2 §8).

Creates, under one directory: a trust authority (``caducee.trust.authority``: a CA hierarchy
shaped like IGC-Santé, root then an "ORGANISATIONS" intermediate, marked SANDBOX; keys
encrypted at rest) that onboards every operator from CSRs (subject ``CN=<mx fqdn>,OU=<1+FINESS
or 3+SIRET>,O=<organisation>,ST=<Département (NN)>,C=FR``, the IGC-Santé structure identifier
form seen in the real list) and publishes the signed liste blanche and the CRLs; for each
operator a key ring, a node configuration (``NodeConfig`` TOML) that refreshes its trust from
the authority (list, CRLs, OCSP), and its storage with demo accounts and mailboxes of the four
types (PER, ORG, APP, CAB) with random passwords; a directory node holding every sandbox
account among a generated population; deliberately bad certificates for the conformance
scenarios; and ``sandbox.json`` (mode 0600) describing every endpoint. The schema of
``sandbox.json`` is documented in ``docs/sandbox.md`` and stays stable.

Layout::

    D/sandbox.json            endpoints, certificates, accounts (secrets: mode 0600)
    D/authority/              the trust authority (authority.json, ca/, public/, passphrase)
    D/ca/                     root.pem, intermediate.pem, ca-bundle.pem (copies)
    D/crl/                    aci.crl (intermediate CRL), acr.crl (root ARL), PEM
    D/liste-blanche.xml       the liste blanche as published at init
    D/directory/              the directory node (directory.db, tls/, auth.json)
    D/<operator>/node.toml    node configuration (paths relative to it)
    D/<operator>/directory.json  where the node publishes its mailboxes
    D/<operator>/tls/         server.{chain,key}.pem, client.{chain,key}.pem
    D/<operator>/crl/         the node's CRLs (refreshed from the authority)
    D/<operator>/keyring      blob key ring (0600)
    D/<operator>/data/        storage (SQLite), trust/ (last good liste blanche)
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

from cryptography import x509

from caducee.config.model import load_config
from caducee.core.errors import Conflict, InvalidInput
from caducee.core.model import MailboxType
from caducee.sandbox.authority import (
    AUTHORITY_HTTP_OFFSET,
    PASSPHRASE_FILE,
    authority_urls,
    issue_for,
    revoke_certificate,
    url_host,
)
from caducee.storage.keyring import create_keyring
from caducee.testing.certs import IssuedCert, TrustSpaceCA
from caducee.trust.authority import LIST_NAME, Authority
from caducee.trust.dn import dn_of_certificate

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
_EXTRA_PORTS = 910  # the authority (+900, +901) and the directory (+902) after the operators
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


def _node_toml(
    plan: OperatorPlan,
    host: str,
    ports: dict[str, int],
    routes: dict[str, str],
    urls: dict[str, str],
    refresh_seconds: int,
) -> str:
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
crl_dir = "crl"
min_version = "TLSv1.2"
# the authority's OCSP responder, asked in addition to the CRLs ("revoked" refuses at once)
ocsp_url = {_toml_str(urls["ocsp_url"])}

[trust]
# Fetched from the sandbox's trust authority (caducee sandbox run serves it), verified by
# checksum and CMS signature; the last good copy is kept in data/trust/.
liste_blanche = {_toml_str(urls["list_url"])}
checksum_url = {_toml_str(urls["checksum_url"])}
signature_url = {_toml_str(urls["signature_url"])}
ca_bundle = "../ca/ca-bundle.pem"
crl_urls = [{_toml_str(urls["crl_url"])}, {_toml_str(urls["arl_url"])}]
refresh_seconds = {refresh_seconds}

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
    refresh_seconds: int = 3600,
) -> dict[str, Any]:
    """Creates the sandbox under ``directory`` and returns the content of ``sandbox.json``.
    ``refresh_seconds``: how often each operator re-fetches the list and CRLs."""
    info, populate = await asyncio.to_thread(
        _build, directory, operators, port_base, host, refresh_seconds
    )
    for node_toml, accounts in populate:
        await _populate_storage(node_toml, accounts)
    info["directory_node"] = await asyncio.to_thread(
        _build_directory, info, populate, host, port_base
    )
    from caducee.web.sandbox import add_web  # the IdP and the webmails (docs/webmail.md)

    await asyncio.to_thread(add_web, Path(info["directory"]), info, host, port_base)
    # sandbox.json last: its presence means "complete"
    data = (json.dumps(info, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    await asyncio.to_thread(_write_private, Path(info["directory"]) / "sandbox.json", data)
    return info


def _build(
    directory: Path, operators: int, port_base: int, host: str, refresh_seconds: int = 3600
) -> tuple[dict[str, Any], list[tuple[Path, list[dict[str, Any]]]]]:
    """Every file but the storage and sandbox.json (blocking; run in a thread)."""
    if port_base < 1024 or port_base + _EXTRA_PORTS > 65535:
        raise InvalidInput(
            f"--port-base must be in 1024-{65535 - _EXTRA_PORTS} (10 ports per operator, "
            f"then the authority and the directory at +{AUTHORITY_HTTP_OFFSET - 1}..)"
        )
    plans = plan_operators(operators)  # validates the count before touching the disk
    directory = directory.resolve()
    if (directory / "sandbox.json").exists():
        raise Conflict(f"{directory} already holds a sandbox (sandbox.json exists)")
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise Conflict(f"{directory} is not empty; choose a new directory")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    # The sandbox CA is the trust authority's CA (issue 4): keys encrypted in D/authority.
    auth_dir = directory / "authority"
    auth_dir.mkdir()
    passphrase = secrets.token_urlsafe(24)
    _write_private(auth_dir / PASSPHRASE_FILE, (passphrase + "\n").encode())
    names = tuple(dict.fromkeys(("localhost", url_host(host), host)))
    auth = Authority.init(
        auth_dir, passphrase.encode(), label="SANDBOX", author="sandbox init", https_names=names
    )
    ca = TrustSpaceCA(directory / "ca", auth.root, auth.intermediate)
    ca.directory.mkdir()
    shutil.copyfile(auth_dir / "ca" / "root.pem", ca.root_path)
    shutil.copyfile(auth_dir / "ca" / "intermediate.pem", ca.intermediate_path)
    shutil.copyfile(auth_dir / "public" / "ca-bundle.pem", ca.ca_bundle)
    urls = authority_urls(host, port_base)

    ports = [{k: port_base + 10 * i + off for k, off in _PORTS.items()} for i in range(operators)]
    routes = {d: f"{host}:{ports[i]['relay']}" for i, p in enumerate(plans) for d in p.domains}

    populate: list[tuple[Path, list[dict[str, Any]]]] = []
    ops_json: list[dict[str, Any]] = []
    for i, plan in enumerate(plans):
        op_dir = directory / plan.name
        (op_dir / "data").mkdir(parents=True)
        auth.add_operator(
            plan.name,
            organisation=plan.organisation,
            structure_id=plan.structure_id,
            state=plan.state,
            domains=list(plan.domains),
            author="sandbox init",
            description=f"Domaine MSSanté (bac à sable) de {plan.organisation}",
            contact=f"01 00 00 00 0{i % 10}, responsable@{plan.domains[0]}",
        )
        tls_dir = op_dir / "tls"
        server, server_chain, server_key = issue_for(
            auth, plan.name, plan.mx, "server", tls_dir, "server"
        )
        _, client_chain, client_key = issue_for(
            auth, plan.name, plan.mx, "client", tls_dir, "client"
        )
        create_keyring(op_dir / "keyring")
        node_toml = op_dir / "node.toml"
        node_toml.write_text(
            _node_toml(plan, host, ports[i], routes, urls, refresh_seconds), encoding="utf-8"
        )
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
                "subject_dn": str(dn_of_certificate(server)),
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

    test_certs = _issue_test_certs(ca, auth, directory, plans[0])
    public = auth_dir / "public"
    liste_path = directory / "liste-blanche.xml"
    shutil.copyfile(public / LIST_NAME, liste_path)
    crl_dir = directory / "crl"
    crl_dir.mkdir()
    for target_plan in [None, *plans]:
        plan_name = None if target_plan is None else target_plan.name
        target = crl_dir if plan_name is None else directory / plan_name / "crl"
        target.mkdir(exist_ok=True)
        for name in ("aci.crl", "acr.crl"):
            shutil.copyfile(public / name, target / name)
        if plan_name is not None:  # the last good copy, so a node starts before the authority
            cache = directory / plan_name / "data" / "trust"
            cache.mkdir()
            shutil.copyfile(public / LIST_NAME, cache / "liste-blanche.xml")

    info: dict[str, Any] = {
        "version": SCHEMA_VERSION,
        "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "directory": str(directory),
        "ca_bundle": str(ca.ca_bundle),
        "crl_dir": str(crl_dir),
        "liste_blanche": str(liste_path),
        "authority": {
            "directory": str(auth_dir),
            "passphrase_file": str(auth_dir / PASSPHRASE_FILE),
            **urls,
        },
        "operators": ops_json,
        "test_certs": test_certs,
    }
    return info, populate


def _issue_test_certs(
    ca: TrustSpaceCA, auth: Authority, directory: Path, plan: OperatorPlan
) -> dict[str, Any]:
    """Certificates for the conformance scenarios (serverAuth + clientAuth, usable inbound and
    outbound), all claiming to be operator ``plan``:
    expired, revoked, issued by another CA, DN not listed, CN listed but DN different.
    ``cert-valide`` and ``cert-revoque`` are issued by the authority (known to its OCSP
    responder: good and revoked); the others are made directly with the CA keys."""
    out_dir = directory / "test-certs"
    other = TrustSpaceCA.create_other(out_dir / "other-ca")
    ident = (plan.mx, plan.structure_id, plan.organisation, plan.state)
    cases: dict[str, IssuedCert] = {
        "cert-expire": ca.issue_server(*ident, expired=True, name="cert-expire"),
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
    }
    result: dict[str, Any] = {}
    for case, cert in cases.items():
        chain, key = _place(cert, out_dir, case)
        result[case] = {"cert": str(chain), "key": str(key), "subject_dn": cert.subject_dn}
    for case in ("cert-revoque", "cert-valide"):
        leaf, chain, key = issue_for(auth, plan.name, plan.mx, "server", out_dir, case)
        result[case] = {
            "cert": str(chain),
            "key": str(key),
            "subject_dn": str(dn_of_certificate(leaf)),
        }
        if case == "cert-revoque":
            revoke_certificate(
                auth, leaf.serial_number, author="sandbox init", reason="cert-revoque scenario"
            )
    shutil.rmtree(ca.directory / "issued", ignore_errors=True)
    return dict(sorted(result.items(), key=lambda kv: _CASE_ORDER.index(kv[0])))


_CASE_ORDER = (
    "cert-valide",
    "cert-expire",
    "cert-revoque",
    "cert-non-igc",
    "cert-no-match",
    "cert-cn-diff-dn",
)


def init_sandbox(
    directory: Path,
    *,
    operators: int = 2,
    port_base: int = DEFAULT_PORT_BASE,
    host: str = "127.0.0.1",
    refresh_seconds: int = 3600,
) -> dict[str, Any]:
    """Synchronous :func:`create_sandbox` (for the CLI)."""
    return asyncio.run(
        create_sandbox(
            directory,
            operators=operators,
            port_base=port_base,
            host=host,
            refresh_seconds=refresh_seconds,
        )
    )


def _build_directory(
    info: dict[str, Any],
    populate: list[tuple[Path, list[dict[str, Any]]]],
    host: str,
    port_base: int,
) -> dict[str, Any]:
    """The directory node: population, sandbox mailboxes, TLS certificate, publication files."""
    from caducee.sandbox.authority import url_host
    from caducee.sandbox.directory import build_directory

    directory = Path(info["directory"])
    auth = Authority.open(
        Path(info["authority"]["directory"]),
        Path(info["authority"]["passphrase_file"]).read_text(encoding="utf-8").split()[0].encode(),
    )
    ca = TrustSpaceCA(directory / "ca", auth.root, auth.intermediate)
    names = list(dict.fromkeys(("localhost", url_host(host))))
    cert = ca.issue_server(
        names[0], None, "AUTORITE SANDBOX", None, client=False, dns_names=names, name="directory"
    )
    chain, key = _place(cert, directory / "directory" / "tls", "server")
    shutil.rmtree(ca.directory / "issued", ignore_errors=True)
    holders = {str(a["address"]): str(a["holder"]) for _, accs in populate for a in accs}
    ops = []
    for op in info["operators"]:
        client = x509.load_pem_x509_certificate(Path(op["client_cert"]).read_bytes())
        ops.append({**op, "client_dn": client.subject.rfc4514_string()})
    return build_directory(directory, host, port_base, ops, holders, (chain, key, ca.ca_bundle))
