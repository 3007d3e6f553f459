"""Mailbox publication by operators: FHIR PATCH over mutual TLS (notes §5.3, openapi-balmss)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from caducee.core.errors import InvalidInput, NotFound, PermissionDenied
from caducee.directory.api import build_app
from caducee.directory.codes import SYS_RPPS, TRE_R257, URL_MAILBOX_METADATA
from caducee.directory.model import Mailbox
from caducee.directory.publication import PatchHandler, publish_mailbox, unpublish_mailbox
from caducee.directory.rows import org_row
from caducee.directory.server import StaticAuthenticator, uvicorn_config
from caducee.directory.store import DirectoryStore, OrgQuery

HELENE, JEAN_MARIE = "810000000017", "810000000025"
TOKEN = "pro-token"


class Env:
    def __init__(self, base: str, pki: Any, store: DirectoryStore, chu: str, chu_domain: str):
        self.base, self.pki, self.store = base, pki, store
        self.chu, self.chu_domain = chu, chu_domain
        self.op_a = pki.issue("operator A")
        self.op_b = pki.issue("operator B")

    def client(self, cert: tuple[Any, Any, str] | None = None) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_path))
        if cert is not None:
            ctx.load_cert_chain(cert[0], cert[1])
        return httpx.Client(base_url=self.base, verify=ctx, timeout=30)


@pytest.fixture(scope="module")
def env(module_store: DirectoryStore, pki: Any, server_thread: Any) -> Iterator[Env]:
    chu = module_store.get_orgs(module_store.search_orgs(OrgQuery(text="chu"), 0, 1))[0]
    chu_domain = chu.mailboxes[0].address.split("@")[1]
    op_a, op_b = pki.issue("operator A"), pki.issue("operator B")
    auth = StaticAuthenticator(
        operators={op_a[2]: ["medecin.mssante.fr", chu_domain], op_b[2]: ["autre.mssante.fr"]},
        tokens={TOKEN: "Dr Pro"},
    )
    app = build_app(module_store, auth=auth, publisher=PatchHandler(module_store, auth))
    cert, key, _ = pki.issue("directory.test", server=True)
    config = uvicorn_config(app, "127.0.0.1", 0, certfile=cert, keyfile=key, client_ca=pki.ca_path)
    with server_thread(config) as srv:
        e = Env(f"https://127.0.0.1:{srv.port}", pki, module_store, chu.key, chu_domain)
        e.op_a, e.op_b = op_a, op_b
        yield e


def _cp(address: str, kind: str = "PER", **meta: Any) -> dict[str, Any]:
    ext: list[dict[str, Any]] = [
        {"url": "type", "valueCodeableConcept": {"coding": [{"system": TRE_R257, "code": kind}]}}
    ]
    for k, v in meta.items():
        key = "valueBoolean" if isinstance(v, bool) else "valueString"
        ext.append({"url": k, key: v})
    return {
        "system": "email",
        "value": address,
        "extension": [{"url": URL_MAILBOX_METADATA, "extension": ext}],
    }


def _op(kind: str, path: str, **value: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "type", "valueCode": kind},
        {"name": "path", "valueString": path},
    ]
    if value:
        parts.append({"name": "value", **value})
    return {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": parts}]}


def _patch(c: httpx.Client, url: str, body: dict[str, Any], **params: str) -> httpx.Response:
    return c.patch(url, params=params, json=body, headers={"Content-Type": "application/fhir+json"})


def _public_boxes(env: Env, kind: str, rid: str) -> list[str]:
    with env.client() as c:
        res = c.get(f"/{kind}/{rid}").json()
    return [t["value"] for t in res.get("telecom", []) if t["system"] == "email"]


def test_insert_replace_delete_per_on_practitioner(env: Env) -> None:
    addr = "helene.lefevre-dupont.cabinet@medecin.mssante.fr"
    path = f"Practitioner.telecom.where(value = '{addr}')"
    with env.client(env.op_a) as c:
        r = _patch(
            c,
            f"/Practitioner/{HELENE}",
            _op("insert", "Practitioner.telecom", valueContactPoint=_cp(addr)),
        )
        assert r.status_code == 200, r.text
        assert addr in [t["value"] for t in r.json()["telecom"]]
        assert addr in _public_boxes(env, "Practitioner", HELENE)
        again = _patch(
            c,
            f"/Practitioner/{HELENE}",
            _op("insert", "Practitioner.telecom", valueContactPoint=_cp(addr)),
        )
        assert again.status_code == 400
        rank = _patch(c, f"/Practitioner/{HELENE}", _op("replace", path + ".rank", valueInteger=1))
        assert rank.status_code == 200
        preferred = [t for t in rank.json()["telecom"] if t.get("rank") == 1]
        assert [t["value"] for t in preferred] == [addr]
        desc = _patch(
            c,
            f"/Practitioner/{HELENE}",
            _op(
                "replace",
                path + f".extension('{URL_MAILBOX_METADATA}').extension('description').value",
                valueString="Cabinet de cardiologie",
            ),
        )
        assert desc.status_code == 200
        assert env.store.find_mailbox(addr)[0].description == "Cabinet de cardiologie"
        gone = _patch(c, f"/Practitioner/{HELENE}", _op("delete", path))
        assert gone.status_code == 200
    assert addr not in _public_boxes(env, "Practitioner", HELENE)
    assert env.store.find_mailbox(addr) == []


def test_liste_rouge_hides_from_public(env: Env) -> None:
    addr = "jm.delafontaine.prive@medecin.mssante.fr"
    with env.client(env.op_a) as c:
        assert (
            _patch(
                c,
                f"/Practitioner/{JEAN_MARIE}",
                _op("insert", "Practitioner.telecom", valueContactPoint=_cp(addr)),
            ).status_code
            == 200
        )
        assert addr in _public_boxes(env, "Practitioner", JEAN_MARIE)
        path = (
            f"Practitioner.telecom.where(value = '{addr}')"
            f".extension('{URL_MAILBOX_METADATA}').extension('listeRouge').value"
        )
        assert (
            _patch(
                c, f"/Practitioner/{JEAN_MARIE}", _op("replace", path, valueBoolean=True)
            ).status_code
            == 200
        )
    assert addr not in _public_boxes(env, "Practitioner", JEAN_MARIE)
    with env.client() as c:
        found = c.get("/Practitioner", params={"mailbox-mss:exact": addr}).json()
    assert "entry" not in found
    assert env.store.find_mailbox(addr)[0].liste_rouge is True


def test_address_and_type_are_immutable(env: Env) -> None:
    addr = "helene.lefevre-dupont@medecin.mssante.fr"
    path = f"Practitioner.telecom.where(value = '{addr}')"
    with env.client(env.op_a) as c:
        other = _patch(
            c, f"/Practitioner/{HELENE}", _op("replace", path, valueContactPoint=_cp("x" + addr))
        )
        retype = _patch(
            c, f"/Practitioner/{HELENE}", _op("replace", path, valueContactPoint=_cp(addr, "CAB"))
        )
        value = _patch(
            c,
            f"/Practitioner/{HELENE}",
            _op("replace", path + ".value", valueString="y@medecin.mssante.fr"),
        )
    assert (other.status_code, retype.status_code, value.status_code) == (400, 400, 400)
    assert "immutable" in other.json()["issue"][0]["diagnostics"]
    assert env.store.find_mailbox(addr)[0].type == "PER"


def test_conditional_patch(env: Env) -> None:
    addr = "helene.teleexpertise@medecin.mssante.fr"
    body = _op("insert", "Practitioner.telecom", valueContactPoint=_cp(addr))
    with env.client(env.op_a) as c:
        ok = _patch(c, "/Practitioner", body, identifier=f"{SYS_RPPS}|10000000017")
        missing = _patch(c, "/Practitioner", body, identifier=f"{SYS_RPPS}|19999999990")
        no_ident = _patch(c, "/Practitioner", body)
    assert ok.status_code == 200 and ok.json()["id"] == HELENE
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    assert no_ident.status_code == 400


def test_conditional_patch_several_matches_is_412(env: Env) -> None:
    with env.store.importing() as s:
        for n in (1, 2):
            f = [""] * 52
            f[19], f[20], f[24], f[35], f[37] = (
                f"99999999900{n:03d}",
                "999999999",
                "SITE",
                "75014",
                "PARIS",
            )
            row = org_row(f, "2026-01-01T00:00:00Z")
            assert row is not None
            s.upsert_orgs([row])
    body = _op(
        "insert", "Organization.telecom", valueContactPoint=_cp(f"accueil@{env.chu_domain}", "ORG")
    )
    with env.client(env.op_a) as c:
        r = _patch(c, "/Organization", body, identifier="http://sirene.fr|999999999")
    assert r.status_code == 412
    assert r.json()["issue"][0]["code"] == "multiple-matches"


def test_org_mailbox_and_domain_ownership(env: Env) -> None:
    mine = f"nouveau-service@{env.chu_domain}"
    body = _op(
        "insert",
        "Organization.telecom",
        valueContactPoint=_cp(mine, "ORG", service="Nouveau service", responsible="Dr X"),
    )
    with env.client(env.op_b) as c:
        denied = _patch(c, f"/Organization/{env.chu}", body)
    assert denied.status_code == 403
    with env.client(env.op_a) as c:
        ok = _patch(c, f"/Organization/{env.chu}", body)
        wrong_type = _patch(
            c,
            f"/Organization/{env.chu}",
            _op(
                "insert",
                "Organization.telecom",
                valueContactPoint=_cp(f"x@{env.chu_domain}", "PER"),
            ),
        )
    assert ok.status_code == 200 and wrong_type.status_code == 400
    assert mine in _public_boxes(env, "Organization", env.chu)
    with env.client() as c:
        public = c.get(f"/Organization/{env.chu}").json()
    meta = next(t for t in public["telecom"] if t["value"] == mine)["extension"][1]["extension"]
    assert {"url": "service", "valueString": "Nouveau service"} in meta
    assert all(m["url"] != "responsible" for m in meta)  # not public


def test_who_may_patch(env: Env) -> None:
    body = _op("insert", "Practitioner.telecom", valueContactPoint=_cp("intrus@medecin.mssante.fr"))
    with env.client() as c:
        anonymous = _patch(c, f"/Practitioner/{HELENE}", body)
        professional = c.patch(
            f"/Practitioner/{HELENE}", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    with env.client(env.pki.issue("unknown operator")) as c:
        unknown = _patch(c, f"/Practitioner/{HELENE}", body)
    assert (anonymous.status_code, professional.status_code, unknown.status_code) == (401, 403, 401)
    rogue = env.pki.issue("rogue operator", other_ca=True)
    with env.client(rogue) as c, pytest.raises(httpx.HTTPError):
        _patch(c, f"/Practitioner/{HELENE}", body)
    assert env.store.find_mailbox("intrus@medecin.mssante.fr") == []


def test_python_api(module_store: DirectoryStore) -> None:
    store = module_store
    box = Mailbox("Cardio.Lyon@medecin.mssante.fr", "PER", idnps=HELENE, rank=1)
    saved = publish_mailbox(store, box, operator_domains=["medecin.mssante.fr"])
    assert saved.address == "cardio.lyon@medecin.mssante.fr" and saved.source == "op"
    with pytest.raises(PermissionDenied):
        publish_mailbox(
            store,
            Mailbox("a@b.mssante.fr", "PER", idnps=HELENE),
            operator_domains=["medecin.mssante.fr"],
        )
    with pytest.raises(InvalidInput, match="cannot change"):
        publish_mailbox(store, Mailbox("cardio.lyon@medecin.mssante.fr", "CAB", idnps=HELENE))
    with pytest.raises(NotFound):
        publish_mailbox(store, Mailbox("z@medecin.mssante.fr", "PER", idnps="899999999999"))
    with pytest.raises(InvalidInput, match="invalid mailbox address"):
        publish_mailbox(store, Mailbox("not an address", "PER", idnps=HELENE))
    assert unpublish_mailbox(store, "cardio.lyon@medecin.mssante.fr") is True
    assert unpublish_mailbox(store, "cardio.lyon@medecin.mssante.fr") is False


def test_oversized_patch_is_refused(env: Env) -> None:
    big = {"resourceType": "Parameters", "parameter": [], "pad": "x" * (300 * 1024)}
    with env.client(env.op_a) as c:
        r = _patch(c, f"/Practitioner/{HELENE}", big)
    assert r.status_code == 400
    assert "larger than" in r.json()["issue"][0]["diagnostics"]


def test_repeated_search_sees_a_publication(env: Env) -> None:
    """The same request before and after a PATCH: the cached answer must not survive it."""
    addr = "helene.cache@medecin.mssante.fr"
    query = {"mailbox-mss:exact": addr}
    with env.client() as c:
        for _ in range(2):  # the second answer comes from the answer cache
            assert "entry" not in c.get("/Practitioner", params=query).json()
    with env.client(env.op_a) as c:
        op = _op("insert", "Practitioner.telecom", valueContactPoint=_cp(addr))
        assert _patch(c, f"/Practitioner/{HELENE}", op).status_code == 200
    with env.client() as c:
        found = c.get("/Practitioner", params=query).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [HELENE]
