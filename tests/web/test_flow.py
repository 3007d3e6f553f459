"""The webmail over real HTTPS with httpx: login through the IdP, list, compose, read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .harness import World, csrf_of, web_login, world


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path, admins={"chu": ["ines.moreau@ch-exemple.mssante.test"]}) as ww:
        yield ww


async def test_login_list_send_read(w: World) -> None:
    async with w.client("chu") as c:
        resp = await web_login(w, c, "infirmiere")
        assert resp.status_code == 303, resp.text
        assert resp.headers["location"] == "/courrier"
        page = await c.get("/courrier")
        assert page.status_code == 200
        assert "Boîte de réception" in page.text
        assert "secretariat@ch-exemple.mssante.test" in page.text  # the delegated ORG box
        switched = await c.get("/bal", params={"bal": "secretariat@ch-exemple.mssante.test"})
        assert switched.status_code == 303
        org = await c.get(switched.headers["location"])
        assert "<small>secretariat@ch-exemple.mssante.test</small>" in org.text
        sugg = await c.get("/annuaire/suggestions", params={"q": "lefev"})
        assert sugg.status_code == 200
        addrs = [r["address"] for r in sugg.json()["results"]]
        assert "claire.lefevre-dupont@medecin.mssante.test" in addrs
        form = await c.get("/ecrire")
        resp = await c.post(
            "/ecrire",
            data={
                "csrf": csrf_of(form.text),
                "bal": "ines.moreau@ch-exemple.mssante.test",
                "to": "paul.martin@ch-exemple.mssante.test",
                "subject": "Pansement",
                "body": "Bonjour",
                "ar": "on",
            },
        )
        assert resp.status_code == 303, resp.text
    async with w.client("chu") as c:
        assert (await web_login(w, c, "autre")).status_code == 303
        page = await c.get("/courrier")
        assert "Pansement" in page.text


async def test_directory_page_filters_by_place(w: World) -> None:
    async with w.client("chu") as c:
        await web_login(w, c, "infirmiere")
        lyon = await c.get("/annuaire", params={"q": "lefevre", "lieu": "69"})
        assert "LEFÈVRE-DUPONT" in lyon.text and "claire.lefevre-dupont@" in lyon.text
        paris = await c.get("/annuaire", params={"q": "lefevre dupont", "lieu": "Paris"})
        assert "claire.lefevre-dupont@" not in paris.text


async def test_malformed_parameters_are_not_server_errors(w: World) -> None:
    async with w.client("chu") as c:
        await web_login(w, c, "infirmiere")
        bal = "ines.moreau@ch-exemple.mssante.test"
        assert (await c.get("/courrier", params={"page": "abc"})).status_code == 200
        for params in ({"bal": bal, "uid": "x"}, {"bal": bal, "uid": "1", "dossier": "Nope"}):
            assert (await c.get("/message", params=params)).status_code == 403
        assert (await c.get("/piece", params={"bal": bal, "uid": "1", "n": "z"})).status_code == 403
