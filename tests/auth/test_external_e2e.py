"""SASL EXTERNAL (RFC 4422 Appendix A) with a TLS client certificate, end to end.

An APP mailbox (a lab system) logs in to SMTP submission (``smtplib``) and IMAP (``imaplib``,
STARTTLS and implicit TLS) with its IGC-Santé-shaped organisation certificate: the servers'
TLS contexts come from ``TrustPolicy`` (client certificate optional, CA bundle checked), the
mechanisms from ``[auth]`` (``certificate_logins`` maps the subject DN to the account).
Real pieces: per-run PKI, real sockets, the SQLite store, Python's mail clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import imaplib
import shutil
import smtplib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from caducee.auth.mechanisms import external_mechanism, sasl_mechanisms
from caducee.config.model import TlsConfig
from caducee.core.model import MailboxType
from caducee.imap.server import ImapServer, ImapSettings
from caducee.smtp.sasl import SaslMechanism
from caducee.smtp.submission import SubmissionServer
from caducee.storage.interfaces import Storage
from caducee.testing.certs import IssuedCert, TrustSpaceCA
from caducee.trust.listeblanche import DomainEntry, ListeBlanche
from caducee.trust.policy import TrustPolicy

from .conftest import node_b_config, node_b_storage

pytestmark = pytest.mark.e2e

APP = "automate@b.test"
SIRET = "26750045200011"


@dataclass
class Node:
    smtp: tuple[str, int]
    imap: tuple[str, int]
    imaps: tuple[str, int]
    ca: TrustSpaceCA
    app_cert: IssuedCert
    storage: Storage


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    ca = TrustSpaceCA.create(tmp_path / "ca")
    server_cert = ca.issue_server("mx.b.test", "22222222222222", "OPERATEUR B", "Rhône (69)")
    app_cert = ca.issue_client("automate.labo.test", SIRET, "LABO BIOLOGIE", "Paris (75)")
    storage, keyring = await node_b_storage(tmp_path)
    acc = storage.accounts
    await acc.create_account("labo-automate", None, display_name="Automate du labo")
    await acc.create_mailbox(APP, MailboxType.APP, SIRET)
    await acc.grant("labo-automate", APP, "lrswipkxtea")
    await acc.create_mailbox("bob@b.test", MailboxType.PER, "810000000001")
    blob = await storage.blobs.put(b"From: bob@b.test\r\nSubject: demande\r\n\r\nbonjour\r\n")
    mbox = await acc.get_mailbox(APP)
    assert mbox is not None
    await storage.messages.deliver(blob, [mbox.mailbox_id])
    tls = TlsConfig(
        cert_file=server_cert.chain_path, key_file=server_cert.key_path, ca_bundle=ca.ca_bundle
    )
    # the DN as an operator writes it (spacing differs from the certificate's)
    logins = {app_cert.subject_dn.replace(",", ", "): "labo-automate"}
    cfg = node_b_config(tmp_path, keyring, tls, auth={"certificate_logins": logins})
    liste = ListeBlanche(
        generated=dt.datetime.now(dt.UTC),
        entries=[DomainEntry(name="b.test", dn=server_cert.subject_dn)],
    )
    policy = TrustPolicy(tls, liste)
    # as the composition root (caducee.app) builds them
    mechs: list[SaslMechanism] = sasl_mechanisms(cfg, acc)
    external = external_mechanism(cfg, acc)
    assert external is not None
    mechs.append(external)
    submission = SubmissionServer(cfg, storage, policy, mechanisms=mechs)
    imap = ImapServer(
        cfg,
        storage,
        policy.submission_server_context,
        acc,
        listen="127.0.0.1:0",
        listen_tls="127.0.0.1:0",
        settings=ImapSettings(auth_failure_delay=0.0),
        mechanisms=mechs,
    )
    (smtp_addr,) = await submission.start()
    imap_addr, imaps_addr = await imap.start()
    try:
        yield Node(smtp_addr, imap_addr, imaps_addr, ca, app_cert, storage)
    finally:
        await imap.stop()
        await submission.stop()
        await storage.close()


def _client_ctx(node: Node, cert: IssuedCert | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(node.ca.ca_bundle))
    ctx.check_hostname = False  # dialing 127.0.0.1; the chain is verified
    if cert is not None:
        ctx.load_cert_chain(cert.chain_path, cert.key_path)
    return ctx


def _smtp_external(node: Node, cert: IssuedCert | None) -> tuple[str, tuple[int, bytes]]:
    """EHLO's AUTH line after STARTTLS, then AUTH EXTERNAL and a message from the APP BAL."""
    with smtplib.SMTP(*node.smtp, timeout=20) as client:
        client.starttls(context=_client_ctx(node, cert))
        client.ehlo("automate.labo.test")
        auth_line = client.esmtp_features.get("auth", "")
        try:
            client.auth("EXTERNAL", lambda challenge=None: "")  # type: ignore[misc]
        except smtplib.SMTPAuthenticationError as exc:
            return auth_line, (exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPException as exc:
            return auth_line, (0, str(exc).encode())
        refused = client.sendmail(
            APP,
            ["bob@b.test"],
            f"From: {APP}\r\nTo: bob@b.test\r\nSubject: resultats\r\n\r\nCR\r\n".encode(),
        )
        return auth_line, (235, repr(refused).encode())


def _imap_external(
    node: Node, cert: IssuedCert | None, *, implicit: bool
) -> tuple[str, str, list[bytes]]:
    """CAPABILITY after TLS, then AUTHENTICATE EXTERNAL and SELECT INBOX."""
    ctx = _client_ctx(node, cert)
    client: imaplib.IMAP4
    if implicit:
        client = imaplib.IMAP4_SSL(*node.imaps, ssl_context=ctx, timeout=20)
    else:
        client = imaplib.IMAP4(*node.imap, timeout=20)
        client.starttls(ssl_context=ctx)
    try:
        caps = " ".join(client.capabilities)
        try:
            client.authenticate("EXTERNAL", lambda _challenge: b"")
        except imaplib.IMAP4.error as exc:
            return caps, "NO", [str(exc).encode()]
        typ, data = client.select("INBOX")
        return caps, typ, [d for d in data if isinstance(d, bytes)]
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


async def _inbox(storage: Storage, address: str) -> list[bytes]:
    mbox = await storage.accounts.get_mailbox(address)
    assert mbox is not None
    folder = await storage.messages.get_folder(mbox.mailbox_id, "INBOX")
    assert folder is not None
    return [
        await storage.blobs.get(m.blob)
        for m in await storage.messages.list_messages(folder.folder_id)
    ]


async def test_smtplib_external_sends_as_app_mailbox(node: Node) -> None:
    auth_line, (code, detail) = await asyncio.to_thread(_smtp_external, node, node.app_cert)
    assert "EXTERNAL" in auth_line.split()
    assert (code, detail) == (235, b"{}")  # authenticated, no recipient refused
    (msg,) = await _inbox(node.storage, "bob@b.test")
    assert b"Subject: resultats" in msg


async def test_smtp_external_not_advertised_without_certificate(node: Node) -> None:
    auth_line, (code, _) = await asyncio.to_thread(_smtp_external, node, None)
    assert "PLAIN" in auth_line.split()
    assert "EXTERNAL" not in auth_line.split()
    assert code == 504  # the mechanism does not exist on this connection


async def test_smtp_external_unmapped_certificate_refused(node: Node) -> None:
    other = node.ca.issue_client("autre.labo.test", "11111111111111", "AUTRE LABO")
    auth_line, (code, detail) = await asyncio.to_thread(_smtp_external, node, other)
    assert "EXTERNAL" in auth_line.split()  # verified certificate: offered, then refused
    assert code == 535
    assert detail.startswith(b"5.7.8")
    assert await _inbox(node.storage, "bob@b.test") == []


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "imaps"])
async def test_imaplib_external_selects_inbox(node: Node, implicit: bool) -> None:
    caps, typ, data = await asyncio.to_thread(
        _imap_external, node, node.app_cert, implicit=implicit
    )
    assert "AUTH=EXTERNAL" in caps.split()
    assert (typ, data) == ("OK", [b"1"])  # the one message in the APP mailbox's INBOX


