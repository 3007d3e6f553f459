"""Submission (587) over real TLS: STARTTLS, AUTH PLAIN, sender/From ownership, liste blanche
recipients, local delivery + Sent copy, queueing with DSN parameters (issue 2 §5, §7)."""

from __future__ import annotations

import asyncio
import base64
import smtplib

import pytest
from smtp_harness import PASSWORDS, Node, RawClient, body_of

from caducee.core.model import MailboxType

MSG = b"From: Alice <alice@b.test>\r\nTo: bob@b.test\r\nSubject: CR\r\n\r\nCompte rendu\r\n"


async def test_auth_only_after_tls_and_mail_only_after_auth(node: Node) -> None:
    def talk() -> list[int]:
        codes = []
        with smtplib.SMTP(*node.submission_addr, timeout=20) as c:
            c.ehlo()
            assert c.has_extn("starttls") and not c.has_extn("auth")
            codes.append(c.docmd("AUTH PLAIN", base64.b64encode(b"\0alice\0x").decode())[0])
            codes.append(c.mail("alice@b.test")[0])
            c.starttls(context=node.client_context())
            c.ehlo()
            assert c.esmtp_features["auth"].strip() == "PLAIN"
            codes.append(c.mail("alice@b.test")[0])
        return codes

    assert await asyncio.to_thread(talk) == [530, 530, 530]


@pytest.mark.parametrize(
    "credentials",
    [b"\0alice\0wrong", b"\0nobody\0x", b"carol\0alice\0alice-Secret-1", b"garbage"],
)
async def test_bad_credentials_are_535_and_audited(
    node: Node, credentials: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")

    def talk() -> tuple[int, bytes]:
        with node.submission_client(login=None) as c:
            return c.docmd("AUTH PLAIN", base64.b64encode(credentials).decode())

    code, text = await asyncio.to_thread(talk)
    assert (code, text[:5]) == (535, b"5.7.8")
    ev = await node.wait_audit(lambda e: e.kind == "smtp.submission.auth")
    assert ev.outcome == "refused"
    # AUTH arguments (the password) never reach the audit trail nor the logs.
    assert all(b"Secret" not in repr(e).encode() for e in await node.audit())
    assert "Secret" not in caplog.text and base64.b64encode(credentials).decode() not in caplog.text


async def test_auth_with_challenge_and_cancel(node: Node) -> None:
    def talk() -> list[bytes]:
        c = RawClient(node.submission_addr)
        c.starttls(node.client_context(), helo="client.test")
        c.send(b"AUTH PLAIN\r\n")
        out = c.replies(1)
        c.send(b"*\r\nAUTH PLAIN\r\n")
        out += c.replies(2)
        c.send(base64.b64encode(b"\0alice\0" + PASSWORDS["alice"].encode()) + b"\r\n")
        out += c.replies(1)
        c.close()
        return out

    first, cancelled, again, ok = await asyncio.to_thread(talk)
    assert first == b"334 \r\n" and again == b"334 \r\n"
    assert cancelled.startswith(b"501 5.0.0") and ok.startswith(b"235 2.7.0")


async def test_local_delivery_with_copy_in_sent(node: Node) -> None:
    def send() -> dict[str, tuple[int, bytes]]:
        with node.submission_client() as c:
            return c.sendmail("alice@b.test", ["bob@b.test"], MSG)

    assert await asyncio.to_thread(send) == {}
    (inbox,) = await node.folder_messages("bob@b.test")
    assert body_of(inbox) == MSG and b"with ESMTPSA" in inbox
    (sent,) = await node.folder_messages("alice@b.test", "Sent")
    assert body_of(sent) == MSG
    alice = await node.storage.accounts.get_mailbox("alice@b.test")
    assert alice is not None
    folder = await node.storage.messages.get_folder(alice.mailbox_id, "Sent")
    assert folder is not None
    (meta,) = await node.storage.messages.list_messages(folder.folder_id)
    assert "\\Seen" in meta.flags
    assert node.queued == []  # nothing remote
    ev = await node.wait_audit(lambda e: e.kind == "smtp.submission.accepted")
    assert ev.actor == "alice"


async def test_delegated_org_mailbox_may_send(node: Node) -> None:
    msg = b"From: secretariat@b.test\r\nSubject: s\r\n\r\nx\r\n"

    def send() -> dict[str, tuple[int, bytes]]:
        with node.submission_client() as c:
            return c.sendmail("secretariat@b.test", ["bob@b.test"], msg)

    assert await asyncio.to_thread(send) == {}
    assert len(await node.folder_messages("secretariat@b.test", "Sent")) == 1


async def test_envelope_sender_spoofing_is_refused(node: Node) -> None:
    def talk() -> list[tuple[int, bytes]]:
        with node.submission_client() as c:
            out = [c.mail("carol@b.test")]
            c.rset()
            out.append(c.mail("<>"))
            c.rset()
            out.append(c.mail("alice@a.test"))
            return out

    for code, text in await asyncio.to_thread(talk):
        assert (code, text[:5]) == (550, b"5.7.1")
    ev = await node.wait_audit(lambda e: e.kind == "smtp.submission.refused")
    assert ev.actor == "alice"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        (b"From: carol@b.test\r\n", b"550 5.7.1"),
        (b"From: alice@b.test, carol@b.test\r\n", b"550 5.7.1"),
        (b"From: alice@b.test\r\nFrom: carol@b.test\r\n", b"550 5.6.0"),
        (b"Sender: alice@b.test\r\n", b"550 5.6.0"),
        (b"From: =?utf-8?q?Alice?= <CAROL@b.test>\r\n", b"550 5.7.1"),
    ],
)
async def test_from_header_spoofing_is_refused_and_nothing_stored(
    node: Node, headers: bytes, code: bytes
) -> None:
    def send() -> None:
        with node.submission_client() as c:
            c.sendmail("alice@b.test", ["bob@b.test"], headers + b"Subject: x\r\n\r\nbody\r\n")

    with pytest.raises(smtplib.SMTPDataError) as err:
        await asyncio.to_thread(send)
    assert f"{err.value.smtp_code} ".encode() + err.value.smtp_error[:5] == code
    assert not await node.folder_messages("bob@b.test")
    assert not await node.folder_messages("alice@b.test", "Sent")


