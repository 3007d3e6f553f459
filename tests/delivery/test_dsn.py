from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import Message

import pytest

from caducee.smtp.dsn import RecipientStatus, build_dsn, decode_xtext, should_notify

ORIGINAL = (
    b"From: Dr A <a@ch-a.mssante.test>\r\nTo: b@ch-b.mssante.test\r\n"
    b"Subject: =?utf-8?q?Compte_rendu_=C3=A9chographie?=\r\nMessage-ID: <m1@a>\r\n\r\n"
    b"SECRET-BODY-MARKER\r\n"
)


def _parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _status_blocks(msg: Message) -> list[Message]:
    parts = msg.get_payload()
    assert isinstance(parts, list)
    status = parts[1]
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    return blocks


def test_failure_dsn_structure_and_headers_only() -> None:
    raw = build_dsn(
        reporting_mta="mx.ch-a.mssante.test",
        to="a@ch-a.mssante.test",
        recipients=[
            RecipientStatus(
                "b@ch-b.mssante.test",
                "failed",
                "5.1.1",
                original_recipient="rfc822;B+2Bx@ch-b.mssante.test",
                diagnostic="550 5.1.1 unknown\r\nmailbox",
                remote_mta="mx.ch-b.mssante.test",
            )
        ],
        original=ORIGINAL,
        ret="HDRS",
        envid="ENV+2B1",
        arrival_date=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
    )
    msg = _parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["To"] == "<a@ch-a.mssante.test>"
    human, _status, returned = msg.get_payload()  # type: ignore[misc]
    text = human.get_payload(decode=True).decode("utf-8")
    assert "n'a pas pu être remis" in text and "could not be delivered" in text
    assert "Compte rendu échographie" in text
    per_message, per_rcpt = _status_blocks(msg)
    assert per_message["Reporting-MTA"] == "dns; mx.ch-a.mssante.test"
    assert per_message["Original-Envelope-Id"] == "ENV+1"
    assert per_rcpt["Final-Recipient"] == "rfc822; b@ch-b.mssante.test"
    assert per_rcpt["Original-Recipient"] == "rfc822;B+x@ch-b.mssante.test"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"] == "dns; mx.ch-b.mssante.test"
    assert "550 5.1.1 unknown mailbox" in per_rcpt["Diagnostic-Code"]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert b"SECRET-BODY-MARKER" not in raw
    assert b"Message-ID: <m1@a>" in raw


def test_full_return_only_on_failure() -> None:
    rcpt = [RecipientStatus("b@x.test", "failed", "5.7.1")]
    raw = build_dsn(
        reporting_mta="mx", to="a@y.test", recipients=rcpt, original=ORIGINAL, ret="FULL"
    )
    returned = _parse(raw).get_payload()[2]  # type: ignore[index]
    assert returned.get_content_type() == "message/rfc822"
    assert b"SECRET-BODY-MARKER" in raw
    ok = [RecipientStatus("b@x.test", "delivered", "2.0.0")]
    raw = build_dsn(reporting_mta="mx", to="a@y.test", recipients=ok, original=ORIGINAL, ret="FULL")
    assert b"SECRET-BODY-MARKER" not in raw


def test_success_dsn_is_a_delivery_receipt() -> None:
    raw = build_dsn(
        reporting_mta="mx.b",
        to="a@y.test",
        recipients=[RecipientStatus("b@x.test", "delivered", "2.0.0")],
        original=ORIGINAL,
    )
    msg = _parse(raw)
    assert "Accus" in str(email.header.make_header(email.header.decode_header(msg["Subject"])))
    _, per_rcpt = _status_blocks(msg)
    assert per_rcpt["Action"] == "delivered"
    assert per_rcpt["Status"] == "2.0.0"


def test_delay_dsn_has_will_retry_until() -> None:
    until = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    raw = build_dsn(
        reporting_mta="mx",
        to="a@y.test",
        recipients=[RecipientStatus("b@x.test", "delayed", "4.4.1", will_retry_until=until)],
        original=ORIGINAL,
    )
    _, per_rcpt = _status_blocks(_parse(raw))
    assert per_rcpt["Action"] == "delayed"
    assert per_rcpt["Will-Retry-Until"].startswith("Fri, 01 May 2026 12:00")


def test_bad_action_or_status_rejected() -> None:
    with pytest.raises(ValueError, match="action"):
        RecipientStatus("b@x", "bounced", "5.0.0")
    with pytest.raises(ValueError, match="status"):
        RecipientStatus("b@x", "failed", "550")


def test_notify_rules() -> None:
    assert should_notify(frozenset(), "failed")
    assert not should_notify(frozenset(), "delivered")
    assert not should_notify(frozenset(), "delayed")
    assert should_notify(frozenset({"SUCCESS"}), "delivered")
    assert not should_notify(frozenset({"SUCCESS"}), "failed")
    assert not should_notify(frozenset({"NEVER"}), "failed")
    assert should_notify(frozenset({"delay", "failure"}), "delayed")


def test_xtext() -> None:
    assert decode_xtext("a+2Bb+3Dc") == "a+b=c"
