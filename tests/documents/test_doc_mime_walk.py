"""The fast MIME walk agrees with the email package on our messages and on shared corpora."""

from __future__ import annotations

import email
from email.policy import compat32
from pathlib import Path

import pytest

from caducee.documents.mime import leaves
from caducee.documents.mss import build_message

IMG = "corpora/clinical/cda-fr-cisis/IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml"


def _reference(raw: bytes) -> list[tuple[str, bytes]]:
    msg = email.message_from_bytes(raw, policy=compat32)
    out = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        out.append((part.get_content_type(), payload if isinstance(payload, bytes) else b""))
    return out


def test_same_parts_as_email_package(shared_dir: Path) -> None:
    cda = (shared_dir / IMG).read_bytes()
    raw = build_message(
        sender="a@x.fr", recipients=["b@y.fr"], cdas=[cda], pdf=b"%PDF-1.4\n"
    ).as_bytes()
    _, parts = leaves(raw)
    assert [(p.content_type, p.decoded()) for p in parts] == _reference(raw)
    assert parts[1].filename == "IHE_XDM.zip"


@pytest.mark.parametrize(
    "name", ["nestedmulti.raw", "multimixed.raw", "multialtern.raw", "multibase64.raw"]
)
def test_enmime_samples(shared_dir: Path, name: str) -> None:
    raw = (shared_dir / "corpora/mime/enmime/parts" / name).read_bytes()
    _, parts = leaves(raw)
    ours = [(p.content_type, p.decoded().replace(b"\r\n", b"\n")) for p in parts]
    ref = [(t, b.replace(b"\r\n", b"\n")) for t, b in _reference(raw)]
    assert ours == ref
