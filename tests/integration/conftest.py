"""Fixtures for the integration agent: Dovecot (IMAP), a submission server (MDNs), an MLLP
practice-software listener, a FHIR endpoint, a patient index and an agent configuration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from intg_certs import Pki, make_pki
from intg_dovecot import Dovecot, start_dovecot
from intg_env import IMAP_PASSWORD, PATIENTS_CSV, PRACTICE, SMTP_PASSWORD, AgentEnv
from intg_fhir import FhirServer
from intg_mllp import MllpListener
from intg_smtp import SubmissionServer


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def dovecot(tmp_path: Path, pki: Pki) -> Iterator[Dovecot]:
    dc = start_dovecot(tmp_path, pki, {PRACTICE: IMAP_PASSWORD})
    yield dc
    dc.stop()


@pytest.fixture
def smtp_server(pki: Pki) -> Iterator[SubmissionServer]:
    server = SubmissionServer(pki.cert_file, pki.key_file, users={PRACTICE: SMTP_PASSWORD})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mllp() -> Iterator[MllpListener]:
    listener = MllpListener()
    listener.start()
    yield listener
    listener.stop()


@pytest.fixture
def fhir_server() -> Iterator[FhirServer]:
    server = FhirServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def agent_env(
    tmp_path: Path,
    dovecot: Dovecot,
    smtp_server: SubmissionServer,
    mllp: MllpListener,
    monkeypatch: pytest.MonkeyPatch,
) -> AgentEnv:
    root = tmp_path / "agent"
    root.mkdir()
    (root / "patients.csv").write_text(PATIENTS_CSV)
    env = {"TEST_IMAP_PASSWORD": IMAP_PASSWORD, "TEST_SMTP_PASSWORD": SMTP_PASSWORD}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return AgentEnv(root, root / "agent.toml", root / "out", dovecot, smtp_server, mllp, env)