async def test_recipient_outside_liste_blanche_is_refused_with_explanation(node: Node) -> None:
    def talk() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        with node.submission_client() as c:
            c.mail("alice@b.test")
            return c.rcpt("someone@gmail.com"), c.rcpt("nobody@b.test")

    (code, text), (code2, text2) = await asyncio.to_thread(talk)
    assert (code, text[:5]) == (550, b"5.7.1")
    assert b"liste blanche" in text and b"gmail.com" in text
    assert (code2, text2[:5]) == (550, b"5.1.1")


async def test_remote_recipients_queued_per_domain_with_dsn_parameters(node: Node) -> None:
    def send() -> dict[str, tuple[int, bytes]]:
        with node.submission_client() as c:
            return c.sendmail(
                "alice@b.test",
                ["dr.a@a.test", "dr.c@c.test", "bob@b.test"],
                MSG,
                mail_options=["RET=HDRS", "ENVID=env+2B42"],
                rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;dr.a+40a.test"],
            )

    assert await asyncio.to_thread(send) == {}
    items = sorted(await node.storage.queue.list(), key=lambda i: i.domain)
    assert [i.domain for i in items] == ["a.test", "c.test"]
    for item in items:
        assert item.sender == "alice@b.test"
        assert (item.envid, item.ret) == ("env+42", "HDRS")
        (rcpt,) = item.recipients
        assert rcpt.notify == {"SUCCESS", "FAILURE"}
        assert rcpt.orcpt == "rfc822;dr.a@a.test"
        assert body_of(await node.storage.blobs.get(item.blob)) == MSG
    assert node.queued == [1]
    assert len(await node.folder_messages("bob@b.test")) == 1
    assert len(await node.folder_messages("alice@b.test", "Sent")) == 1
    # bob asked NOTIFY=SUCCESS too: the hook saw the local delivery.
    (delivered,) = node.delivered
    assert delivered.kind == "submission" and delivered.envid == "env+42"


async def test_utf8_addresses_and_headers_with_smtputf8(node: Node) -> None:
    await node.storage.accounts.create_mailbox("zoé@b.test", MailboxType.PER, "810000000002")
    msg = "From: alice@b.test\r\nTo: zoé@b.test\r\nSubject: été\r\n\r\nçà\r\n".encode()

    def send() -> dict[str, tuple[int, bytes]]:
        with node.submission_client() as c:
            return c.sendmail("alice@b.test", ["zoé@b.test"], msg, mail_options=["SMTPUTF8"])

    assert await asyncio.to_thread(send) == {}
    (stored,) = await node.folder_messages("zoé@b.test")
    assert body_of(stored) == msg and b"with UTF8SMTPSA" in stored


async def test_header_block_over_the_limit_is_refused(node: Node) -> None:
    folded = b"X-Big: start\r\n" + b"\tcontinued header line of reasonable length\r\n" * 7000

    def send() -> None:
        with node.submission_client() as c:
            c.sendmail(
                "alice@b.test", ["bob@b.test"], b"From: alice@b.test\r\n" + folded + b"\r\nx\r\n"
            )

    with pytest.raises(smtplib.SMTPDataError) as err:
        await asyncio.to_thread(send)
    assert (err.value.smtp_code, err.value.smtp_error[:5]) == (552, b"5.3.4")
    assert not await node.folder_messages("bob@b.test")


async def test_sender_over_quota_still_sends_without_sent_copy(node: Node) -> None:
    await node.storage.accounts.create_mailbox(
        "full@b.test", MailboxType.ORG, "12345678901234", quota_bytes=100
    )
    await node.storage.accounts.grant("alice", "full@b.test", "lrswip")
    msg = b"From: full@b.test\r\nSubject: s\r\n\r\n" + b"y" * 500 + b"\r\n"

    def send() -> dict[str, tuple[int, bytes]]:
        with node.submission_client() as c:
            return c.sendmail("full@b.test", ["bob@b.test"], msg)

    assert await asyncio.to_thread(send) == {}
    assert [body_of(m) for m in await node.folder_messages("bob@b.test")] == [msg]
    assert await node.folder_messages("full@b.test", "Sent") == []
    ev = await node.wait_audit(lambda e: e.kind == "smtp.submission.sent_copy")
    assert ev.outcome == "error"
