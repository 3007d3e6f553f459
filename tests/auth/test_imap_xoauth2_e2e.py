"""Python ``imaplib`` and curl log in to IMAP with XOAUTH2 / OAUTHBEARER tokens from the IdP.

Real pieces: the IdP over HTTPS, the IMAP server over STARTTLS with our SASL mechanisms, the
SQLite store, imaplib (standard library) and curl (Debian package)."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import shutil
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from caducee.imap.server import ImapServer
from caducee.testing.certs import TrustSpaceCA

from .conftest import (
    RunningIdp,
    add_jeanne,
    authorize_query,
    login_and_get_code,
    node_b_storage,
    pkce,
    token_mechanisms,
    token_of,
)

pytestmark = pytest.mark.e2e


@dataclass
class Imap:
    addr: tuple[str, int]
    ca_bundle: Path


@pytest.fixture
async def imap(
    idp: RunningIdp, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Imap]:
    offered: list[str] = getattr(request, "param", ["OAUTHBEARER", "XOAUTH2"])
    ca = TrustSpaceCA.create(tmp_path / "ca")
    cert = ca.issue_server("imap.b.test", "22222222222222", "OPERATEUR B", "Rhône (69)")
    storage, _keyring = await node_b_storage(tmp_path)
    await add_jeanne(storage, welcome=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.chain_path, cert.key_path)
    mechs = token_mechanisms(idp, storage)
    server = ImapServer(
        None,
        storage,
        ctx,
        storage.accounts,
        listen="127.0.0.1:0",
        mechanisms=[mechs[m] for m in offered],
    )
    (addr,) = await server.start()
    try:
        yield Imap(addr, ca.ca_bundle)
    finally:
        await server.stop()
        await storage.close()


def _imaplib_login(imap: Imap, mech: str, auth: bytes) -> tuple[str, list[bytes]]:
    client = imaplib.IMAP4(*imap.addr, timeout=20)
    try:
        ctx = ssl.create_default_context(cafile=str(imap.ca_bundle))
        ctx.check_hostname = False  # dialing 127.0.0.1; the chain is verified
        client.starttls(ssl_context=ctx)
        client.authenticate(mech, lambda _challenge: auth)
        typ, data = client.select("INBOX")
        typ2, found = client.search(None, "SUBJECT", "bienvenue")
        return f"{typ} {typ2}", [*data, *found]
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


async def test_imaplib_xoauth2(idp: RunningIdp, imap: Imap) -> None:
    token = await token_of(idp)
    auth = f"user=jeanne.dupont@b.test\x01auth=Bearer {token}\x01\x01".encode()
    status, data = await asyncio.to_thread(_imaplib_login, imap, "XOAUTH2", auth)
    assert status == "OK OK"
    assert data == [b"1", b"1"]  # one message in INBOX, found by SEARCH


async def test_imaplib_oauthbearer(idp: RunningIdp, imap: Imap) -> None:
    token = await token_of(idp)
    auth = f"n,a=jeanne.dupont@b.test,\x01auth=Bearer {token}\x01\x01".encode()
    status, _ = await asyncio.to_thread(_imaplib_login, imap, "OAUTHBEARER", auth)
    assert status == "OK OK"


async def test_imaplib_xoauth2_refused_for_wrong_audience_token(
    idp: RunningIdp, imap: Imap
) -> None:
    # a token of the IdP, but for another operator
    idp.server.store.add_client(
        "autre-lps", ["https://lps.example/callback"], audience=["mssante-op2"]
    )
    verifier, challenge = pkce()
    async with idp.http() as c:
        q = authorize_query(challenge, client_id="autre-lps")
        # log in once (for "lps"); the IdP session then serves "autre-lps" without a form
        await login_and_get_code(idp, c, challenge)
        resp = await c.get(f"/authorize?{q}")
        code = parse_qs(urlsplit(resp.headers["location"]).query)["code"][0]
        tok = (
            await c.post(
                "/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": "https://lps.example/callback",
                    "client_id": "autre-lps",
                    "code_verifier": verifier,
                },
            )
        ).json()
    auth = f"user=jeanne.dupont@b.test\x01auth=Bearer {tok['access_token']}\x01\x01".encode()
    with pytest.raises(imaplib.IMAP4.error):
        await asyncio.to_thread(_imaplib_login, imap, "XOAUTH2", auth)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("imap", [["XOAUTH2"]], indirect=True)
async def test_curl_imap_xoauth2(idp: RunningIdp, imap: Imap) -> None:
    token = await token_of(idp)
    host, port = imap.addr
    proc = await asyncio.create_subprocess_exec(
        "curl", "--silent", "--show-error", "--verbose",
        "--url", f"imap://imap.b.test:{port}/INBOX", "--resolve", f"imap.b.test:{port}:{host}",
        "--ssl-reqd", "--cacert", str(imap.ca_bundle),
        "--user", "jeanne.dupont@b.test", "--oauth2-bearer", token,
        "--request", "SEARCH SUBJECT bienvenue",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out_b, _ = await asyncio.wait_for(proc.communicate(), 60)
    out = out_b.decode("utf-8", "replace")
    assert proc.returncode == 0, out
    assert "AUTHENTICATE XOAUTH2" in out
    assert "* SEARCH 1" in out
