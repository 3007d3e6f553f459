"""The integration agent end to end: Dovecot mailbox -> MLLP / FHIR / folder -> MDN -> folders."""

from __future__ import annotations

import base64
import email
import json
from email.policy import default
from pathlib import Path

import pytest
from intg_cda import nir_with_key, variant
from intg_env import BIO, IMG, PRACTICE, SENDER, AgentEnv
from intg_fhir import FhirServer

from caducee.documents.mdn import parse_mdn
from caducee.integration.adapters import AdapterUnavailable
from caducee.integration.agent import Agent
from caducee.integration.config import load_config


async def _run_once(env: AgentEnv) -> int:
    agent = Agent(load_config(env.config))
    try:
        return await agent.run_once()
    finally:
        await agent.close()


def _mdns(env: AgentEnv, count: int) -> list[email.message.EmailMessage]:
    out = []
    for r in env.smtp.wait_for(count):
        msg = email.message_from_bytes(r.data, policy=default)
        assert r.rcpts[0][0] == SENDER
        out.append(msg)
    return out


async def test_message_integrated_through_three_adapters(
    agent_env: AgentEnv, fhir_server: FhirServer, shared_dir: Path
) -> None:
    env = agent_env
    env.write_config(fhir=fhir_server.base_url)
    cda = (shared_dir / "corpora" / IMG).read_bytes()
    raw = env.append(cda, pdf=b"%PDF-1.4\n")
    mid = str(email.message_from_bytes(raw, policy=default)["Message-ID"])
    assert await _run_once(env) == 1

    (got,) = env.mllp.wait_integrated(1)
    assert got.trigger == "T02" and got.order_control == "NW"
    assert got.document_id == "1.2.250.1.213.1.1.1.45.2024.2.1"
    assert got.cda == cda
    assert got.pid3.startswith("279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS")
    assert got.subject.startswith("XDM/1.0/DDM+CR")

    docref = next(v for k, v in fhir_server.resources.items() if k.startswith("DocumentReference/"))
    binary = next(v for k, v in fhir_server.resources.items() if k.startswith("Binary/"))
    assert base64.b64decode(binary["data"]) == cda
    assert docref["status"] == "current"
    assert docref["type"]["coding"][0]["code"] == "18748-4"
    assert docref["subject"]["identifier"]["value"] == "279035121518989"

    files = sorted(p.name for p in env.folder.iterdir())
    assert files == [
        "1.2.250.1.213.1.1.1.45.2024.2.1.json",
        "1.2.250.1.213.1.1.1.45.2024.2.1.pdf",
        "1.2.250.1.213.1.1.1.45.2024.2.1.xml",
    ]
    side = json.loads((env.folder / "1.2.250.1.213.1.1.1.45.2024.2.1.json").read_text())
    assert side["action"] == "new" and side["patient"]["local_id"] == "P001"

    (mdn,) = _mdns(env, 1)
    info = parse_mdn(mdn)
    assert info is not None and info.processed and info.original_message_id == mid
    assert info.final_recipient == PRACTICE
    assert "[KO" not in mdn["Subject"]
    assert env.dovecot.count(PRACTICE, "INBOX") == 0
    assert env.dovecot.count(PRACTICE, "Caducee/Integrated") == 1

    # The same message again (resent): filed, never integrated twice, no second MDN.
    env.dovecot.append(PRACTICE, raw)
    assert await _run_once(env) == 1
    assert len(env.mllp.frames) == 1
    assert len(env.smtp.messages) == 1


async def test_errors_answered_with_ans_codes(agent_env: AgentEnv, shared_dir: Path) -> None:
    env = agent_env
    env.write_config()
    base = (shared_dir / "corpora" / IMG).read_bytes()
    other_nir = nir_with_key("1840175123456")
    cases = {
        902: variant(
            base, doc_id="1.2.3.902", set_id="1.2.3.902.s", ins=other_nir, birth_date="19840101"
        ),
        904: variant(base, doc_id="1.2.3.904", set_id="1.2.3.904.s", ins=other_nir),
        903: variant(base, doc_id="1.2.3.903", set_id="1.2.3.903.s", drop_ins=True),
        905: variant(base, doc_id="1.2.3.905", set_id="1.2.3.905.s", drop_birthplace=True),
    }
    for raw in cases.values():
        env.append(raw)
    assert await _run_once(env) == 4
    codes = []
    for mdn in _mdns(env, 4):
        info = parse_mdn(mdn)
        assert info is not None and not info.processed
        assert mdn["Subject"].startswith(
            f"[KO Intégration système !][{info.error_code}] XDM/1.0/DDM+"
        )
        codes.append(info.error_code)
    assert sorted(codes) == [902, 903, 904, 905]
    assert env.mllp.frames == []
    assert env.dovecot.count(PRACTICE, "Caducee/Rejected") == 4


