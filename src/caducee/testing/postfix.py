"""A real Postfix (Debian package) run as a peer operator of a sandbox trust space, in a temp dir.

:class:`PostfixPeer` writes a complete, self-contained Postfix instance (``etc/`` with
``main.cf`` and ``master.cf``, ``spool/`` queue, ``lib/`` data, ``mail/`` maildirs, ``maillog``)
into a fresh directory, checks it with ``postfix -c etc check`` and runs its ``master`` daemon in
the foreground (``master -c etc -d``) in a session of its own, so that :meth:`PostfixPeer.stop`
ends exactly the processes it started. Nothing of the machine's default instance is read,
changed or started. Postfix needs root (``master`` and ``postfix check``).

What the instance enforces (Postfix 3.7; ``docs/trust.md`` "Postfix as a peer operator"):

- relay-in (the ``relay`` port): STARTTLS mandatory (``smtpd_tls_security_level = encrypt``),
  TLS >= 1.2, client certificate mandatory and verified against the trust-space CA bundle
  (``smtpd_tls_req_ccert = yes``: chain and validity dates); then ``check_ccert_access`` maps
  the SHA-256 fingerprint of the client certificate to a restriction class that accepts only the
  MAIL FROM domains that certificate's DN is listed for in the liste blanche (and ``<>``).
  Postfix cannot match a certificate's full subject DN (its policy protocol sees the CN only),
  so the DN rule is applied when the map is written, to a given set of certificates: a
  certificate not in that set is refused whatever its DN. Postfix has no CRL checking: a
  revoked certificate in the map is accepted until the map is rewritten without it.
- outbound: ``smtp_tls_security_level = secure`` with the trust-space CA bundle, the peer's
  host name matched (``match=`` in the per-destination TLS policy), its own certificate
  presented (``smtp_tls_cert_file``); domains are routed by ``transport_maps`` to host:port;
  any other domain fails (``default_transport = error``).
- the ``submission`` port accepts mail from 127.0.0.1 only (``mynetworks``), no AUTH, no TLS
  (or STARTTLS required with ``submission_tls``): a test and benchmark injection point, not
  part of the trust space.
- delivery into maildirs (``virtual_mailbox_domains`` + ``virtual_mailbox_maps``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from caducee.trust.dn import dn_of_certificate
from caducee.trust.listeblanche import ListeBlanche

__all__ = [
    "POSTFIX",
    "PostfixPeer",
    "PostfixRoute",
    "TrustedCert",
    "fingerprint",
    "postfix_available",
    "trusted_from_liste_blanche",
]

POSTFIX = "/usr/sbin/postfix"
_MASTER = "/usr/lib/postfix/sbin/master"


def postfix_available() -> str | None:
    """None when a Postfix peer can run here, else why not."""
    if not (Path(POSTFIX).exists() and Path(_MASTER).exists()):
        return "Postfix is not installed (scripts/install-system-deps.sh installs it)"
    if os.geteuid() != 0:
        return "running Postfix's master daemon needs root"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "the 'postfix' user does not exist"
    return None


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of the DER certificate, Postfix's ``check_ccert_access`` key form."""
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@dataclass(frozen=True)
class TrustedCert:
    """A peer certificate accepted by the relay-in, for these MAIL FROM domains."""

    fingerprint: str
    domains: tuple[str, ...]
    subject_dn: str = ""


def trusted_from_liste_blanche(liste: ListeBlanche, certs: Iterable[Path]) -> list[TrustedCert]:
    """The DN rule applied at configuration time: each certificate (first PEM of each file)
    whose full subject DN is listed in ``liste`` is trusted for the domains it is listed for."""
    out = []
    for path in certs:
        cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
        dn = dn_of_certificate(cert)
        domains = tuple(sorted(liste.domains_for_dn(dn)))
        if domains:
            out.append(TrustedCert(fingerprint(cert), domains, str(dn)))
    return out


