"""Dovecot (Debian ``dovecot-imapd``) as a throwaway IMAP server for tests.

An unprivileged-port instance with its own configuration in a temp dir: TLS with a
certificate made per run (STARTTLS required), one passwd-file user, maildir in the temp dir.
Skips when Dovecot is not installed (``scripts/install-system-deps.sh`` installs it).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from intg_certs import Pki

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Dovecot:
    root: Path
    port: int
    ca_file: Path
    users: dict[str, str]
    proc: subprocess.Popen[bytes]

    def client(self, user: str) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        try:
            imap.starttls(ssl.create_default_context(cafile=str(self.ca_file)))
            imap.login(user, self.users[user])
        except BaseException:
            imap.shutdown()
            raise
        return imap

    def append(self, user: str, data: bytes, mailbox: str = "INBOX") -> None:
        imap = self.client(user)
        try:
            typ, _ = imap.append(mailbox, None, None, data)
            assert typ == "OK"
        finally:
            imap.logout()

    def count(self, user: str, mailbox: str) -> int:
        imap = self.client(user)
        try:
            typ, data = imap.select(f'"{mailbox}"', readonly=True)
            if typ != "OK":
                return 0
            return int(data[0] or 0)
        finally:
            imap.logout()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def start_dovecot(tmp: Path, pki: Pki, users: dict[str, str]) -> Dovecot:
    """Start Dovecot; retried on a fresh port (another process may grab the free port first)."""
    last: Exception | None = None
    for _ in range(3):
        try:
            return _start_once(tmp, pki, users)
        except RuntimeError as exc:
            last = exc
    raise RuntimeError(f"dovecot did not start: {last}")


def _start_once(tmp: Path, pki: Pki, users: dict[str, str]) -> Dovecot:
    if not Path(DOVECOT).exists():
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd)")
    # Dovecot's unprivileged processes must traverse the path: outside pytest's 0700 tmp.
    root = Path(tempfile.mkdtemp(prefix="caducee-dovecot-"))
    root.chmod(0o755)
    for d in ("run", "state", "home"):
        (root / d).mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        mail_user = pwd.getpwnam("dovecot")
        internal = "default_internal_user = dovecot\ndefault_login_user = dovenull\n"
        login_chroot = ""
    else:
        mail_user = pwd.getpwuid(os.getuid())
        internal = (
            f"default_internal_user = {mail_user.pw_name}\n"
            f"default_login_user = {mail_user.pw_name}\n"
            f"default_internal_group = {mail_user.pw_name}\n"
        )
        login_chroot = "  chroot =\n"
    passwd = root / "passwd"
    passwd.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in users.items()))
    port = _free_port()
    conf = root / "dovecot.conf"
    conf.write_text(
        f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = caducee-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{pki.cert_file}
ssl_key = <{pki.key_file}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain
first_valid_uid = {min(mail_user.pw_uid, 100)}
{internal}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
{login_chroot}}}
service anvil {{
{login_chroot}}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
    )
    os.chown(root / "home", mail_user.pw_uid, mail_user.pw_gid)
    if os.geteuid() == 0:
        pki.key_file.chmod(0o600)
    errlog = (root / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=errlog
    )
    errlog.close()
    dc = Dovecot(root, port, pki.ca_file, dict(users), proc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = (root / "stderr.log").read_text()
            log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"dovecot exited: {err} {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            if s.recv(100).startswith(b"* OK"):
                return dc
        time.sleep(0.05)
    dc.stop()
    raise RuntimeError("dovecot did not start")