async def test_imap_external_not_advertised_without_certificate(node: Node) -> None:
    caps, typ, data = await asyncio.to_thread(_imap_external, node, None, implicit=False)
    assert "AUTH=PLAIN" in caps.split()
    assert "AUTH=EXTERNAL" not in caps.split()
    assert typ == "NO"
    assert b"CANNOT" in data[0]


async def test_imap_external_unmapped_certificate_refused(node: Node) -> None:
    other = node.ca.issue_client("autre.labo.test", "11111111111111", "AUTRE LABO")
    caps, typ, data = await asyncio.to_thread(_imap_external, node, other, implicit=True)
    assert "AUTH=EXTERNAL" in caps.split()
    assert typ == "NO"
    assert b"AUTHENTICATIONFAILED" in data[0]


def _handshake(node: Node, cert: IssuedCert) -> str:
    try:
        with smtplib.SMTP(*node.smtp, timeout=20) as client:
            client.starttls(context=_client_ctx(node, cert))
            client.ehlo("x.test")  # TLS 1.3: the server's verdict arrives with the next read
            return "accepted"
    except (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError) as exc:
        return type(exc).__name__


async def test_certificate_outside_trust_space_fails_handshake(node: Node, tmp_path: Path) -> None:
    other_ca = TrustSpaceCA.create_other(tmp_path / "other")
    bad = other_ca.issue_client("automate.labo.test", SIRET, "LABO BIOLOGIE", "Paris (75)")
    assert await asyncio.to_thread(_handshake, node, bad) != "accepted"
    assert await asyncio.to_thread(_handshake, node, node.app_cert) == "accepted"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_imaps_external(node: Node) -> None:
    """curl's EXTERNAL sends the user name as authorization identity: the APP mailbox."""
    host, port = node.imaps
    proc = await asyncio.create_subprocess_exec(
        "curl", "--silent", "--show-error",
        "--url", f"imaps://mx.b.test:{port}/INBOX", "--resolve", f"mx.b.test:{port}:{host}",
        "--cacert", str(node.ca.ca_bundle),
        "--cert", str(node.app_cert.chain_path), "--key", str(node.app_cert.key_path),
        "--login-options", "AUTH=EXTERNAL", "--user", f"{APP}:",
        "--request", "SEARCH SUBJECT demande",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode("utf-8", "replace")
    assert out.strip() == b"* SEARCH 1"
