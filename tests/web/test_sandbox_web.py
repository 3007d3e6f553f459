"""``caducee sandbox init`` adds the identity provider, the directory and the webmails;
``start_sandbox`` runs them: a PER account logs in to its operator's webmail with the login and
password printed by ``make demo``, switches to its delegated ORG mailbox and opens /admin."""

from __future__ import annotations

import html
import random
import re
import ssl
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from caducee.sandbox.init import create_sandbox
from caducee.sandbox.run import start_sandbox, stop_all
from caducee.web.sandbox import describe_web

_HIDDEN = re.compile(r'<input type="hidden" name="(csrf|query)" value="([^"]*)"')


async def test_sandbox_webmail_login(tmp_path: Path) -> None:
    for attempt in range(3):  # fixed sandbox ports: another run on this machine may hold some
        base = random.randrange(30000, 60000, 100)  # a port range, not a secret
        d = tmp_path / f"sb{attempt}"
        info = await create_sandbox(d, operators=2, port_base=base)
        try:
            _, ops = await start_sandbox(d)
            break
        except OSError:
            continue
    else:
        pytest.fail("no free port range for the sandbox")
    assert info["operators"][0]["web"] == f"https://127.0.0.1:{base + 4}"
    text = describe_web(info)
    per = next(a for a in info["operators"][0]["accounts"] if a["type"] == "PER")
    assert per["login"] in text and per["password"] in text
    org = next(a for a in info["operators"][0]["accounts"] if a["type"] == "ORG")
    try:
        ctx = ssl.create_default_context(cafile=info["idp"]["ca_file"])
        async with httpx.AsyncClient(
            base_url=info["operators"][0]["web"], verify=ctx, timeout=20
        ) as c:
            resp = await c.get("/auth/login")
            idp_url = resp.headers["location"]
            page = await c.get(idp_url)
            fields = {k: html.unescape(v) for k, v in _HIDDEN.findall(page.text)}
            resp = await c.post(
                urljoin(idp_url, "/login/password"),
                data={**fields, "username": per["login"], "password": per["password"]},
            )
            assert resp.status_code == 303, resp.text
            resp = await c.get(urljoin(idp_url, resp.headers["location"]))
            resp = await c.get(resp.headers["location"])
            assert resp.headers["location"] == "/courrier"
            inbox = await c.get("/courrier")
            assert per["address"] in inbox.text and org["address"] in inbox.text
            assert (await c.get("/courrier", params={"bal": org["address"]})).status_code == 200
            admin = await c.get("/admin")
            assert admin.status_code == 200 and "Liste blanche" in admin.text
            found = await c.get("/annuaire/suggestions", params={"q": "dupon"})
            addresses = [r["address"] for r in found.json()["results"]]
            assert "jean.dupont@medecin.mssante.test" in addresses
    finally:
        await stop_all(ops)
