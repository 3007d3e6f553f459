"""``caducee send`` against a real STARTTLS submission server (throwaway certs per run)."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from intg_certs import Pki, make_pki
from intg_smtp import SubmissionServer

from caducee.core.errors import AuthenticationFailed, PolicyRefused
from caducee.documents.mss import build_message
from caducee.documents.xdm import read_xdm
from caducee.integration.submit import SubmissionSettings, submit

ROOT = Path(__file__).resolve().parents[2]
CDA = "clinical/cda-fr-cisis/IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def smtp_server(pki: Pki) -> Iterator[SubmissionServer]:
    server = SubmissionServer(pki.cert_file, pki.key_file, users={"doc@a.mssante.fr": "s3cret"})
    server.start()
    yield server
    server.stop()


def _run_cli(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **env_extra)
    return subprocess.run(
        [sys.executable, "-m", "caducee", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_send_cli_submits_mssante_message(
    shared_dir: Path, smtp_server: SubmissionServer, pki: Pki, tmp_path: Path
) -> None:
    pdf = tmp_path / "cr.pdf"
    pdf.write_bytes(b"%PDF-1.4\n% test\n")
    args = ["send", "--from", "doc@a.mssante.fr", "--to", "dpi@b.mssante.fr"]
    args += ["--cda", str(shared_dir / "corpora" / CDA), "--pdf", str(pdf)]
    args += ["--text", "Bonjour, voici le compte rendu.", "--nil", "DEV935997"]
    args += ["--server", f"127.0.0.1:{smtp_server.port}", "--user", "doc@a.mssante.fr"]
    args += ["--ca-file", str(pki.ca_file)]
    proc = _run_cli(args, {"CADUCEE_SMTP_PASSWORD": "s3cret"})
    assert proc.returncode == 0, proc.stderr
    (received,) = smtp_server.wait_for(1)
    assert received.user == "doc@a.mssante.fr"
    assert received.mail_from == "doc@a.mssante.fr"
    assert "RET=HDRS" in received.mail_options
    assert received.rcpts == [("dpi@b.mssante.fr", ["NOTIFY=SUCCESS,FAILURE,DELAY"])]
    msg = email.message_from_bytes(received.data, policy=default)
    assert msg["Subject"] == ("XDM/1.0/DDM+CR d’imagerie médicale PAT-TROIS DOMINIQUE 28/03/1979")
    assert msg["X-MSS-CODECDA"] == "18748-4"
    assert msg["X-MSS-INS"] == "O"
    assert msg["X-MSS-NIL"] == "DEV935997"
    assert msg["X-MSS-MES"] is None
    assert msg["Disposition-Notification-To"] == "doc@a.mssante.fr"
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and body.get_content_charset() == "utf-8"
    assert "voici le compte rendu" in body.get_content()
    atts = list(msg.iter_attachments())
    assert atts[0].get_filename() == "IHE_XDM.zip"
    pdf_name = atts[1].get_filename() or ""
    assert pdf_name.endswith("_PAT-TROIS_DOMINIQUE_1234567890121.pdf")
    pkg = read_xdm(atts[0].get_payload(decode=True))
    codes = [e.cda.type_code.code for e in pkg.documents if e.cda and e.cda.type_code]
    assert codes == ["18748-4"]


def test_send_cli_needs_a_password(smtp_server: SubmissionServer, shared_dir: Path) -> None:
    args = ["send", "--from", "a@a.fr", "--to", "b@b.fr"]
    args += ["--cda", str(shared_dir / "corpora" / CDA), "--user", "u"]
    args += ["--server", f"127.0.0.1:{smtp_server.port}"]
    args += ["--password-env", "CADUCEE_TEST_UNSET_PASSWORD"]
    proc = _run_cli(args, {})
    assert proc.returncode == 1
    assert "password" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert smtp_server.messages == []


def _msg(shared_dir: Path, to: str, *, end_exchange: bool = False) -> EmailMessage:
    return build_message(
        sender="doc@a.mssante.fr",
        recipients=[to],
        cdas=[(shared_dir / "corpora" / CDA).read_bytes()],
        end_exchange=end_exchange,
    )


def test_submit_rejects_untrusted_certificate(
    smtp_server: SubmissionServer, shared_dir: Path
) -> None:
    msg = _msg(shared_dir, "dpi@b.mssante.fr")
    settings = SubmissionSettings("127.0.0.1", smtp_server.port, "doc@a.mssante.fr", "s3cret")
    with pytest.raises(PolicyRefused, match="certificate not trusted"):
        submit(msg, settings)
    assert smtp_server.messages == []


def test_submit_wrong_password(smtp_server: SubmissionServer, pki: Pki, shared_dir: Path) -> None:
    msg = _msg(shared_dir, "dpi@b.mssante.fr")
    settings = SubmissionSettings(
        "127.0.0.1", smtp_server.port, "doc@a.mssante.fr", "wrong", ca_file=str(pki.ca_file)
    )
    with pytest.raises(AuthenticationFailed):
        submit(msg, settings)
    assert smtp_server.messages == []


def test_send_to_patient_with_fin(
    smtp_server: SubmissionServer, pki: Pki, shared_dir: Path
) -> None:
    msg = _msg(shared_dir, "279035121518989@patient.mssante.fr", end_exchange=True)
    settings = SubmissionSettings(
        "127.0.0.1", smtp_server.port, "doc@a.mssante.fr", "s3cret", ca_file=str(pki.ca_file)
    )
    submit(msg, settings)
    (received,) = smtp_server.wait_for(1)
    parsed = email.message_from_bytes(received.data, policy=default)
    assert parsed["X-MSS-MES"] == "FIN"
    assert received.rcpts[0][0] == "279035121518989@patient.mssante.fr"
