"""The operator's command groups: mailbox, queue, operator, demo (in-process ``main``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from caducee.cli.main import main
from caducee.config.model import load_config
from caducee.core.model import QueueRecipient
from caducee.storage import open_storage
from e2e.harness import make_trust_space

A = "ch-a.mssante.test"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    space = make_trust_space(tmp_path, {"a": A})
    return space.write_toml("a", tmp_path / "a.toml")


@pytest.fixture
def pw(tmp_path: Path) -> Path:
    path = tmp_path / "pw"
    path.write_text("un mot de passe solide\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv",
    [
        ["demo"],
        ["operator", "serve"],
        ["mailbox", "add"],
        ["mailbox", "list"],
        ["mailbox", "delete"],
        ["mailbox", "passwd"],
        ["mailbox", "messages"],
        ["mailbox", "delegate"],
        ["queue", "list"],
        ["queue", "retry"],
        ["queue", "drop"],
    ],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: caducee" in capsys.readouterr().out


def test_mailboxes_of_the_four_types(
    config: Path, pw: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = ["--config", str(config)]
    code, out, _ = run(
        capsys, "mailbox", "add", f"jean.dupont@{A}", "-t", "PER", "--holder", "10001045367",
        "--password-file", str(pw), "--quota", "100M", *c,
    )  # fmt: skip
    assert code == 0 and "PER" in out
    code, _, _ = run(
        capsys, "mailbox", "add", f"secretariat@{A}", "-t", "ORG", "--holder", "750712184",
        "--login", "secretariat", "--password-file", str(pw), "--delegate", f"jean.dupont@{A}", *c,
    )  # fmt: skip
    assert code == 0
    code, _, _ = run(
        capsys, "mailbox", "add", f"labo@{A}", "-t", "APP", "--holder", "73282932000074",
        "--login", "labo-app", "--no-password", *c,
    )  # fmt: skip
    assert code == 0
    code, _, _ = run(
        capsys, "mailbox", "add", f"cabinet@{A}", "-t", "CAB", "--holder", "73282932000074", *c
    )
    assert code == 0
    code, _, _ = run(capsys, "mailbox", "delegate", f"cabinet@{A}", "secretariat", *c)
    assert code == 0
    code, out, _ = run(capsys, "mailbox", "list", *c)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ADDRESS", "TYPE", "HOLDER", "USED", "QUOTA"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[f"jean.dupont@{A}"][1:3] == ["PER", "810001045367"]
    assert rows[f"jean.dupont@{A}"][4] == "100.0M"
    assert rows[f"secretariat@{A}"][1] == "ORG"
    assert rows[f"labo@{A}"][1] == "APP" and rows[f"cabinet@{A}"][1] == "CAB"

    async def rights() -> tuple[str, str, str]:
        storage = await open_storage(load_config(config))
        try:
            org = await storage.accounts.get_mailbox(f"secretariat@{A}")
            cab = await storage.accounts.get_mailbox(f"cabinet@{A}")
            assert org is not None and cab is not None
            ok = await storage.accounts.verify_password(
                f"jean.dupont@{A}", "un mot de passe solide"
            )
            return (
                await storage.accounts.rights(f"jean.dupont@{A}", org.mailbox_id),
                await storage.accounts.rights("secretariat", cab.mailbox_id),
                "yes" if ok else "no",
            )
        finally:
            await storage.close()

    delegated, cab_delegated, login_ok = asyncio.run(rights())
    assert "r" in delegated and "i" in delegated
    assert "r" in cab_delegated
    assert login_ok == "yes"
    code, out, _ = run(capsys, "mailbox", "messages", f"jean.dupont@{A}", *c)
    assert code == 0 and "0 message(s) in INBOX" in out
    code, _, _ = run(capsys, "mailbox", "delete", f"labo@{A}", "--yes", *c)
    assert code == 0
    _, out, _ = run(capsys, "mailbox", "list", *c)
    assert f"labo@{A}" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-t", "PER", "--holder", "12345"], "RPPS"),
        (["-t", "ORG", "--holder", "73282932000075"], "Luhn"),
        (["-t", "PER", "--holder", "10001045367", "--delegate", "x"], "only ORG and CAB"),
    ],
)
def test_bad_mailbox_input_is_one_line(
    config: Path, pw: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(
        capsys, "mailbox", "add", f"x@{A}", *argv, "--password-file", str(pw),
        "--config", str(config),
    )  # fmt: skip
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("caducee: error: ") and message in err


def test_mailbox_outside_node_domains_refused(
    config: Path, pw: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "mailbox", "add", "x@ailleurs.test", "-t", "PER", "--holder", "10001045367",
        "--password-file", str(pw), "--config", str(config),
    )  # fmt: skip
    assert code == 1 and "not a domain of this node" in err


def test_passwd(config: Path, pw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ["--config", str(config)]
    run(capsys, "mailbox", "add", f"p@{A}", "-t", "PER", "--holder", "012600631",
        "--password-file", str(pw), *c)  # fmt: skip
    new = tmp_path / "new"
    new.write_text("un autre mot de passe\n")
    code, _, _ = run(capsys, "mailbox", "passwd", f"p@{A}", "--password-file", str(new), *c)
    assert code == 0
    code, _, err = run(capsys, "mailbox", "passwd", "nobody", "--password-file", str(new), *c)
    assert code == 1 and "no account" in err


def test_queue_list_retry_drop(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_config(config)

    async def enqueue() -> list[int]:
        storage = await open_storage(cfg)
        try:
            blob = await storage.blobs.put(b"Subject: q\r\n\r\nx\r\n")
            later = datetime.now(UTC) + timedelta(hours=1)
            ids = []
            for d in ("b.test", "c.test"):
                ids.append(
                    await storage.queue.enqueue(
                        f"p@{A}", [QueueRecipient(f"r@{d}")], blob, d, expires=later
                    )
                )
            return ids
        finally:
            await storage.close()

    first, second = asyncio.run(enqueue())
    c = ["--config", str(config)]
    code, out, _ = run(capsys, "queue", "list", *c)
    assert code == 0 and "b.test" in out and "c.test" in out and "2 item(s)" in out
    code, out, _ = run(capsys, "queue", "retry", str(first), *c)
    assert code == 0 and "1 item(s) due now" in out
    code, out, _ = run(capsys, "queue", "drop", str(second), *c)
    assert code == 0
    _, out, _ = run(capsys, "queue", "list", *c)
    assert "c.test" not in out and "1 item(s)" in out
    code, _, err = run(capsys, "queue", "drop", "999", *c)
    assert code == 1 and "no queue item 999" in err


def test_missing_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "queue", "list", "--config", str(tmp_path / "nope.toml"))
    assert code == 1 and err.count("\n") == 1 and "no such file" in err
