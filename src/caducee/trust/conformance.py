"""Conformance kit, inbound part (issue 4 §3): does an operator's relay-in refuse bad peers?

Scenarios are named after the national audit domains (notes §1.3): ``sans-tls`` (MAIL without
STARTTLS), ``sans-cert`` (TLS without a client certificate), ``cert-expire``, ``cert-revoque``,
``cert-non-igc``, ``cert-no-match``, ``cert-cn-diff-dn`` (each must be refused, at the TLS
handshake, at MAIL FROM or at RCPT TO) and ``cert-valide`` (must be accepted up to RCPT TO). No
message is sent: each session ends with RSET/QUIT. It runs against any SMTP server (ours, or
another implementation) with the scenario certificates of a sandbox (``sandbox.json``
``test_certs``, all claiming the identity of the sandbox's first operator).
"""

from __future__ import annotations

import contextlib
import secrets
import smtplib
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["OUTBOUND_SCENARIOS", "SCENARIOS", "ScenarioResult", "run_conformance", "run_outbound"]

SCENARIOS = (
    "sans-tls",
    "sans-cert",
    "cert-expire",
    "cert-revoque",
    "cert-non-igc",
    "cert-no-match",
    "cert-cn-diff-dn",
    "cert-valide",
)


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    passed: bool
    expected: str  # "refused" | "accepted"
    observed: str  # what the target did, one line

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "passed": self.passed,
            "expected": self.expected,
            "observed": self.observed,
        }


