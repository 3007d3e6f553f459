"""The directory node of the sandbox (issue 5 §8) and mailbox publication by its operators.

``sandbox init`` builds ``D/directory/directory.db`` (SQLite) with a generated population
(:func:`caducee.directory.sandbox.build_sandbox_directory`) that includes every sandbox
account: each PER account is a practitioner with its PER mailbox; the CAB mailbox is published
on the same practitioner, ORG and APP mailboxes on the organisation where that practitioner
works. ``sandbox run`` serves the FHIR API (``caducee.directory.api``) over HTTPS at port base
+ 902; operators present their client certificate (mutual TLS, optional for public reads).

Publication: each operator directory holds ``directory.json`` beside its ``node.toml``
(``{"store": ..., "fhir_url": ..., "domains": [...]}``). ``caducee mailbox add`` / ``delete``
on such a node publishes or withdraws the mailbox (``publish_mailbox`` /
``unpublish_mailbox`` of ``caducee.directory.publication``, restricted to the node's domains),
so a new mailbox is findable through ``GET /Practitioner?mailbox-mss=...`` at once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from caducee.core.errors import CaduceeError

__all__ = [
    "DIRECTORY_OFFSET",
    "PUBLICATION_FILE",
    "build_directory",
    "publication_settings",
    "publish_node_mailbox",
    "serve_directory",
    "unpublish_node_mailbox",
]

log = logging.getLogger(__name__)

DIRECTORY_OFFSET = 902
PUBLICATION_FILE = "directory.json"
_PERSONS = 300  # generated professionals beside the sandbox accounts (fast to build)


def build_directory(
    directory: Path,
    host: str,
    port_base: int,
    operators: list[dict[str, Any]],
    holders: dict[str, str],
    tls: tuple[Path, Path, Path],
) -> dict[str, Any]:
    """Builds the sandbox directory; returns the ``directory`` object of sandbox.json.
    ``holders`` maps each mailbox address to its holder id (IDNPS for PER)."""
    from caducee.directory.model import Mailbox
    from caducee.directory.publication import publish_mailbox
    from caducee.directory.sandbox import ExtraPerson, build_sandbox_directory

    dir_dir = directory / "directory"
    dir_dir.mkdir(exist_ok=True)
    db = dir_dir / "directory.db"
    extra: list[ExtraPerson] = []
    per_of: dict[str, str] = {}  # operator name -> PER address
    for op in operators:
        for acc in op["accounts"]:
            if acc["type"] != "PER":
                continue
            given, _, family = acc["address"].split("@")[0].partition(".")
            idnps = holders[acc["address"]]
            extra.append(
                ExtraPerson(
                    family=(family or given).replace("-", " ").title(),
                    given=given.title(),
                    rpps=idnps[1:],
                    mailbox=acc["address"],
                    structure=op["organisation"],
                )
            )
            per_of[op["name"]] = acc["address"]
    built = build_sandbox_directory(db, extra, persons=_PERSONS, seed=7)
    store = built.store
    try:
        for op in operators:
            per = per_of.get(op["name"])
            if per is None:
                continue
            idnps = holders[per]
            persons = store.get_persons([idnps])
            org_key = next((a.org_key for a in persons[0].activities if a.org_key), "")
            for acc in op["accounts"]:
                kind = acc["type"]
                if kind == "CAB":
                    box = Mailbox(acc["address"], "CAB", idnps=idnps)
                elif kind in ("ORG", "APP") and org_key:
                    box = Mailbox(acc["address"], kind, org_key=org_key)
                else:
                    continue
                publish_mailbox(store, box, operator_domains=op["domains"])
    finally:
        store.close()
    cert, key, ca_bundle = tls
    port = port_base + DIRECTORY_OFFSET
    from caducee.sandbox.authority import url_host

    fhir_url = f"https://{url_host(host)}:{port}"
    auth_table = {
        "operators": {op["client_dn"]: op["domains"] for op in operators if "client_dn" in op}
    }
    (dir_dir / "auth.json").write_text(json.dumps(auth_table, indent=2) + "\n", encoding="utf-8")
    for op in operators:
        settings = {
            "store": str(db),
            "fhir_url": fhir_url,
            "domains": op["domains"],
            "client_cert": op["client_cert"],
            "client_key": op["client_key"],
            "ca_bundle": str(ca_bundle),
        }
        (Path(op["config"]).parent / PUBLICATION_FILE).write_text(
            json.dumps(settings, indent=2) + "\n", encoding="utf-8"
        )
    return {
        "fhir_url": fhir_url,
        "listen": f"{host}:{port}",
        "store": str(db),
        "server_cert": str(cert),
        "server_key": str(key),
        "ca_bundle": str(ca_bundle),
        "auth_table": str(dir_dir / "auth.json"),
    }


def publication_settings(config_path: Path) -> dict[str, Any] | None:
    """The publication settings beside a node's configuration, if it publishes."""
    path = config_path.parent / PUBLICATION_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def _contact_point(address: str, mtype: str, description: str) -> dict[str, Any]:
    from caducee.directory.codes import URL_MAILBOX_METADATA

    meta: list[dict[str, Any]] = [
        {"url": "type", "valueCodeableConcept": {"coding": [{"code": mtype}]}}
    ]
    if description:
        meta.append({"url": "description", "valueString": description})
    return {
        "system": "email",
        "value": address,
        "extension": [{"url": URL_MAILBOX_METADATA, "extension": meta}],
    }


