"""Two operators exchanging mail over loopback: submission -> queue -> mutual TLS relay -> BAL."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from caducee.app import Operator

from .harness import (
    PASSWORD,
    TrustSpace,
    add_user,
    inbox,
    make_trust_space,
    parse,
    start_pair,
    submit,
    wait_until,
)

A, B = "ch-a.mssante.test", "medecin.mssante.test"
ALICE, BOB = f"alice@{A}", f"bob@{B}"


def _msg(subject: str, body: str = "Compte rendu.") -> bytes:
    return (
        f"From: <{ALICE}>\r\nTo: <{BOB}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@{A}>\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture
def space(tmp_path: Path) -> TrustSpace:
    return make_trust_space(tmp_path, {"a": A, "b": B})


async def _pair(space: TrustSpace, pg: dict[str, str] | None = None) -> dict[str, Operator]:
    ops = await start_pair(space, pg=pg)
    assert ops["a"].storage is not None and ops["b"].storage is not None
    await add_user(ops["a"].storage, ALICE)
    await add_user(ops["b"].storage, BOB)
    return ops


@pytest.fixture
async def ops(space: TrustSpace) -> AsyncIterator[dict[str, Operator]]:
    started = await _pair(space)
    try:
        yield started
    finally:
        for op in started.values():
            await op.stop()


async def _exchange(space: TrustSpace, ops: dict[str, Operator]) -> None:
    sa, sb = ops["a"].storage, ops["b"].storage
    assert sa is not None and sb is not None
    refused = await asyncio.to_thread(
        submit, ops["a"].addresses["submission"][0], space, ALICE, ALICE, [BOB], _msg("hello b")
    )
    assert refused == {}

    async def arrived() -> bool:
        return len(await inbox(sb, BOB)) == 1

    await wait_until(arrived)
    (raw,) = await inbox(sb, BOB)
    assert b"Subject: hello b" in raw and b"Compte rendu." in raw
    assert any(b"Subject: hello b" in m for m in await inbox(sa, ALICE, "Sent"))

    async def finished() -> bool:
        return await sa.queue.list() == []

    await wait_until(finished)  # the item is finished just after the peer's 250
    # and back: B's user answers
    reply = (
        f"From: <{BOB}>\r\nTo: <{ALICE}>\r\nSubject: re\r\nMessage-ID: <r@{B}>\r\n\r\nMerci\r\n"
    ).encode()
    await asyncio.to_thread(
        submit, ops["b"].addresses["submission"][0], space, BOB, BOB, [ALICE], reply
    )

    async def answered() -> bool:
        return len(await inbox(sa, ALICE)) == 1

    await wait_until(answered)
    accepted = await sb.audit.query(kind_prefix="smtp.relay.accepted")
    assert accepted and accepted[0].actor.startswith("CN=mx.ch-a.mssante.test")


async def test_two_operators_exchange_mail_sqlite(
    space: TrustSpace, ops: dict[str, Operator]
) -> None:
    await _exchange(space, ops)


@pytest.mark.postgres
async def test_two_operators_exchange_mail_postgres(space: TrustSpace, pg_dsn: str) -> None:
    import psycopg

    # one database per node: two separate operators, each with its own PostgreSQL
    base, _, name = pg_dsn.rpartition("/")
    second = f"{name}_b"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{second}"')
    started: dict[str, Operator] = {}
    try:
        started = await _pair(space, pg={"a": pg_dsn, "b": f"{base}/{second}"})
        assert started["a"].cfg.storage.engine == "postgres"
        await _exchange(space, started)
    finally:
        for op in started.values():
            await op.stop()
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{second}" WITH (FORCE)')


async def test_delivery_receipt_end_to_end(space: TrustSpace, ops: dict[str, Operator]) -> None:
    """NOTIFY=SUCCESS: B's operator returns the "accusé de réception" to A's user."""
    sa = ops["a"].storage
    assert sa is not None
    await asyncio.to_thread(
        submit,
        ops["a"].addresses["submission"][0],
        space,
        ALICE,
        ALICE,
        [BOB],
        _msg("receipt please"),
        rcpt_options=["NOTIFY=SUCCESS,FAILURE"],
    )

    async def receipt() -> bool:
        return len(await inbox(sa, ALICE)) == 1

    await wait_until(receipt)
    (raw,) = await inbox(sa, ALICE)
    dsn = parse(raw)
    assert dsn.get_content_type() == "multipart/report"
    block = dsn.get_payload()[1].get_payload()[1]  # type: ignore[index,union-attr]
    assert block["Action"] == "delivered"
    assert block["Final-Recipient"] == f"rfc822; {BOB}"
    assert b"Subject: receipt please" in raw


async def test_unknown_recipient_bounces_with_dsn(
    space: TrustSpace, ops: dict[str, Operator]
) -> None:
    sa = ops["a"].storage
    assert sa is not None
    await asyncio.to_thread(
        submit,
        ops["a"].addresses["submission"][0],
        space,
        ALICE,
        ALICE,
        [f"nobody@{B}"],
        _msg("to nobody"),
    )

    async def bounced() -> bool:
        return len(await inbox(sa, ALICE)) == 1

    await wait_until(bounced)
    block = parse((await inbox(sa, ALICE))[0]).get_payload()[1].get_payload()[1]  # type: ignore[index,union-attr]
    assert block["Action"] == "failed" and block["Status"] == "5.1.1"


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
async def test_swaks_submission(space: TrustSpace, ops: dict[str, Operator]) -> None:
    host, port = ops["a"].addresses["submission"][0]
    proc = await asyncio.create_subprocess_exec(
        "swaks", "--server", host, "--port", str(port), "--tls",
        "--tls-verify", "--tls-ca-path", str(space.ca.ca_bundle),
        "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", PASSWORD,
        "--from", ALICE, "--to", BOB, "--header", "Subject: via swaks",
        "--body", "Bonjour depuis swaks",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    sb = ops["b"].storage
    assert sb is not None

    async def arrived() -> bool:
        return any(b"via swaks" in m for m in await inbox(sb, BOB))

    await wait_until(arrived)


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_submission(space: TrustSpace, ops: dict[str, Operator], tmp_path: Path) -> None:
    host, port = ops["a"].addresses["submission"][0]
    msg = tmp_path / "m.eml"
    msg.write_bytes(_msg("via curl", "Bonjour depuis curl"))
    # --connect-to keeps strict certificate checking (name included) on a loopback port.
    proc = await asyncio.create_subprocess_exec(
        "curl", "--silent", "--show-error", "--ssl-reqd", "--cacert", str(space.ca.ca_bundle),
        "--connect-to", f"mx.{A}:{port}:{host}:{port}", f"smtp://mx.{A}:{port}",
        "--user", f"{ALICE}:{PASSWORD}", "--mail-from", ALICE, "--mail-rcpt", BOB,
        "--upload-file", str(msg),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    sb = ops["b"].storage
    assert sb is not None

    async def arrived() -> bool:
        return any(b"via curl" in m for m in await inbox(sb, BOB))

    await wait_until(arrived)
