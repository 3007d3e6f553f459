"""The asyncio IMAP client against a real Dovecot (STARTTLS, AUTHENTICATE PLAIN, IDLE, MOVE)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from intg_certs import Pki, make_pki
from intg_dovecot import Dovecot, start_dovecot

from caducee.core.errors import AuthenticationFailed
from caducee.integration.imapclient import ImapClient, ImapSettings

MSG = b"From: a@x.fr\r\nTo: b@y.fr\r\nSubject: t\r\nMessage-ID: <1@x>\r\n\r\nhello\r\n"


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    pki: Pki = make_pki(tmp_path / "pki")
    dc = start_dovecot(tmp_path, pki, {"dpi@cab.mssante.fr": "imap-pass"})
    yield dc
    dc.stop()


def _settings(dc: Dovecot, password: str = "imap-pass") -> ImapSettings:  # noqa: S107
    return ImapSettings(
        "127.0.0.1", dc.port, "dpi@cab.mssante.fr", password, ca_file=str(dc.ca_file)
    )


async def test_fetch_move_and_idle(dovecot: Dovecot) -> None:
    dovecot.append("dpi@cab.mssante.fr", MSG)
    client = ImapClient(_settings(dovecot))
    await client.connect()
    try:
        assert "IDLE" in client.capabilities
        assert await client.select("INBOX") == 1
        (uid,) = await client.uid_search_all()
        assert await client.uid_fetch(uid) == MSG
        await client.ensure_mailbox("Caducee/Integrated")
        await client.uid_move(uid, "Caducee/Integrated")
        assert await client.uid_search_all() == []
        assert dovecot.count("dpi@cab.mssante.fr", "Caducee/Integrated") == 1
        # IDLE wakes up when a message arrives.
        waiter = asyncio.create_task(client.idle(20))
        await asyncio.sleep(0)
        await asyncio.to_thread(dovecot.append, "dpi@cab.mssante.fr", MSG)
        assert await asyncio.wait_for(waiter, 20) is True
        assert len(await client.uid_search_all()) == 1
        # And returns False on its own after the wait.
        assert await client.idle(0.3) is False
    finally:
        await client.close()


async def test_bad_password(dovecot: Dovecot) -> None:
    client = ImapClient(_settings(dovecot, "nope"))
    with pytest.raises(AuthenticationFailed):
        await client.connect()
    await client.close()