def _client_context(cert: str | None, key: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # we test the target's checks of *our* certificate
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


def _session(
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None,
    mail_from: str,
    rcpt: str,
    timeout: float,
) -> tuple[bool, str]:
    """(accepted up to RCPT, observation)."""
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            smtp.ehlo("conformance.caducee.test")
            if tls is not None:
                if not smtp.has_extn("starttls"):
                    return False, "STARTTLS not offered"
                try:
                    code, msg = smtp.starttls(context=tls)
                    smtp.ehlo("conformance.caducee.test")
                except (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError) as exc:
                    return False, f"refused at TLS: {exc.__class__.__name__}"
            try:
                code, msg = smtp.mail(mail_from)
            except (smtplib.SMTPServerDisconnected, ssl.SSLError, ConnectionError) as exc:
                # TLS 1.3: a client certificate refused by the server shows up here
                return False, f"refused at TLS (after handshake): {exc.__class__.__name__}"
            if code >= 400:
                return False, f"MAIL FROM refused: {code} {msg.decode(errors='replace')}"
            code, msg = smtp.rcpt(rcpt)
            if code >= 400:
                return False, f"RCPT TO refused: {code} {msg.decode(errors='replace')}"
            smtp.rset()
            return True, f"accepted up to RCPT TO: {code} {msg.decode(errors='replace')}"
    except (OSError, smtplib.SMTPException) as exc:
        return False, f"connection failed: {exc.__class__.__name__}: {exc}"


def run_conformance(
    target: str,
    sandbox: dict[str, Any],
    *,
    rcpt: str,
    mail_from: str | None = None,
    timeout: float = 15.0,
) -> list[ScenarioResult]:
    """Runs every scenario against ``target`` (host:port of a relay-in)."""
    host, _, port_text = target.rpartition(":")
    port = int(port_text)
    certs = sandbox["test_certs"]
    claimed = sandbox["operators"][0]
    sender = mail_from or f"conformance@{claimed['domains'][0]}"
    results = []
    for name in SCENARIOS:
        if name == "sans-tls":
            tls = None
        elif name == "sans-cert":
            tls = _client_context(None, None)
        else:
            tls = _client_context(certs[name]["cert"], certs[name]["key"])
        accepted, observed = _session(
            host, port, tls=tls, mail_from=sender, rcpt=rcpt, timeout=timeout
        )
        want_accept = name == "cert-valide"
        # an unreachable target proves nothing: it fails every scenario
        passed = accepted == want_accept and not observed.startswith("connection failed")
        results.append(
            ScenarioResult(name, passed, "accepted" if want_accept else "refused", observed)
        )
    return results


OUTBOUND_SCENARIOS = (
    "cert-expire",
    "cert-revoque",
    "cert-non-igc",
    "cert-no-match",
    "cert-cn-diff-dn",
    "cert-valide",
)


class _Capture:
    """What a capture peer saw during one scenario."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[bytes] = []
        self.tls_attempts = 0
        self.connections: set[socket.socket] = set()

    def close_all(self) -> None:
        with self.lock:
            conns, self.connections = list(self.connections), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


class _CaptureHandler(socketserver.StreamRequestHandler):
    """A peer relay-in that accepts everything and records the messages it receives."""

    ctx: ssl.SSLContext
    capture: _Capture

    def handle(self) -> None:
        cap = self.capture
        with cap.lock:
            cap.connections.add(self.connection)
        tls: ssl.SSLSocket | None = None
        rfile: Any = self.rfile
        wfile: Any = self.wfile
        try:
            wfile.write(b"220 conformance peer ESMTP\r\n")
            while True:
                line = rfile.readline(4096)
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"EHLO":
                    wfile.write(b"250-conformance\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
                elif verb == b"STAR" and tls is None:
                    wfile.write(b"220 go ahead\r\n")
                    with cap.lock:
                        cap.tls_attempts += 1
                    tls = self.ctx.wrap_socket(self.connection, server_side=True)
                    rfile, wfile = tls.makefile("rb"), tls.makefile("wb", buffering=0)
                elif verb == b"DATA":
                    wfile.write(b"354 go ahead\r\n")
                    body = bytearray()
                    while (chunk := rfile.readline(65536)) not in (b".\r\n", b""):
                        body += chunk
                    with cap.lock:
                        cap.received.append(bytes(body))
                    wfile.write(b"250 2.0.0 accepted by the conformance peer\r\n")
                elif verb == b"QUIT":
                    wfile.write(b"221 bye\r\n")
                    return
                else:
                    wfile.write(b"250 ok\r\n")
        except OSError:
            return
        finally:
            with cap.lock:
                cap.connections.discard(self.connection)
            if tls is not None:
                rfile.close()
                wfile.close()
                tls.close()


class _ReusableServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def _submit(
    submission: str, login: str, password: str, sender: str, rcpt: str, token: str, timeout: float
) -> None:
    host, _, port = submission.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the kit tests the operator's outbound checks, not this
    body = (
        f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: conformance {token}\r\n"
        f"Message-ID: <{token}@conformance.caducee.test>\r\n\r\nconformance {token}\r\n"
    )
    with smtplib.SMTP(host, int(port), timeout=timeout) as smtp:
        smtp.starttls(context=ctx)
        smtp.login(login, password)
        smtp.sendmail(sender, [rcpt], body.encode())


def run_outbound(
    sandbox: dict[str, Any],
    *,
    via: str,
    scenarios: tuple[str, ...] = OUTBOUND_SCENARIOS,
    wait_seconds: float = 10.0,
    timeout: float = 15.0,
    before_each: Callable[[str], None] | None = None,
    submit: Callable[[str, str], None] | None = None,
) -> list[ScenarioResult]:
    """Does operator ``via`` refuse to deliver to a peer presenting each bad certificate?

    The peer is the sandbox's first operator, which must NOT be running: the kit takes over its
    relay address (where ``via`` routes its domain) with a capture server presenting each
    scenario certificate in turn, submits a message through ``via`` and watches. A bad
    certificate passes when a TLS attempt was seen and no message arrived; ``cert-valide`` when
    the message arrived. An operator backing off from the peer after a failure makes no attempt
    (reported as such): restart it between scenarios (``before_each``) or run them one by one.
    ``submit(rcpt, token)``, when given, injects the message into the operator under test (one
    that is not a sandbox operator, e.g. another implementation) instead of ``via``'s submission.
    """
    peer = sandbox["operators"][0]
    rcpt = peer["accounts"][0]["address"]
    if submit is None:
        sender_op = next(op for op in sandbox["operators"] if op["name"] == via)
        if sender_op is peer:
            raise ValueError("the operator under test must not be the sandbox's first operator")
        account = sender_op["accounts"][0]

        def submit(rcpt: str, token: str) -> None:
            _submit(
                sender_op["submission"],
                account["login"],
                account["password"],
                account["address"],
                rcpt,
                token,
                timeout,
            )

    host, _, port = peer["relay"].rpartition(":")
    results = []
    for name in scenarios:
        if before_each is not None:
            before_each(name)
        cert = sandbox["test_certs"][name]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert["cert"], cert["key"])
        cap = _Capture()
        handler = type("Capture", (_CaptureHandler,), {"ctx": ctx, "capture": cap})
        server = _ReusableServer((host, int(port)), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        token = f"{name}-{secrets.token_hex(6)}"
        want = name == "cert-valide"
        try:
            submit(rcpt, token)
            got, attempted = _watch(cap, token, want, wait_seconds)
        except (OSError, smtplib.SMTPException) as exc:
            results.append(
                ScenarioResult(name, False, "-", f"submission failed: {exc.__class__.__name__}")
            )
            continue
        finally:
            server.shutdown()
            server.server_close()
            cap.close_all()
        if got:
            observed = "message delivered to the peer"
        elif attempted:
            observed = "TLS attempted, nothing delivered"
        else:
            observed = "no delivery attempt seen (operator backing off?)"
        passed = got if want else (attempted and not got)
        results.append(
            ScenarioResult(name, passed, "delivered" if want else "not delivered", observed)
        )
    return results


def _watch(cap: _Capture, token: str, want: bool, wait_seconds: float) -> tuple[bool, bool]:
    """(message arrived, TLS attempted), waiting as long as the outcome may still change."""
    deadline = time.monotonic() + wait_seconds
    grace_until: float | None = None
    while time.monotonic() < deadline:
        with cap.lock:
            got = any(token.encode() in m for m in cap.received)
            attempted = cap.tls_attempts > 0
            busy = bool(cap.connections)
        if got:
            return True, True
        if attempted and not want and not busy:
            grace_until = grace_until or time.monotonic() + 1.0
            if time.monotonic() >= grace_until:
                return False, True
        time.sleep(0.05)
    with cap.lock:
        return any(token.encode() in m for m in cap.received), cap.tls_attempts > 0
