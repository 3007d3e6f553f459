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

import smtplib
import ssl
from dataclasses import dataclass
from typing import Any

__all__ = ["SCENARIOS", "ScenarioResult", "run_conformance"]

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
