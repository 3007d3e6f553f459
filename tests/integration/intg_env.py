"""Shared constants and the agent test environment (config writer, message appender)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from intg_dovecot import Dovecot
from intg_mllp import MllpListener
from intg_smtp import SubmissionServer

from caducee.documents.mss import build_message

PRACTICE = "dpi@cab.mssante.fr"
SENDER = "doc@a.mssante.fr"
IMAP_PASSWORD = "imap-pass"
SMTP_PASSWORD = "smtp-pass"
IMG = "clinical/cda-fr-cisis/IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml"
BIO = "clinical/cda-fr-cisis/BIO-CR-BIO_2024.01_TSH_1.xml"


PATIENTS_CSV = (
    "id,ins,birth_name,first_birth_forename,birth_date,sex,birthplace_cog\n"
    "P001,279035121518989,PAT-TROIS,DOMINIQUE,19790328,F,51215\n"
    "P002,,DUPONT,JEAN,19500101,M,\n"
)


@dataclass
class AgentEnv:
    root: Path
    config: Path
    folder: Path
    dovecot: Dovecot
    smtp: SubmissionServer
    mllp: MllpListener
    env: dict[str, str]

    def write_config(
        self,
        *,
        fhir: str | None = None,
        folder: bool = True,
        oru: bool = False,
        idle: float = 30,
        concurrency: int = 1,
        practice_extra: str = "",
    ) -> Path:
        adapters = '[[adapter]]\ntype = "mllp"\nhost = "127.0.0.1"\n'
        adapters += f"port = {self.mllp.port}\ntimeout = 20\n"
        if fhir:
            adapters += f'[[adapter]]\ntype = "fhir"\nbase_url = "{fhir}"\n'
        if folder:
            adapters += f'[[adapter]]\ntype = "folder"\npath = "{self.folder}"\n'
        oru_section = '[oru]\nlisten = "127.0.0.1:0"\n' if oru else ""
        self.config.write_text(
            f"""
[mailbox]
host = "127.0.0.1"
port = {self.dovecot.port}
user = "{PRACTICE}"
password_env = "TEST_IMAP_PASSWORD"
ca_file = "{self.dovecot.ca_file}"
idle_seconds = {idle}

[submission]
server = "127.0.0.1:{self.smtp.port}"
user = "{PRACTICE}"
password_env = "TEST_SMTP_PASSWORD"
ca_file = "{self.dovecot.ca_file}"

[practice]
address = "{PRACTICE}"
patients = "patients.csv"
state = "state.sqlite"
concurrency = {concurrency}
{practice_extra}

{adapters}
{oru_section}
"""
        )
        return self.config

    def append(self, cda: bytes, *, delete: bool = False, pdf: bytes | None = None) -> bytes:
        msg = build_message(
            sender=SENDER, recipients=[PRACTICE], cdas=[cda], delete=delete, pdf=pdf
        )
        raw = msg.as_bytes()
        self.dovecot.append(PRACTICE, raw)
        return raw