async def test_ins_mismatch_is_904(agent_env: AgentEnv, shared_dir: Path) -> None:
    env = agent_env
    (env.root / "patients.csv").write_text(
        "id,ins,birth_name,first_birth_forename,birth_date,sex,birthplace_cog\n"
        "P001,279035121518989,PAT-TROIS,DOMINIQUE,19790329,F,51215\n"
    )
    env.write_config()
    env.append((shared_dir / "corpora" / IMG).read_bytes())
    assert await _run_once(env) == 1
    (mdn,) = _mdns(env, 1)
    info = parse_mdn(mdn)
    assert info is not None and info.error_code == 904
    assert env.mllp.frames == []


async def test_replace_delete_and_version_checks(
    agent_env: AgentEnv, fhir_server: FhirServer, shared_dir: Path
) -> None:
    env = agent_env
    env.write_config(fhir=fhir_server.base_url)
    base = (shared_dir / "corpora" / BIO).read_bytes()
    v1 = variant(base, doc_id="1.2.9.1", set_id="1.2.9", version=1)
    v2 = variant(base, doc_id="1.2.9.2", set_id="1.2.9", version=2)
    stale = variant(base, doc_id="1.2.9.3", set_id="1.2.9", version=2)
    foreign = variant(base, doc_id="1.2.9.4", set_id="1.2.9", version=3, author_org="999999999")
    env.append(v1)
    assert await _run_once(env) == 1
    env.append(v2)
    assert await _run_once(env) == 1
    env.append(stale)
    env.append(foreign)
    assert await _run_once(env) == 2
    env.append(v2, delete=True)
    assert await _run_once(env) == 1
    got = env.mllp.wait_integrated(3)
    assert [(r.trigger, r.order_control, r.document_id, r.parent_id) for r in got] == [
        ("T02", "NW", "1.2.9.1", ""),
        ("T10", "RO", "1.2.9.2", "1.2.9.1"),
        ("T04", "CA", "1.2.9.2", "1.2.9.1"),
    ]
    codes = [parse_mdn(m).error_code for m in _mdns(env, 5)]  # type: ignore[union-attr]
    assert codes == [None, None, 900, 901, None]
    # Folder: the replacement names what it replaces; the deletion has its own sidecar.
    assert json.loads((env.folder / "1.2.9.2.json").read_text())["replaces"] == "1.2.9.1"
    assert json.loads((env.folder / "1.2.9.2.delete.json").read_text())["action"] == "delete"
    # FHIR: relatesTo on the replacement, entered-in-error after the deletion.
    refs = {
        v["masterIdentifier"]["value"]: v
        for k, v in fhir_server.resources.items()
        if k.startswith("DocumentReference/")
    }
    assert refs["urn:oid:1.2.9.1"]["status"] == "current"
    v2_ref = refs["urn:oid:1.2.9.2"]
    assert v2_ref["status"] == "entered-in-error"
    assert v2_ref["relatesTo"][0]["code"] == "replaces"


async def test_practice_software_refusal_becomes_mdn_error(
    agent_env: AgentEnv, shared_dir: Path
) -> None:
    env = agent_env
    env.mllp.reject["1.2.250.1.213.1.1.1.45.2024.2.1"] = 902
    env.write_config(folder=False)
    env.append((shared_dir / "corpora" / IMG).read_bytes())
    assert await _run_once(env) == 1
    (mdn,) = _mdns(env, 1)
    info = parse_mdn(mdn)
    assert info is not None and info.error_code == 902
    assert "902^Identifiant de patient inconnu^messageErrorCondition" in info.disposition
    assert env.dovecot.count(PRACTICE, "Caducee/Rejected") == 1


async def test_patient_index_reloaded_after_902(agent_env: AgentEnv, shared_dir: Path) -> None:
    env = agent_env
    env.write_config(folder=False)
    nir = nir_with_key("1840175123456")
    cda = variant(
        (shared_dir / "corpora" / IMG).read_bytes(),
        doc_id="1.2.5.1",
        set_id="1.2.5",
        ins=nir,
        birth_date="19840101",
    )
    agent = Agent(load_config(env.config))
    try:
        env.append(cda)
        assert await agent.run_once() == 1
        with (env.root / "patients.csv").open("a") as fh:
            fh.write(f"P003,{nir},PAT-TROIS,DOMINIQUE,19840101,F,51215\n")
        env.append(cda)  # the sender tries again after the practice created the patient
        assert await agent.run_once() == 1
    finally:
        await agent.close()
    codes = [parse_mdn(m).error_code for m in _mdns(env, 2)]  # type: ignore[union-attr]
    assert codes == [902, None]
    (got,) = env.mllp.wait_integrated(1)
    assert got.document_id == "1.2.5.1"


