"""The operator as wired by ``app.Operator`` (with an ``[auth]`` issuer): Python ``imaplib`` and
``curl`` log in to its IMAP and SMTP submission with XOAUTH2 / OAUTHBEARER tokens of the
identity provider, the same tokens the webmail gets, and only for the mailboxes the
professional holds or is delegated on."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from caducee.auth.client import OidcClient, headless_login, xoauth2_response

from .harness import ORG_BOX, PASSWORD, World, world

pytestmark = pytest.mark.e2e
NURSE = "ines.moreau@ch-exemple.mssante.test"
PAUL = "paul.martin@ch-exemple.mssante.test"


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as ww:
        yield ww


async def _token(w: World, user: str) -> str:
    client = OidcClient(
        w.idp.issuer, "chu-webmail", f"{w.urls['chu']}/auth/callback", verify=w.ssl_context()
    )
    return (await headless_login(client, user, PASSWORD, w.code(user))).access_token


async def test_imaplib_xoauth2_on_the_wired_operator(w: World) -> None:
    op = w.ops["chu"]
    host, port = op.addresses["imap"][0]
    token = await _token(w, "infirmiere")
    ctx = ssl.create_default_context(cafile=str(op.cfg.tls.ca_bundle))
    ctx.check_hostname = False  # dialing 127.0.0.1; the chain is verified

    def login(user: str) -> tuple[str, str]:
        c = imaplib.IMAP4(host, port, timeout=20)
        try:
            c.starttls(ssl_context=ctx)
            try:
                c.authenticate("XOAUTH2", lambda _: xoauth2_response(user, token))
            except imaplib.IMAP4.error:
                return "refused", ""
            typ, _ = c.select(f'"{user}"' if user == ORG_BOX else "INBOX")
            return "ok", typ
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                c.logout()

    assert (await asyncio.to_thread(login, NURSE))[0] == "ok"
    assert (await asyncio.to_thread(login, ORG_BOX))[0] == "ok"  # delegated
    assert (await asyncio.to_thread(login, PAUL))[0] == "refused"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_submission_with_the_idp_token(w: World) -> None:
    op = w.ops["chu"]
    host, port = op.addresses["submission"][0]
    token = await _token(w, "infirmiere")
    msg = Path(w.ca_files[0]).parent.parent / "m.eml"
    msg.write_bytes(
        f"From: <{NURSE}>\r\nTo: <{PAUL}>\r\nSubject: par curl\r\n\r\nBonjour\r\n".encode()
    )
    mx = op.cfg.smtp.hostname

    async def curl(sender: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "curl", "--silent", "--show-error", "--verbose",
            "--url", f"smtp://{mx}:{port}", "--resolve", f"{mx}:{port}:{host}",
            "--ssl-reqd", "--cacert", str(op.cfg.tls.ca_bundle),
            "--user", NURSE, "--oauth2-bearer", token,
            "--mail-from", sender, "--mail-rcpt", PAUL, "--upload-file", str(msg),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return int(proc.returncode or 0), out.decode("utf-8", "replace")

    code, out = await curl(NURSE)
    assert code == 0, out
    assert "AUTH OAUTHBEARER" in out or "AUTH XOAUTH2" in out
    code, out = await curl(PAUL)  # a mailbox she neither holds nor is delegated on
    assert code != 0 and "550" in out
