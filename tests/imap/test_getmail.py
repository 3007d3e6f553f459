"""getmail6 (Debian package) retrieves a mailbox over implicit TLS with the CA checked,
and a second run takes only what arrived since (its own record of UIDs, per UIDVALIDITY)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from imap_harness import ALICE, PASSWORD, Pki, ServerThread

from caducee.testing.certs import TrustSpaceCA

pytestmark = pytest.mark.e2e


def _msg(i: int) -> bytes:
    return (
        b"From: house@hop.mssante.fr\r\nTo: alice@hop.mssante.fr\r\nSubject: CR %d\r\n"
        b"Message-ID: <getmail%d@hop>\r\n\r\nCompte rendu %d\r\n" % (i, i, i)
    )


def _getmail(tmp_path: Path, port: int, ca: Path) -> subprocess.CompletedProcess[str]:
    getmail = shutil.which("getmail")
    if getmail is None:
        pytest.skip("getmail6 is not installed")
    rc = tmp_path / "getmailrc"
    rc.write_text(
        "[retriever]\ntype = SimpleIMAPSSLRetriever\nserver = localhost\n"
        f"port = {port}\nusername = {ALICE}\npassword = {PASSWORD}\n"
        f'mailboxes = ("INBOX",)\nca_certs = {ca}\n\n'
        # getmail's Maildir refuses to write as root (the CI user): an external MDA writes
        # each message to its own file instead
        "[destination]\ntype = MDA_external\npath = /bin/sh\n"
        f'arguments = ("-c", "cat > {tmp_path}/mail/new/$$.eml")\n'
        "allow_root_commands = true\n\n"
        "[options]\nread_all = false\ndelete = false\nverbose = 0\n"
        "message_log_syslog = false\n"
    )
    (tmp_path / "mail" / "new").mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [getmail, "--getmaildir", str(tmp_path), "--rcfile", str(rc)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ, HOME=str(tmp_path)),
    )


def _copies(got: list[bytes], i: int) -> int:
    """How many retrieved files are message ``i``: its header lines and body, LF line ends
    (getmail adds its Received/Delivered-To lines around them)."""
    head, _, body = _msg(i).replace(b"\r\n", b"\n").partition(b"\n\n")
    return sum(
        g.endswith(b"\n\n" + body) and all(line in g for line in head.split(b"\n")) for g in got
    )


def _got(tmp_path: Path) -> list[bytes]:
    return sorted(p.read_bytes() for p in (tmp_path / "mail" / "new").glob("*"))


def test_getmail_retrieves_then_takes_only_new(
    server: ServerThread, pki: Pki, tmp_path: Path
) -> None:
    for i in range(1, 4):
        server.deliver(ALICE, _msg(i))
    proc = _getmail(tmp_path, server.tls_port, pki.ca.ca_bundle)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = _got(tmp_path)
    assert len(got) == 3
    assert [_copies(got, i) for i in range(1, 4)] == [1, 1, 1]

    server.deliver(ALICE, _msg(4))
    proc = _getmail(tmp_path, server.tls_port, pki.ca.ca_bundle)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = _got(tmp_path)
    assert len(got) == 4
    assert [_copies(got, i) for i in range(1, 5)] == [1, 1, 1, 1]


def test_getmail_refuses_a_server_outside_its_ca(server: ServerThread, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(TrustSpaceCA.create_other(tmp_path / "other").ca_bundle.read_bytes())
    server.deliver(ALICE, _msg(1))
    proc = _getmail(tmp_path, server.tls_port, other)
    assert proc.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in proc.stdout + proc.stderr
    assert _got(tmp_path) == []
