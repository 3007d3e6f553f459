"""The sandbox's directory node: every sandbox account is in it, and mailboxes created or
deleted with ``caducee mailbox`` on a sandbox operator are published or withdrawn at once,
as seen through the FHIR API served by the sandbox (issue 5 §6, §8)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from caducee.cli.main import main
from caducee.sandbox.init import create_sandbox
from caducee.sandbox.run import load_sandbox, start_services, stop_all


async def _search(client: httpx.AsyncClient, base: str, kind: str, **params: str) -> Any:
    resp = await client.get(f"{base}/{kind}", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _addresses(bundle: Any) -> set[str]:
    return {
        t["value"]
        for e in bundle.get("entry", [])
        for t in e["resource"].get("telecom", [])
        if "value" in t
    }


@pytest.mark.slow
async def test_mailbox_add_on_an_operator_is_findable_in_the_directory(
    tmp_path: Path, port_base: int, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "sbx"
    info = await create_sandbox(d, operators=2, port_base=port_base)
    node = info["directory_node"]
    assert node["fhir_url"].startswith("https://")
    services = await start_services(load_sandbox(d))
    try:
        ca = ssl.create_default_context(cafile=info["ca_bundle"])
        base = node["fhir_url"]
        op = info["operators"][0]
        async with httpx.AsyncClient(verify=ca, timeout=10) as client:
            # every sandbox PER account is a practitioner with its mailbox
            for o in info["operators"]:
                per = next(a for a in o["accounts"] if a["type"] == "PER")
                found = await _search(
                    client, base, "Practitioner", **{"mailbox-mss": per["address"]}
                )
                assert per["address"] in _addresses(found)
            per = next(a for a in op["accounts"] if a["type"] == "PER")
            found = await _search(client, base, "Practitioner", **{"mailbox-mss": per["address"]})
            idnps = found["entry"][0]["resource"]["id"]

            new = f"nouvelle.adresse@{op['domains'][0]}"
            argv = ["mailbox", "add", "-c", op["config"], new, "--type", "PER",
                    "--holder", idnps, "--no-password"]  # fmt: skip
            assert await asyncio.to_thread(main, argv) == 0
            # through the real route: FHIR PATCH over mutual TLS with the client certificate
            assert "published in the directory (FHIR PATCH" in capsys.readouterr().out
            found = await _search(client, base, "Practitioner", **{"mailbox-mss:exact": new})
            assert found["total"] == 1 and new in _addresses(found)

            argv = ["mailbox", "delete", "-c", op["config"], new, "--yes"]
            assert await asyncio.to_thread(main, argv) == 0
            assert "withdrawn from the directory (FHIR PATCH)" in capsys.readouterr().out
            gone = await _search(client, base, "Practitioner", **{"mailbox-mss:exact": new})
            assert new not in _addresses(gone)
    finally:
        await stop_all(services)


async def test_a_mailbox_of_another_domain_or_unknown_holder_is_not_published(
    tmp_path: Path, port_base: int, capsys: pytest.CaptureFixture[str]
) -> None:
    from caducee.sandbox.directory import publish_node_mailbox

    d = tmp_path / "sbx"
    info = await create_sandbox(d, operators=1, port_base=port_base)
    config = Path(info["operators"][0]["config"])
    note = publish_node_mailbox(config, "x@autre.mssante.test", "PER", "810001000001")
    assert note is not None and "not published" in note and "domain" in note
    argv = ["mailbox", "add", "-c", str(config), f"y@{info['operators'][0]['domains'][0]}",
            "--type", "PER", "--holder", "10001000001", "--no-password"]  # fmt: skip
    assert await asyncio.to_thread(main, argv) == 0  # created on the node all the same
    assert "not published in the directory" in capsys.readouterr().out
    # the directory node is not running: publication goes straight into its store
    op = info["operators"][0]
    per = next(a for a in op["accounts"] if a["type"] == "PER")
    from caducee.directory.open import open_store

    store = open_store(info["directory_node"]["store"])
    try:
        idnps = store.find_mailbox(per["address"])[0].idnps
    finally:
        store.close()
    new = f"z@{op['domains'][0]}"
    note = publish_node_mailbox(config, new, "PER", idnps)
    assert note is not None and note.startswith("published in the directory store")
    store = open_store(info["directory_node"]["store"])
    try:
        assert [m.idnps for m in store.find_mailbox(new)] == [idnps]
    finally:
        store.close()
