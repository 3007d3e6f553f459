"""curl logs in to SMTP submission with XOAUTH2 / OAUTHBEARER and a token from the IdP.

Real pieces end to end: the IdP over HTTPS (login, code + PKCE, token), the submission server
over STARTTLS with our SASL mechanisms, the SQLite store, and curl (Debian package) as the
practice software's mail client (``--oauth2-bearer``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from caducee.config.model import TlsConfig
from caducee.core.model import MailboxType
from caducee.smtp.submission import SubmissionServer
from caducee.storage.interfaces import Storage
from caducee.testing.certs import TrustSpaceCA
from caducee.trust.listeblanche import DomainEntry, ListeBlanche
from caducee.trust.policy import TrustPolicy

from .conftest import (
    RunningIdp,
    add_jeanne,
    node_b_config,
    node_b_storage,
    token_mechanisms,
    token_of,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]


@dataclass
class Submission:
    addr: tuple[str, int]
    ca_bundle: Path
    storage: Storage


@pytest.fixture
async def submission(
    idp: RunningIdp, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Submission]:
    offered: list[str] = getattr(request, "param", ["OAUTHBEARER", "XOAUTH2"])
    ca = TrustSpaceCA.create(tmp_path / "ca")
    server_cert = ca.issue_server("mx.b.test", "22222222222222", "OPERATEUR B", "Rhône (69)")
    storage, keyring = await node_b_storage(tmp_path)
    await add_jeanne(storage)
    await storage.accounts.create_mailbox("bob@b.test", MailboxType.PER, "810000000001")
    tls = TlsConfig(
        cert_file=server_cert.chain_path, key_file=server_cert.key_path, ca_bundle=ca.ca_bundle
    )
    liste = ListeBlanche(
        generated=dt.datetime.now(dt.UTC),
        entries=[DomainEntry(name="b.test", dn=server_cert.subject_dn)],
    )
    cfg = node_b_config(tmp_path, keyring, tls)
    mechs = token_mechanisms(idp, storage)
    server = SubmissionServer(
        cfg, storage, TrustPolicy(tls, liste), mechanisms=[mechs[m] for m in offered]
    )
    (addr,) = await server.start()
    try:
        yield Submission(addr, ca.ca_bundle, storage)
    finally:
        await server.stop()
        await storage.close()


async def _curl_send(sub: Submission, tmp_path: Path, token: str, mech: str) -> tuple[int, str]:
    msg = tmp_path / "msg.eml"
    msg.write_bytes(
        b"From: jeanne.dupont@b.test\r\nTo: bob@b.test\r\nSubject: jeton " + mech.encode()
        + b"\r\n\r\nbonjour\r\n"
    )  # fmt: skip
    host, port = sub.addr
    proc = await asyncio.create_subprocess_exec(
        "curl", "--silent", "--show-error", "--verbose",
        "--url", f"smtp://mx.b.test:{port}", "--resolve", f"mx.b.test:{port}:{host}",
        "--ssl-reqd", "--cacert", str(sub.ca_bundle),
        "--mail-from", "jeanne.dupont@b.test", "--mail-rcpt", "bob@b.test",
        "--upload-file", str(msg),
        "--user", "jeanne.dupont@b.test", "--oauth2-bearer", token,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode("utf-8", "replace")


async def _inbox(sub: Submission, address: str) -> list[bytes]:
    mbox = await sub.storage.accounts.get_mailbox(address)
    assert mbox is not None
    folder = await sub.storage.messages.get_folder(mbox.mailbox_id, "INBOX")
    assert folder is not None
    msgs = await sub.storage.messages.list_messages(folder.folder_id)
    return [await sub.storage.blobs.get(m.blob) for m in msgs]


@pytest.mark.parametrize(
    ("submission", "mech"),
    [(["XOAUTH2"], "XOAUTH2"), (["OAUTHBEARER", "XOAUTH2"], "OAUTHBEARER")],
    indirect=["submission"],
)
async def test_curl_sends_with_bearer_token(
    idp: RunningIdp, submission: Submission, tmp_path: Path, mech: str
) -> None:
    """curl picks OAUTHBEARER when offered; the XOAUTH2 case offers XOAUTH2 only."""
    token = await token_of(idp)
    code, out = await _curl_send(submission, tmp_path, token, mech)
    assert code == 0, out
    assert f"> AUTH {mech}" in out and "< 235 " in out
    (stored,) = await _inbox(submission, "bob@b.test")
    assert f"Subject: jeton {mech}".encode() in stored


@pytest.mark.parametrize("submission", [["XOAUTH2"]], indirect=True)
async def test_curl_with_forged_token_is_refused(
    idp: RunningIdp, submission: Submission, tmp_path: Path
) -> None:
    token = await token_of(idp)
    head, payload, sig = token.split(".")
    code, out = await _curl_send(submission, tmp_path, f"{head}.{payload}.{sig[::-1]}", "XOAUTH2")
    assert code != 0
    # the error challenge of the XOAUTH2 dance ({"status":"401",...}), then curl gives up
    assert "< 334 eyJzdGF0dXMiOiI0MDEi" in out
    assert "curl: (67) Login denied" in out
    assert await _inbox(submission, "bob@b.test") == []