async def test_concurrent_batch_keeps_set_order(agent_env: AgentEnv, shared_dir: Path) -> None:
    """With several messages in flight, versions of one document set still arrive in order."""
    env = agent_env
    env.write_config(folder=False, concurrency=4)
    base = (shared_dir / "corpora" / BIO).read_bytes()
    for k in range(6):
        env.append(variant(base, doc_id=f"1.4.{k}", set_id=f"1.4.{k}.s", version=1))
    env.append(variant(base, doc_id="1.4.0.v2", set_id="1.4.0.s", version=2))
    env.append(variant(base, doc_id="1.4.0.v3", set_id="1.4.0.s", version=3))
    assert await _run_once(env) == 8
    got = env.mllp.wait_integrated(8)
    chain = [(r.trigger, r.document_id) for r in got if r.document_id.startswith("1.4.0")]
    assert chain == [("T02", "1.4.0"), ("T10", "1.4.0.v2"), ("T10", "1.4.0.v3")]
    assert sorted(r.document_id for r in got) == sorted(
        [f"1.4.{k}" for k in range(6)] + ["1.4.0.v2", "1.4.0.v3"]
    )
    assert [parse_mdn(m).error_code for m in _mdns(env, 8)] == [None] * 8  # type: ignore[union-attr]


async def test_adapter_outage_retried_without_duplicates(
    agent_env: AgentEnv, fhir_server: FhirServer, shared_dir: Path
) -> None:
    """The FHIR server is down: the message stays in the inbox; on retry the MLLP adapter,
    which already took the document, is not given it a second time."""
    env = agent_env
    env.write_config(fhir=fhir_server.base_url, folder=False)
    env.append((shared_dir / "corpora" / IMG).read_bytes())
    fhir_server.unavailable = True
    with pytest.raises(AdapterUnavailable, match="FHIR server error 503"):
        await _run_once(env)
    assert len(env.mllp.frames) == 1
    assert env.dovecot.count(PRACTICE, "INBOX") == 1
    assert env.smtp.messages == []
    fhir_server.unavailable = False
    assert await _run_once(env) == 1
    assert len(env.mllp.frames) == 1
    assert any(k.startswith("DocumentReference/") for k in fhir_server.resources)
    (mdn,) = _mdns(env, 1)
    assert parse_mdn(mdn).processed  # type: ignore[union-attr]
    assert env.dovecot.count(PRACTICE, "Caducee/Integrated") == 1


async def test_require_conformant_refuses_non_french_cda(
    agent_env: AgentEnv, shared_dir: Path
) -> None:
    env = agent_env
    schema = shared_dir / "corpora/clinical/cda-fr-cisis/infrastructure/cda/CDA_extended.xsd"
    ccd = (shared_dir / "corpora/clinical/cda-hl7-ccda/CCD.xml").read_bytes()
    img = (shared_dir / "corpora" / IMG).read_bytes()
    env.write_config(
        folder=False, practice_extra=f'cda_schema = "{schema}"\nrequire_conformant = true'
    )
    env.append(ccd)  # a US C-CDA: no INS, not French
    env.append(img)
    assert await _run_once(env) == 2
    codes = sorted((parse_mdn(m).error_code or 0) for m in _mdns(env, 2))  # type: ignore[union-attr]
    assert codes == [0, 906]
    (got,) = env.mllp.wait_integrated(1)
    assert got.document_id == "1.2.250.1.213.1.1.1.45.2024.2.1"


async def test_watch_mode_wakes_up_on_idle(agent_env: AgentEnv, shared_dir: Path) -> None:
    """In watch mode the agent waits with IMAP IDLE and integrates a message as it arrives."""
    import asyncio

    env = agent_env
    env.write_config(folder=False, idle=60)  # only IDLE, not the timeout, can wake it up
    agent = Agent(load_config(env.config))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.wait_for(agent.idling.wait(), 20)  # connected, inbox empty, in IDLE
        assert env.mllp.frames == []
        await asyncio.to_thread(env.append, (shared_dir / "corpora" / IMG).read_bytes())
        (got,) = await asyncio.to_thread(env.mllp.wait_integrated, 1, 20.0)
        assert got.trigger == "T02"
        await asyncio.to_thread(env.smtp.wait_for, 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    assert env.dovecot.count(PRACTICE, "Caducee/Integrated") == 1
