"""No account can list, select, fetch or even learn the existence of a BAL it has no right on.

Bob has no right on Alice's PER BAL nor on the secretariat ORG BAL. For every command that
takes a mailbox name, the answer about those BALs must be byte-identical to the answer about a
BAL that does not exist at all.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "imap"))

from imap_harness import ALICE, BOB, ORG, Pki, ServerThread, Transcript, make_pki

SHARED = "Partag&AOk-"
GHOST = "ghost@hop.mssante.fr"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(tmp_path: Path, pki: Pki) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path, pki).start()
    srv.deliver(ALICE, b"Subject: secret\r\n\r\nconfidential\r\n")
    srv.deliver(ORG, b"Subject: org secret\r\n\r\nconfidential\r\n")
    try:
        yield srv
    finally:
        srv.stop()


def login(server: ServerThread, pki: Pki, user: str) -> Transcript:
    t = Transcript.connect(server.tls_port, pki)
    t.readline()
    assert t.login(user).startswith(b"L OK")
    return t


COMMANDS = [
    "SELECT {m}",
    "EXAMINE {m}",
    "STATUS {m} (MESSAGES UIDNEXT)",
    "DELETE {m}",
    "RENAME {m} Stolen",
    "RENAME INBOX {m}",
    "SUBSCRIBE {m}",
    "UNSUBSCRIBE {m}",
    "CREATE {m}/sub",
    "GETACL {m}",
    "SETACL {m} bob@hop.mssante.fr lrswipkxtea",
    "DELETEACL {m} alice@hop.mssante.fr",
    "LISTRIGHTS {m} bob@hop.mssante.fr",
    "MYRIGHTS {m}",
    "GETQUOTAROOT {m}",
    'LIST "" {m}',
    'LIST "" {m}/*',
    'LSUB "" {m}/*',
    'LIST "" ({m} INBOX) RETURN (STATUS (MESSAGES))',
]
SELECTED_COMMANDS = ["COPY 1 {m}", "MOVE 1 {m}", "UID COPY 1 {m}", "UID MOVE 1 {m}"]


def targets(address: str) -> list[str]:
    return [f'"{SHARED}/{address}/INBOX"', f'"{SHARED}/{address}"', f'"{SHARED}/{address}/Sent"']


@pytest.mark.parametrize("victim", [ALICE, ORG])
def test_every_mailbox_command_answers_as_if_nonexistent(
    server: ServerThread, pki: Pki, victim: str
) -> None:
    bob = login(server, pki, BOB)
    for template in COMMANDS:
        for real, ghost in zip(targets(victim), targets(GHOST), strict=True):
            a = bob.cmd("t " + template.format(m=real))
            b = bob.cmd("t " + template.format(m=ghost))
            assert a.replace(victim.encode(), b"X") == b.replace(GHOST.encode(), b"X"), template
            assert victim.encode() not in a, template
    server.deliver(BOB, b"Subject: mine\r\n\r\nx\r\n")
    bob.cmd("s SELECT INBOX")
    for template in SELECTED_COMMANDS:
        for real, ghost in zip(targets(victim), targets(GHOST), strict=True):
            a = bob.cmd("t " + template.format(m=real))
            b = bob.cmd("t " + template.format(m=ghost))
            assert a == b.replace(GHOST.encode(), victim.encode()), template
    # the append path answers the same too (the literal is read, then refused)
    for address in (victim, GHOST):
        bob.send(b'a APPEND "%s/%s/INBOX" {5+}\r\nhello\r\n' % (SHARED.encode(), address.encode()))
        assert bob.until_tagged("a") == b"a NO [NONEXISTENT] Mailbox does not exist\r\n"
    bob.close()


def test_list_and_getquota_reveal_nothing(server: ServerThread, pki: Pki) -> None:
    bob = login(server, pki, BOB)
    for cmd in ('LIST "" *', 'LIST "" %', f'LIST "" {SHARED}/*', 'LSUB "" *', "NAMESPACE"):
        out = bob.cmd("t " + cmd)
        assert b"alice" not in out and b"secretariat" not in out, cmd
    assert bob.cmd(f't GETQUOTA "{ALICE}"') == bob.cmd(f't GETQUOTA "{GHOST}"')
    assert bob.cmd(f't GETQUOTA "{ALICE}"') == b"t NO [NONEXISTENT] No such quota root\r\n"
    bob.close()


def test_revoked_delegation_disappears_at_once(server: ServerThread, pki: Pki) -> None:
    alice = login(server, pki, ALICE)
    shared_inbox = f'"{SHARED}/{ORG}/INBOX"'
    assert alice.cmd(f"a SELECT {shared_inbox}").endswith(b"a OK [READ-WRITE] SELECT completed\r\n")
    server.run(server.st.accounts.revoke(ALICE, ORG))
    assert b"secretariat" not in alice.cmd('b LIST "" *')
    assert alice.cmd(f"c STATUS {shared_inbox} (MESSAGES)") == (
        b"c NO [NONEXISTENT] Mailbox does not exist\r\n"
    )
    assert (
        alice.cmd(f"d EXAMINE {shared_inbox}") == b"d NO [NONEXISTENT] Mailbox does not exist\r\n"
    )
    alice.close()


def test_read_only_delegate_cannot_write(server: ServerThread, pki: Pki) -> None:
    server.run(server.st.accounts.grant(BOB, ORG, "lr"))
    bob = login(server, pki, BOB)
    shared_inbox = f'"{SHARED}/{ORG}/INBOX"'
    assert b"secretariat" in bob.cmd('a LIST "" *')
    bob.cmd(f"b SELECT {shared_inbox}")
    assert bob.cmd("c STORE 1 +FLAGS (\\Deleted)") == b"c NO [NOPERM] Permission denied\r\n"
    assert bob.cmd("d EXPUNGE") == b"d NO [NOPERM] Permission denied\r\n"
    assert bob.cmd(f"e CREATE {SHARED}/{ORG}/New") == b"e NO [NOPERM] Permission denied\r\n"
    assert bob.cmd(f"f DELETE {shared_inbox}") == b"f NO [NOPERM] Permission denied\r\n"
    assert bob.cmd(f"g GETACL {shared_inbox}") == b"g NO [NOPERM] Permission denied\r\n"
    out = bob.cmd("h FETCH 1 BODY[TEXT]")
    assert b"confidential" in out and b"\\Seen" not in out  # no 's' right: \Seen not set
    bob.close()
