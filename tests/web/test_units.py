"""The webmail's pieces without HTTP: sanitising, parsing, sessions, throttling, receipts,
sending rules (on the real SQLite storage)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from caducee.config.model import NodeConfig
from caducee.core.errors import InvalidInput
from caducee.core.model import Mailbox, MailboxType
from caducee.documents.mdn import parse_mdn
from caducee.storage import open_sqlite
from caducee.storage.interfaces import Storage
from caducee.storage.keyring import create_keyring
from caducee.web import sessions as sessions_module
from caducee.web.mailview import attachment_part, parse_message, sanitise_html
from caducee.web.receipts import build_read_receipt, receipt_status
from caducee.web.sessions import LoginThrottle, SessionStore
from caducee.web.submit import Draft, OutAttachment, TrustLookup, send

A = "ines.moreau@a.test"
B = "paul.martin@a.test"


def test_sanitiser_removes_scripts_handlers_and_remote_content() -> None:
    dirty = (
        '<p onclick="x()">Bonjour <b>docteur</b></p><script>alert(1)</script>'
        '<img src="https://tracker.example/p.gif"><a href="javascript:alert(1)">lien</a>'
        '<a href="https://ans.example/doc">doc</a><style>p{}</style>'
        '<iframe src="https://evil.example"></iframe><form action="/x"><input></form>'
    )
    clean, blocked = sanitise_html(dirty)
    assert blocked
    for bad in ("script", "onclick", "<img", "javascript:", "<style", "iframe", "<form", "alert"):
        assert bad not in clean
    assert "<b>docteur</b>" in clean
    assert 'href="https://ans.example/doc"' in clean and "noopener" in clean
    assert sanitise_html("<p>simple</p>") == ("<p>simple</p>", False)


def _mime(html_body: str | None = None, attach: bytes | None = None) -> bytes:
    msg = email.message.EmailMessage()
    msg["From"] = f"Inès <{A}>"
    msg["To"] = B
    msg["Subject"] = "Résultat"
    msg["Message-ID"] = "<m1@a.test>"
    if html_body is not None:
        msg.set_content(html_body, subtype="html")
    else:
        msg.set_content("texte")
    if attach is not None:
        msg.add_attachment(attach, maintype="image", subtype="png", filename="photo.png")
    return msg.as_bytes(policy=email.policy.SMTP)


def test_parse_message_html_and_attachments() -> None:
    view = parse_message(_mime('<p>Voir <img src="http://x/y.png"></p>'))
    assert view.html.strip() == "<p>Voir </p>" and view.remote_blocked and view.text == ""
    view = parse_message(_mime(attach=b"\x89PNG fake"))
    assert view.text.strip() == "texte"
    (att,) = view.attachments
    assert (att.filename, att.content_type, att.size, att.is_image) == (
        "photo.png", "image/png", 9, True,
    )  # fmt: skip
    assert attachment_part(_mime(attach=b"\x89PNG fake"), 0) == (
        "photo.png", "image/png", b"\x89PNG fake",
    )  # fmt: skip
    assert attachment_part(_mime(), 3) is None


def test_xdm_is_shown_as_a_document_with_the_patient_first(shared_dir: Path) -> None:
    from caducee.documents.xdm import build_xdm

    cda = (shared_dir / "corpora/clinical/cda-fr-cisis/BIO-CR-BIO_2024.01_TSH_1.xml").read_bytes()
    msg = email.message.EmailMessage()
    msg["From"] = A
    msg["Subject"] = "CR"
    msg.set_content("ci-joint")
    msg.add_attachment(build_xdm([cda]), maintype="application", subtype="zip",
                       filename="IHE_XDM.zip")  # fmt: skip
    (doc,) = parse_message(msg.as_bytes()).documents
    assert doc.patient_name.startswith("PAT-TROIS")
    assert doc.birth_date == "28/03/1979" and doc.ins and doc.ins_qualified
    assert "<table" in doc.narrative_html and "<script" not in doc.narrative_html


def test_sessions_expire_when_idle_and_at_the_maximum(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(sessions_module.time, "monotonic", lambda: now[0])
    store = SessionStore(idle_seconds=60, max_seconds=300)
    s = store.create("x", "X", None)
    now[0] += 59
    assert store.get(s.sid) is s
    now[0] += 61
    assert store.get(s.sid) is None
    s = store.create("x", "X", None)
    for _ in range(6):
        now[0] += 55
        got = store.get(s.sid)
    assert got is None  # 330 s after creation
    assert store.get(None) is None and store.get("forged") is None


def test_throttle_rate_and_lockout(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(sessions_module.time, "monotonic", lambda: now[0])
    t = LoginThrottle(limit=3, window=60, max_failures=2, lockout=100)
    assert [t.allow("ip") for _ in range(4)] == [True, True, True, False]
    assert t.allow("other")
    now[0] += 61
    assert t.allow("ip")
    t.failed("ip")
    t.failed("ip")
    assert t.locked("ip") and not t.allow("ip")
    now[0] += 101
    assert not t.locked("ip") and t.allow("ip")


def test_read_receipt_is_a_displayed_mdn() -> None:
    headers = email.message_from_bytes(
        b"From: a@x.test\r\nSubject: photo\r\nMessage-ID: <m1@x.test>\r\n"
        b"Disposition-Notification-To: a@x.test\r\n\r\n"
    )
    to, raw = build_read_receipt(headers, "b@y.test", "Dr B")
    assert to == "a@x.test"
    info = parse_mdn(email.message_from_bytes(raw))
    assert info is not None
    assert info.original_message_id == "<m1@x.test>" and info.final_recipient == "b@y.test"
    assert "displayed" in info.disposition and "manual-action" in info.disposition


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    create_keyring(tmp_path / "keyring")
    st = await open_sqlite(tmp_path / "data", tmp_path / "keyring", node="t")
    for addr in (A, B):
        await st.accounts.create_account(addr, None)
        await st.accounts.create_mailbox(addr, MailboxType.PER, "810000000117")
        await st.accounts.grant(addr, addr, "lrswipkxtea")
    yield st
    await st.close()


def _cfg(tmp_path: Path) -> NodeConfig:
    return NodeConfig.model_validate(
        {
            "name": "t", "data_dir": str(tmp_path / "data"), "domains": ["a.test"],
            "crypto": {"keyring_file": str(tmp_path / "keyring")},
            "tls": {"cert_file": "c", "key_file": "k", "ca_bundle": "b"},
            "trust": {"liste_blanche": "l"}, "smtp": {"hostname": "mx.a.test"},
        }
    )  # fmt: skip


async def _box(storage: Storage, addr: str) -> Mailbox:
    mb = await storage.accounts.get_mailbox(addr)
    assert mb is not None
    return mb


async def test_send_local_with_receipts_and_refusals(storage: Storage, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    trust = TrustLookup(lambda d: d == "b.test")
    sender = await _box(storage, A)
    photo = OutAttachment("p.jpg", "image/jpeg", b"\xff\xd8jpeg")
    ins = "279035121518989"
    draft = Draft(sender, "Inès", (B,), (), "Photo", "Bonjour", (photo,),
                  delivery_receipt=True, read_receipt=True, patient_ins=ins)  # fmt: skip
    res = await send(cfg, storage, trust, A, draft)
    assert res.local == (B,) and res.remote == ()
    for bad, why in (("x@c.test", "espace de confiance"), ("nobody@a.test", "Boîte inconnue"),
                     ("pas une adresse", "invalide")):  # fmt: skip
        with pytest.raises(InvalidInput, match=why):
            await send(cfg, storage, trust, A, Draft(sender, "", (bad,), (), "s", "b"))
    # B got it, with the read receipt asked and the patient context
    inbox = await storage.messages.get_folder((await _box(storage, B)).mailbox_id, "INBOX")
    assert inbox is not None
    (m,) = await storage.messages.list_messages(inbox.folder_id)
    got = parse_message(await storage.blobs.get(m.blob))
    assert got.mdn_to == A and got.patient_ins == "279035121518989"
    # the success DSN of the local delivery is in A's INBOX: "remis"; then B's MDN: "lu"
    status = await receipt_status(storage, sender.mailbox_id, res.message_id, [B])
    assert (status[0].delivery, status[0].read) == ("remis", "")
    headers = email.message_from_bytes(await storage.blobs.get(m.blob))
    _, mdn = build_read_receipt(headers, B, "Paul")
    await storage.messages.deliver(await storage.blobs.put(mdn), [sender.mailbox_id])
    status = await receipt_status(storage, sender.mailbox_id, res.message_id, [B])
    assert (status[0].delivery, status[0].read) == ("remis", "lu")
    events = await storage.audit.query(kind_prefix="web.message.sent")
    assert len(events) == 1 and "Bonjour" not in str(events[0].details)
