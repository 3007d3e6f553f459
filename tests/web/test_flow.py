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


async def test_attachments_preview_download_reply_forward(w: World) -> None:
    paul = "paul.martin@ch-exemple.mssante.test"
    nurse = "ines.moreau@ch-exemple.mssante.test"
    async with w.client("chu") as c:
        await web_login(w, c, "infirmiere")
        form = await c.get("/ecrire")
        files = [
            ("pieces", ("cr.pdf", b"%PDF-1.4 test", "application/pdf")),
            ("pieces", ("x.svg", b"<svg onload='alert(1)'/>", "image/svg+xml")),
        ]
        data = {"csrf": csrf_of(form.text), "bal": nurse, "to": paul, "subject": "Deux pièces",
                "body": "ligne 1\nligne 2"}  # fmt: skip
        resp = await c.post("/ecrire", data=data, files=files)
        assert resp.status_code == 303
        sent = await c.get(resp.headers["location"])
        assert "cr.pdf" in sent.text and "x.svg" in sent.text
        uid = resp.headers["location"].rsplit("uid=", 1)[1].split("&")[0]
        q = {"bal": nurse, "dossier": "Sent", "uid": uid}
        pdf = await c.get("/piece", params={**q, "n": "0", "apercu": "1"})
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"].startswith("inline")
        assert pdf.content == b"%PDF-1.4 test"
        svg = await c.get("/piece", params={**q, "n": "1", "apercu": "1"})
        assert svg.headers["content-type"] == "application/octet-stream"  # never rendered
        assert svg.headers["content-disposition"].startswith("attachment")
        assert "sandbox" in svg.headers["content-security-policy"]
        reply = await c.get("/ecrire", params={**q, "mode": "repondre"})
        assert "Re: Deux pièces" in reply.text and "&gt; ligne 2" in reply.text
        fwd = await c.get("/ecrire", params={**q, "mode": "transferer"})
        assert "Tr: Deux pièces" in fwd.text and "Transférées avec le message : cr.pdf" in fwd.text
        resp = await c.post(
            "/ecrire",
            data={"csrf": csrf_of(fwd.text), "bal": nurse, "to": paul, "subject": "Tr",
                  "fwd_bal": nurse, "fwd_dossier": "Sent", "fwd_uid": uid},
        )  # fmt: skip
        assert resp.status_code == 303
        again = await c.get(resp.headers["location"])
        assert "cr.pdf" in again.text and "x.svg" in again.text
        # forwarding a message of a mailbox one cannot read is refused
        other = "claire.lefevre-dupont@medecin.mssante.test"
        data = {"csrf": csrf_of(fwd.text), "bal": nurse, "to": paul, "subject": "x",
                "fwd_bal": other, "fwd_uid": "1"}  # fmt: skip
        assert (await c.post("/ecrire", data=data)).status_code == 403


async def test_admin_delegates_a_mailbox(tmp_path: Path) -> None:
    admins = {"chu": ["ines.moreau@ch-exemple.mssante.test"]}
    async with world(tmp_path, admins=admins) as w:
        paul = "paul.martin@ch-exemple.mssante.test"
        org = "secretariat@ch-exemple.mssante.test"
        async with w.client("chu") as c:
            await web_login(w, c, "autre")
            assert (await c.get("/courrier", params={"bal": org})).status_code == 403
            token = csrf_of((await c.get("/courrier")).text)
            data = {"csrf": token, "login": paul, "bal": org, "droits": "lrs", "action": "donner"}
            assert (await c.post("/admin/delegations", data=data)).status_code == 403
            async with w.client("chu") as admin:
                await web_login(w, admin, "infirmiere")
                page = await admin.get("/admin")
                assert page.status_code == 200 and "File d'envoi" in page.text
                data["csrf"] = csrf_of(page.text)
                resp = await admin.post("/admin/delegations", data=data)
                assert resp.status_code == 303 and "m=ok" in resp.headers["location"]
            assert (await c.get("/courrier", params={"bal": org})).status_code == 200
            # read-only delegation ("lrs"): no sending from it
            form = (await c.get("/ecrire")).text
            senders = form[form.index('<select id="de"') :].split("</select>")[0]
            assert f'value="{org}"' not in senders and f'value="{paul}"' in senders
