"""Lab results: ORU^R01 carrying a CR-BIO CDA go through the same integration path."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from intg_env import BIO, AgentEnv
from intg_mllp import MllpListener

from caducee.documents.hl7v2 import MLLP_END, mllp_frame, parse_ack, parse_oru
from caducee.integration.agent import Agent
from caducee.integration.config import load_config

V21 = "clinical/hl7v2-fr/Volets/TRANS_DOC_CDA_HL7V2/V2.1/ORU"
V20_REAL = (
    "clinical/hl7v2-fr/Volets/TRANS_DOC_CDA_HL7V2/V2.0/ORU/Remplacement_ORU/"
    "message_ORU_CR_Bio_RPLC_N1_Base64_N3_Base64.er7"
)
PLACEHOLDER = "RG9jdW1lbnQgbWVkY2lhbCBhdSBmb3JtYXQgQ0RBIG5pdmVhdSAx"


def _oru_with_cda(shared_dir: Path, cda: bytes, order_control: str = "NW") -> bytes:
    text = (
        shared_dir
        / "corpora"
        / V21
        / "Transmission_initiale_ORU"
        / "message_ORU_CR_Bio_INIT_N1_N3.hl7"
    ).read_text(encoding="utf-8")
    text = text.replace(PLACEHOLDER, base64.b64encode(cda).decode(), 1)
    text = text.replace("ORC|NW|", f"ORC|{order_control}|", 1)
    return text.encode("utf-8")


async def _send(port: int, message: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mllp_frame(message))
    await writer.drain()
    frame = await asyncio.wait_for(reader.readuntil(MLLP_END), 30)
    writer.close()
    await writer.wait_closed()
    return frame[1:-2]


def test_parse_oru_samples(shared_dir: Path) -> None:
    real = parse_oru((shared_dir / "corpora" / V20_REAL).read_bytes())
    assert len(real) == 2 and all(b"ClinicalDocument" in d.cda[:4096] for d in real)
    assert real[0].ins == "277076322082910"
    placeholder = (
        shared_dir
        / "corpora"
        / V21
        / "Transmission_initiale_ORU"
        / "message_ORU_CR_Bio_INIT_N1_N3.hl7"
    ).read_bytes()
    assert parse_oru(placeholder) == []  # the sample's OBX is a text placeholder, not a CDA


async def test_oru_integrated_and_acknowledged(
    agent_env: AgentEnv, mllp: MllpListener, shared_dir: Path
) -> None:
    env = agent_env
    env.write_config(folder=False, oru=True)
    agent = Agent(load_config(env.config))
    server = await agent.start_oru()
    try:
        cda = (shared_dir / "corpora" / BIO).read_bytes()
        ack = parse_ack(await _send(agent.oru_port, _oru_with_cda(shared_dir, cda)))
        assert ack.code == "AA" and ack.control_id == "015"
        (got,) = await asyncio.to_thread(mllp.wait_integrated, 1)
        assert got.trigger == "T02" and got.cda == cda
        # The same ORU again: acknowledged, not integrated twice.
        ack = parse_ack(await _send(agent.oru_port, _oru_with_cda(shared_dir, cda)))
        assert ack.code == "AA" and len(mllp.frames) == 1
        # Deletion (ORC-1 CA) -> MDM^T04.
        ack = parse_ack(await _send(agent.oru_port, _oru_with_cda(shared_dir, cda, "CA")))
        assert ack.code == "AA"
        got = await asyncio.to_thread(mllp.wait_integrated, 2)
        assert got[1].trigger == "T04"
        # A text placeholder instead of a CDA: AE with 906.
        placeholder = (
            shared_dir
            / "corpora"
            / V21
            / "Transmission_initiale_ORU"
            / "message_ORU_CR_Bio_INIT_N1_N3.hl7"
        ).read_bytes()
        ack = parse_ack(await _send(agent.oru_port, placeholder))
        assert ack.code == "AE" and ack.app_error == "906"
        # Unknown patient (INS of the real V2.0 sample, not in the index): AE 902.
        real = (shared_dir / "corpora" / V20_REAL).read_bytes()
        ack = parse_ack(await _send(agent.oru_port, real))
        assert ack.code == "AE" and ack.app_error == "902"
    finally:
        server.close()
        await server.wait_closed()
        await agent.close()


def test_oru_acks_validate_with_hl7apy(shared_dir: Path) -> None:
    """The ACKs the agent returns to a lab are valid HL7 v2.5 for a strict parser."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    from caducee.documents.hl7v2 import build_ack

    oru = (
        shared_dir
        / "corpora"
        / V21
        / "Transmission_initiale_ORU"
        / "message_ORU_CR_Bio_INIT_N1_N3.hl7"
    ).read_bytes()
    ok = parse_message(build_ack(oru), validation_level=VALIDATION_LEVEL.STRICT)
    assert ok.msa.msa_1.to_er7() == "AA" and ok.msa.msa_2.to_er7() == "015"
    ko = parse_message(
        build_ack(oru, code="AE", error=902, label="Identifiant patient inconnu"),
        validation_level=VALIDATION_LEVEL.STRICT,
    )
    assert ko.err.err_5.to_er7() == "902^Identifiant patient inconnu^applicationErrorCondition"