def _operation(kind: str, op: str, address: str, value: dict[str, Any] | None) -> dict[str, Any]:
    path = f"{kind}.telecom" if op == "insert" else f"{kind}.telecom.where(value = '{address}')"
    parts: list[dict[str, Any]] = [
        {"name": "type", "valueCode": op},
        {"name": "path", "valueString": path},
    ]
    if value is not None:
        parts.append({"name": "value", "valueContactPoint": value})
    return {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": parts}]}


def _target(mtype: str, holder: str) -> tuple[str, str] | None:
    """(resource type, conditional identifier) of the resource holding a mailbox."""
    from caducee.directory.codes import SYS_IDNPS

    if mtype == "PER":
        return "Practitioner", f"{SYS_IDNPS}|{holder}"
    if mtype in ("ORG", "APP"):
        return "Organization", f"|{holder}"
    return None  # CAB: its practitioner is not known from a SIRET/FINESS holder


class _Unreachable(Exception):
    """The directory node does not answer (the sandbox is not running)."""


def _patch(settings: dict[str, Any], kind: str, ident: str, body: dict[str, Any]) -> str | None:
    """FHIR PATCH (conditional, by identifier) over mutual TLS with the operator's client
    certificate (notes §5.3); None on success, else the directory's reason."""
    import ssl

    import httpx

    ctx = ssl.create_default_context(cafile=str(settings["ca_bundle"]))
    ctx.load_cert_chain(str(settings["client_cert"]), str(settings["client_key"]))
    try:
        with httpx.Client(verify=ctx, timeout=10) as client:
            resp = client.patch(
                f"{settings['fhir_url']}/{kind}",
                params={"identifier": ident},
                content=json.dumps(body).encode(),
                headers={"Content-Type": "application/fhir+json"},
            )
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise _Unreachable(str(exc)) from exc
    if resp.status_code == 200:
        return None
    try:
        issue = resp.json()["issue"][0]
        reason = str(issue.get("diagnostics") or issue.get("details", {}).get("text"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        reason = resp.text[:200]
    return f"HTTP {resp.status_code}: {reason}"


def publish_node_mailbox(
    config_path: Path, address: str, mtype: str, holder: str, display_name: str = ""
) -> str | None:
    """Publishes a new mailbox of the node in the directory; returns a one-line note (what
    happened), or None when the node does not publish. The FHIR PATCH route over mutual TLS
    when the directory node runs; directly in its store when it does not. Never raises for a
    directory refusal: the mailbox exists on the node either way."""
    settings = publication_settings(config_path)
    if settings is None:
        return None
    target = _target(mtype, holder)
    if target is None:
        return f"not published in the directory: {address} (a CAB needs a practitioner)"
    if "client_cert" in settings:
        body = _operation(
            target[0], "insert", address, _contact_point(address, mtype, display_name)
        )
        try:
            problem = _patch(settings, target[0], target[1], body)
        except _Unreachable:
            pass  # the sandbox is not running: straight into the store
        else:
            if problem is not None:
                return f"not published in the directory: {problem}"
            return f"published in the directory (FHIR PATCH {settings['fhir_url']}/{target[0]})"
    return _publish_in_store(settings, address, mtype, holder, display_name)


def _publish_in_store(
    settings: dict[str, Any], address: str, mtype: str, holder: str, display_name: str
) -> str:
    from caducee.directory.model import Mailbox
    from caducee.directory.open import open_store
    from caducee.directory.publication import publish_mailbox

    store = open_store(str(settings["store"]))
    try:
        box = Mailbox(address, mtype, description=display_name)
        if mtype == "PER":
            box = replace(box, idnps=holder)
        else:
            org = _org_of(store, holder)
            if org is None:
                return f"not published in the directory: no organisation {holder}"
            box = replace(box, org_key=org)
        publish_mailbox(store, box, operator_domains=list(settings.get("domains") or []))
    except CaduceeError as exc:
        return f"not published in the directory: {exc}"
    finally:
        store.close()
    return f"published in the directory store ({settings['store']})"


def _org_of(store: Any, holder: str) -> str | None:
    """The directory key of an organisation from its SIRET/FINESS (or the key itself)."""
    from caducee.directory.store import OrgQuery

    for key in (holder, "1" + holder, "3" + holder):
        if store.get_orgs([key]):
            return key
    found = store.search_orgs(OrgQuery(identifiers=(holder,)), 0, 2)
    return str(found[0]) if len(found) == 1 else None


def unpublish_node_mailbox(
    config_path: Path, address: str, mtype: str = "", holder: str = ""
) -> str | None:
    """Withdraws a deleted mailbox from the directory (None when the node does not publish
    or the mailbox was not published): FHIR PATCH ``delete`` when the directory runs and the
    holder is known, else directly in its store."""
    settings = publication_settings(config_path)
    if settings is None:
        return None
    target = _target(mtype, holder) if mtype and holder else None
    if target is not None and "client_cert" in settings:
        body = _operation(target[0], "delete", address.lower(), None)
        try:
            problem = _patch(settings, target[0], target[1], body)
        except _Unreachable:
            pass
        else:
            if problem is None:
                return "withdrawn from the directory (FHIR PATCH)"
            if "HTTP 404" not in problem:
                return f"not withdrawn from the directory: {problem}"
            return None
    from caducee.directory.open import open_store
    from caducee.directory.publication import unpublish_mailbox

    store = open_store(str(settings["store"]))
    try:
        gone = unpublish_mailbox(
            store, address, operator_domains=list(settings.get("domains") or [])
        )
    except CaduceeError as exc:
        return f"not withdrawn from the directory: {exc}"
    finally:
        store.close()
    return "withdrawn from the directory store" if gone else None


async def serve_directory(info: dict[str, Any], listen: str | None = None) -> Any:
    """Starts the directory's FHIR API (HTTPS, client certificates optional) in this event
    loop; returns the uvicorn server (set ``should_exit`` and await its task to stop)."""
    import asyncio

    import uvicorn

    from caducee.directory.api import build_app
    from caducee.directory.open import open_store
    from caducee.directory.publication import PatchHandler
    from caducee.directory.server import load_auth_table, uvicorn_config

    store = open_store(str(info["store"]))
    auth = load_auth_table(Path(str(info["auth_table"])))
    app = build_app(
        store, auth=auth, base_url=str(info["fhir_url"]), publisher=PatchHandler(store, auth)
    )
    host, _, port = str(listen or info["listen"]).rpartition(":")
    config = uvicorn_config(
        app,
        host,
        int(port),
        certfile=Path(str(info["server_cert"])),
        keyfile=Path(str(info["server_key"])),
        client_ca=Path(str(info["ca_bundle"])),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="sandbox-directory")
    deadline = asyncio.get_running_loop().time() + 30
    while not server.started:
        if task.done():
            task.result()
            raise OSError("the sandbox directory stopped while starting")
        if asyncio.get_running_loop().time() > deadline:
            raise OSError("the sandbox directory did not start within 30 s")
        await asyncio.sleep(0.02)
    return server, task, store