@dataclass(frozen=True)
class PostfixRoute:
    """Outbound route: mail for ``domain`` goes to ``hostport`` whose certificate must match
    ``match`` (its MX host name) and chain to the CA bundle."""

    domain: str
    hostport: str
    match: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class PostfixPeer:
    """One Postfix instance playing a trust-space operator. Use as a context manager."""

    hostname: str  # its MX name, e.g. mx.medecin.mssante.test
    domains: list[str]
    mailboxes: list[str]  # addresses delivered into maildirs
    cert_chain: Path  # leaf + intermediate, presented inbound and outbound
    key: Path
    ca_bundle: Path
    trusted: list[TrustedCert]
    routes: list[PostfixRoute] = field(default_factory=list)
    reuse_connections: bool = True  # False: one message per outbound TLS connection
    submission_tls: bool = False  # True: STARTTLS required on the submission port (no AUTH)
    directory: Path | None = None  # default: a fresh directory under the system temp dir
    relay_port: int = 0
    submission_port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owns_dir: bool = field(default=False, init=False, repr=False)

    # -- layout -----------------------------------------------------------------------------

    @property
    def _dir(self) -> Path:
        if self.directory is None:
            raise RuntimeError("the Postfix instance has no directory yet (start it first)")
        return self.directory

    @property
    def etc(self) -> Path:
        return self._dir / "etc"

    @property
    def maillog(self) -> Path:
        return self._dir / "maillog"

    @property
    def relay(self) -> str:
        return f"127.0.0.1:{self.relay_port}"

    @property
    def submission(self) -> str:
        return f"127.0.0.1:{self.submission_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log(self) -> str:
        try:
            return self.maillog.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    # -- configuration ----------------------------------------------------------------------

    def _write(self, name: str, text: str) -> Path:
        path = self.etc / name
        path.write_text(text, encoding="utf-8")
        return path

    def write_config(self) -> None:
        """Writes main.cf, master.cf and the maps (texthash: no postmap step)."""
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="caducee-postfix-"))
            self._owns_dir = True
        d = self.directory
        d.chmod(0o711)  # the delivery agent (uid nobody) must traverse it
        nobody = pwd.getpwnam("nobody")
        pf = pwd.getpwnam("postfix")
        for sub in ("etc", "spool", "lib", "mail"):
            (d / sub).mkdir(exist_ok=True)
        os.chown(d / "lib", pf.pw_uid, pf.pw_gid)
        os.chown(d / "mail", nobody.pw_uid, nobody.pw_gid)
        self.relay_port = self.relay_port or _free_port()
        self.submission_port = self.submission_port or _free_port()
        etc = self.etc
        vmail = "".join(
            f"{a} {a.rpartition('@')[2]}/{a.rpartition('@')[0]}/\n" for a in self.mailboxes
        )
        self._write("vmailbox", vmail)
        classes = []
        ccert = []
        for i, t in enumerate(self.trusted):
            cls = f"peer_{i}"
            classes.append(cls)
            senders = "".join(f"{dom} OK\n" for dom in t.domains) + "<> OK\n"
            self._write(f"{cls}_senders", senders)
            ccert.append(f"# {t.subject_dn}\n{t.fingerprint} {cls}\n")
        self._write("ccert_access", "".join(ccert))
        nexthops = [(r, "[{}]:{}".format(*r.hostport.rsplit(":", 1))) for r in self.routes]
        self._write("transport", "".join(f"{r.domain} smtp:{hop}\n" for r, hop in nexthops))
        # per destination: verified chain to the CA bundle and the peer's MX name
        policy = {hop: r.match for r, hop in nexthops}  # one entry per next hop
        self._write("tls_policy", "".join(f"{h} secure match={m}\n" for h, m in policy.items()))
        class_lines = "".join(
            f"{cls} = check_sender_access texthash:{etc}/{cls}_senders, reject\n" for cls in classes
        )
        main = f"""\
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/lib
maillog_file = {self.maillog}
maillog_file_prefixes = {d}
myhostname = {self.hostname}
mydomain = {self.domains[0]}
myorigin = $mydomain
mydestination =
relay_domains =
local_recipient_maps =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
smtpd_banner = $myhostname ESMTP
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 10s
default_process_limit = 100

# relay-in: mutual TLS, certificate pinned by fingerprint, bound to MAIL FROM domains
smtpd_tls_security_level = encrypt
smtpd_tls_req_ccert = yes
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_cert_file = {self.cert_chain}
smtpd_tls_key_file = {self.key}
smtpd_tls_CAfile = {self.ca_bundle}
smtpd_tls_fingerprint_digest = sha256
smtpd_tls_session_cache_database =
smtpd_tls_loglevel = 1
smtpd_restriction_classes = {", ".join(classes)}
{class_lines}smtpd_client_restrictions =
smtpd_sender_restrictions = check_ccert_access texthash:{etc}/ccert_access, reject
smtpd_relay_restrictions = reject_unauth_destination
virtual_mailbox_domains = {" ".join(self.domains)}
virtual_mailbox_maps = texthash:{etc}/vmailbox
virtual_mailbox_base = {d}/mail
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
virtual_minimum_uid = 1

# outbound: only listed routes, verified server certificate, client certificate presented
default_transport = error:5.7.1 domain not in the trust space
transport_maps = texthash:{etc}/transport
smtp_tls_security_level = secure
smtp_tls_mandatory_protocols = >=TLSv1.2
smtp_tls_policy_maps = texthash:{etc}/tls_policy
smtp_tls_CAfile = {self.ca_bundle}
smtp_tls_cert_file = {self.cert_chain}
smtp_tls_key_file = {self.key}
smtp_tls_session_cache_database =
smtp_tls_loglevel = 1
smtp_connection_cache_on_demand = {"yes" if self.reuse_connections else "no"}
smtp_tls_connection_reuse = {"yes" if self.reuse_connections else "no"}
smtp_address_preference = ipv4
"""
        self._write("main.cf", main)
        submission = (
            f"127.0.0.1:{self.submission_port} inet n - n - - smtpd\n"
            f"  -o smtpd_tls_security_level={'encrypt' if self.submission_tls else 'none'}\n"
            "  -o smtpd_tls_req_ccert=no\n  -o smtpd_tls_ask_ccert=no\n"
            "  -o smtpd_client_restrictions=permit_mynetworks,reject\n"
            "  -o smtpd_sender_restrictions=\n"
            "  -o smtpd_relay_restrictions=permit_mynetworks,reject\n"
        )
        services = [
            f"127.0.0.1:{self.relay_port} inet n - n - - smtpd",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "virtual unix - n n - - virtual",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "tlsproxy unix - - n - 0 tlsproxy",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        self._write("master.cf", "\n".join(services) + "\n" + submission)

    # -- life cycle -------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Writes the configuration, runs ``postfix check``, starts ``master`` and waits until
        both ports accept connections."""
        problem = postfix_available()
        if problem:
            raise RuntimeError(problem)
        self.write_config()
        check = subprocess.run(
            [POSTFIX, "-c", str(self.etc), "check"],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if check.returncode != 0:
            raise RuntimeError(f"postfix check failed: {check.stderr.decode(errors='replace')}")
        self._proc = subprocess.Popen(
            [_MASTER, "-c", str(self.etc), "-d"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not (_port_open(self.relay_port) and _port_open(self.submission_port)):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log = self.log()[-3000:]
                self.stop()
                raise RuntimeError(f"Postfix did not start; maillog:\n{log}")
            time.sleep(0.05)

    def reload(self) -> None:
        """Rewrites the configuration and makes master re-read it (SIGHUP)."""
        self.write_config()
        if self._proc is not None:
            self._proc.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 20.0) -> None:
        """Stops master and every process of its session; waits until the ports are closed."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
            deadline = time.monotonic() + timeout
            # children of master share its session: wait until none is left
            while _session_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _session_alive(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        if self._owns_dir and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory, self._owns_dir = None, False  # a restart starts afresh

    def listening(self) -> bool:
        return any(_port_open(p) for p in (self.relay_port, self.submission_port) if p)

    def __enter__(self) -> PostfixPeer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- mailboxes --------------------------------------------------------------------------

    def messages(self, address: str) -> list[bytes]:
        """Every message delivered to ``address`` (maildir new/ and cur/), oldest first."""
        local, _, domain = address.rpartition("@")
        box = self._dir / "mail" / domain / local
        files = [p for sub in ("new", "cur") for p in (box / sub).glob("*") if p.is_file()]
        return [p.read_bytes() for p in sorted(files, key=lambda p: p.stat().st_mtime)]

    def wait_for(self, address: str, marker: bytes, timeout: float = 30.0) -> bytes:
        """The first message to ``address`` containing ``marker``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages(address):
                if marker in m:
                    return m
            time.sleep(0.05)
        raise TimeoutError(
            f"no message with {marker!r} for {address}; maillog:\n{self.log()[-3000:]}"
        )


def _session_alive(sid: int) -> bool:
    """Is any process of session ``sid`` still running?"""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == sid:
                stat = (entry / "stat").read_text()
                if stat.rpartition(")")[2].split()[0] != "Z":
                    return True
        except (ProcessLookupError, PermissionError, FileNotFoundError, OSError):
            continue
    return False
