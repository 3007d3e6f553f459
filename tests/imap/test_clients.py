"""Real mail clients from Debian against the server, with certificate verification:
mbsync (isync), offlineimap, fetchmail and curl, over STARTTLS and implicit TLS."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from imap_harness import ALICE, PASSWORD, Pki, ServerThread

pytestmark = pytest.mark.e2e

MSGS = [
    b"From: house@hop.mssante.fr\r\nTo: alice@hop.mssante.fr\r\nSubject: CR %d\r\n"
    b"Message-ID: <cr%d@hop>\r\n\r\nCompte rendu %d\r\n" % (i, i, i)
    for i in range(1, 4)
]


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 0, (
        f"{args[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def maildir_messages(path: Path) -> list[bytes]:
    return sorted(p.read_bytes() for sub in ("cur", "new") for p in (path / sub).glob("*"))


@pytest.mark.parametrize("mode", ["STARTTLS", "IMAPS"])
def test_mbsync_syncs_both_ways(server: ServerThread, pki: Pki, tmp_path: Path, mode: str) -> None:
    mbsync = need("mbsync")
    for m in MSGS:
        server.deliver(ALICE, m)
    local = tmp_path / "mail"
    local.mkdir()
    port = server.port if mode == "STARTTLS" else server.tls_port
    cfg = tmp_path / "mbsyncrc"
    cfg.write_text(
        f'IMAPAccount caducee\nHost localhost\nPort {port}\nUser {ALICE}\nPass "{PASSWORD}"\n'
        f"SSLType {mode}\nCertificateFile {pki.ca.ca_bundle}\nSystemCertificates no\n\n"
        "IMAPStore remote\nAccount caducee\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel c\nFar :remote:\nNear :local:\nPatterns INBOX Sent Drafts\nCreate Near\n"
        f"Sync All\nSyncState *\n"
    )
    run([mbsync, "-c", str(cfg), "-a"])
    got = maildir_messages(local / "INBOX")
    assert len(got) == 3

    # mbsync may add its X-TUID tracking header and store LF line ends; the rest is identical
    def norm(m: bytes) -> bytes:
        return re.sub(rb"X-TUID: \S+\n", b"", m.replace(b"\r\n", b"\n"))

    assert sorted(norm(g) for g in got) == sorted(norm(m) for m in MSGS)
    # a message written locally is uploaded (APPEND) at the next sync
    draft = local / "Drafts" / "new" / "1700000000.1.local"
    draft.write_bytes(b"From: alice@hop.mssante.fr\nSubject: brouillon\n\nTexte\n")
    run([mbsync, "-c", str(cfg), "-a"])

    async def drafts() -> int:
        mb = await server.st.accounts.get_mailbox(ALICE)
        assert mb is not None
        folder = await server.st.messages.get_folder(mb.mailbox_id, "Drafts")
        assert folder is not None
        return len(await server.st.messages.list_messages(folder.folder_id))

    assert server.run(drafts) == 1


def test_offlineimap_syncs_inbox(server: ServerThread, pki: Pki, tmp_path: Path) -> None:
    offlineimap = need("offlineimap")
    for m in MSGS:
        server.deliver(ALICE, m)
    cfg = tmp_path / "offlineimaprc"
    cfg.write_text(
        f"[general]\naccounts = A\nmetadata = {tmp_path}/meta\n\n"
        "[Account A]\nlocalrepository = L\nremoterepository = R\n\n"
        f"[Repository L]\ntype = Maildir\nlocalfolders = {tmp_path}/mail\n\n"
        f"[Repository R]\ntype = IMAP\nremotehost = localhost\nremoteport = {server.tls_port}\n"
        f"remoteuser = {ALICE}\nremotepass = {PASSWORD}\nssl = yes\n"
        f"sslcacertfile = {pki.ca.ca_bundle}\nfolderfilter = lambda f: f in ['INBOX', 'Sent']\n"
    )
    run([offlineimap, "-c", str(cfg), "-o", "-u", "quiet"])
    got = maildir_messages(tmp_path / "mail" / "INBOX")
    assert len(got) == 3
    assert all(b"Compte rendu" in g for g in got)


def test_fetchmail_over_starttls(server: ServerThread, pki: Pki, tmp_path: Path) -> None:
    fetchmail = need("fetchmail")
    for m in MSGS:
        server.deliver(ALICE, m)
    out = tmp_path / "delivered.mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll localhost protocol IMAP port {server.port}\n"
        f'  user "{ALICE}" password "{PASSWORD}"\n'
        f'  sslproto "TLS1.2+" sslcertck sslcertfile "{pki.ca.ca_bundle}"\n'
        f'  keep mda "cat >> {out}"\n'
    )
    rc.chmod(0o600)
    env = dict(os.environ, FETCHMAILHOME=str(tmp_path), HOME=str(tmp_path))
    run([fetchmail, "-f", str(rc), "--nosyslog", "-v"], env=env)
    data = out.read_bytes()
    assert data.count(b"Compte rendu") == 3


@pytest.mark.parametrize("scheme", ["imap", "imaps"])
def test_curl_fetches_a_message(server: ServerThread, pki: Pki, scheme: str) -> None:
    curl = need("curl")
    server.deliver(ALICE, MSGS[0])
    port = server.port if scheme == "imap" else server.tls_port
    proc = run(
        [
            curl,
            "-sS",
            "--ssl-reqd",
            "--cacert",
            str(pki.ca.ca_bundle),
            "-u",
            f"{ALICE}:{PASSWORD}",
            f"{scheme}://localhost:{port}/INBOX;UID=1",
        ]
    )
    assert proc.stdout.encode().replace(b"\r\n", b"\n") == MSGS[0].replace(b"\r\n", b"\n")
    listing = run(
        [
            curl,
            "-sS",
            "--ssl-reqd",
            "--cacert",
            str(pki.ca.ca_bundle),
            "-u",
            f"{ALICE}:{PASSWORD}",
            f"{scheme}://localhost:{port}/",
        ]
    )
    assert '"/" INBOX' in listing.stdout
