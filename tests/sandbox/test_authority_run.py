"""The sandbox runs the trust authority: operators refresh from it, and a revoked operator is
refused by the others within one refresh period (issue 4 §2, §4)."""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from caducee.app import Operator
from caducee.cli.main import main
from caducee.config.model import NodeConfig, load_config
from caducee.sandbox.init import create_sandbox
from caducee.sandbox.run import load_sandbox, start_services, stop_all
from caducee.trust.fetch import verify_checksum
from caducee.trust.listeblanche import parse_liste_blanche


def _fast(cfg: NodeConfig, seconds: int) -> NodeConfig:
    """The same node with a short refresh period (below the config minimum, for the test)."""
    return cfg.model_copy(
        update={"trust": cfg.trust.model_copy(update={"refresh_seconds": seconds})}
    )


def _leaf_der(chain: str) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificates(Path(chain).read_bytes())[0].public_bytes(Encoding.DER)


async def _wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def _relay_mail_from(op_from: dict[str, Any], op_to: dict[str, Any], ca: str) -> str:
    """Opens a relay session to ``op_to`` with ``op_from``'s client certificate and tries
    MAIL FROM; returns "accepted" or why it was refused (handshake or SMTP reply)."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    ctx.load_cert_chain(op_from["client_cert"], op_from["client_key"])
    host, _, port = op_to["relay"].rpartition(":")
    try:
        with smtplib.SMTP(host, int(port), timeout=10) as client:
            client.starttls(context=ctx)
            client.ehlo()
            code, msg = client.mail(f"x@{op_from['domains'][0]}")
            return "accepted" if code == 250 else f"{code} {msg.decode()}"
    except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
        return f"refused: {exc}"


@pytest.mark.slow
async def test_revoked_operator_is_refused_within_one_refresh(
    tmp_path: Path, port_base: int
) -> None:
    d = tmp_path / "sbx"
    info = await create_sandbox(d, operators=2, port_base=port_base)
    auth = info["authority"]
    assert set(auth) >= {"list_url", "checksum_url", "signature_url", "crl_url", "ocsp_url"}
    sandbox = load_sandbox(d)
    running: list[Any] = await start_services(sandbox)
    try:
        # the authority publishes the signed list and CRLs at the sandbox.json URLs
        ctx = ssl.create_default_context(cafile=info["ca_bundle"])
        async with httpx.AsyncClient(verify=ctx, timeout=10) as client:
            listed = (await client.get(auth["list_url"])).content
            verify_checksum(listed, (await client.get(auth["checksum_url"])).content)
            assert (await client.get(auth["crl_url"])).status_code == 200
        dns = {e.dn for e in parse_liste_blanche(listed).entries}
        assert {op["subject_dn"] for op in info["operators"]} <= dns

        ops = []
        for op_info in info["operators"]:
            op = Operator(_fast(load_config(Path(op_info["config"])), 1))
            await op.start()
            running.append(op)
            ops.append(op)
        ch, med = info["operators"]
        # each node keeps its last good copy in <data_dir>/trust/ and asks the responder
        assert (Path(ch["data_dir"]) / "trust" / "liste-blanche.xml").is_file()
        assert ops[0].policy is not None and ops[0].policy.ocsp is not None
        verdict = ops[0].policy.check_inbound(_leaf_der(med["server_cert"]), med["domains"][0])
        assert verdict.accepted, verdict.reason
        assert await asyncio.to_thread(_relay_mail_from, med, ch, info["ca_bundle"]) == "accepted"

        argv = ["authority", "operator", "revoke", "--dir", auth["directory"],
                "--passphrase-file", auth["passphrase_file"], "--name", med["name"],
                "--author", "test"]  # fmt: skip
        assert await asyncio.to_thread(main, argv) == 0

        async def refused() -> bool:
            assert ops[0].policy is not None
            v = ops[0].policy.check_inbound(_leaf_der(med["server_cert"]), med["domains"][0])
            return not v.accepted

        await _wait_for(refused, 15, "operator ch-exemple to refuse the revoked operator")
        outcome = await asyncio.to_thread(_relay_mail_from, med, ch, info["ca_bundle"])
        assert outcome != "accepted"
        assert ops[0].policy is not None
        status = ops[0].policy.ocsp
        assert status is not None
        leaf = x509.load_pem_x509_certificates(Path(med["server_cert"]).read_bytes())
        assert status.status(leaf[0], leaf[1]).status == "revoked"
        # delisted too, in the list the node fetched
        cached = (Path(ch["data_dir"]) / "trust" / "liste-blanche.xml").read_bytes()
        assert med["subject_dn"] not in {e.dn for e in parse_liste_blanche(cached).entries}
        state = json.loads((Path(auth["directory"]) / "authority.json").read_text())
        assert state["operators"][med["name"]]["status"] == "revoked"
    finally:
        await stop_all(running)
