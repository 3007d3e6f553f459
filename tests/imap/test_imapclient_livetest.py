"""IMAPClient's own live test suite against our server: an independent conformance check.

The IMAPClient library (PyPI ``imapclient``) ships ``imapclient.livetest``, the suite its
authors run against real servers (Dovecot, Gmail, Exchange, ...): folders, subscriptions,
STATUS, IDLE, APPEND, FETCH (ENVELOPE, BODYSTRUCTURE, partial, modifiers), SEARCH (with
MODSEQ, with UTF-8), COPY, MOVE, EXPUNGE, ACL, each with and without UIDs. It is not ours: its
expectations are those of a widely used client library, parsed by its own response parser.

It runs in a child process (the suite sets class attributes and uses ``unittest``), driven by
a few lines below that build its test classes as ``python -m imapclient.livetest`` does, run
them and print one JSON line per test. Every test must pass, or be skipped for a capability we
do not offer (Gmail's extensions, XLIST), except the ones in ``NOT_THE_SERVER``, which fail
for reasons on the client's or this machine's side; each is named with its reason. One
assertion of the suite is adapted, not skipped: ENVELOPEs are compared as values (the suite
still uses a sequence comparison from when IMAPClient's Envelope was a tuple).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from imap_harness import ALICE, PASSWORD, Pki, ServerThread

pytestmark = pytest.mark.e2e

#: (class, test) -> why its result says nothing about the server
NOT_THE_SERVER = {
    ("TestSocketTimeout", "test_small_connection_timeout_fail"): (
        "connects to 10.255.255.1 expecting a connect timeout; this machine has no route, so "
        "the connect fails at once"
    ),
    ("TestSocketTimeout", "test_small_read_timeout_fail"): "the same unroutable address",
    ("TestWithUIDs", "test_getacl"): (
        'the test reads conf["username"] from its config object, which is not subscriptable '
        "(TypeError in the test before any command is sent)"
    ),
    ("TestWithoutUIDs", "test_getacl"): "the same TypeError in the test",
    ("TestWithoutUIDs", "test_move"): (
        "IMAPClient sends MOVE only as UID MOVE; without UIDs it calls imaplib's IMAP4.move, "
        "which imaplib does not have"
    ),
}

#: skip reasons that are fair: capabilities that belong to other servers
FAIR_SKIPS = ("Gmail", "labels", "XLIST", "not configured for UID")

_DRIVER = r"""
import copy, dataclasses, json, sys, unittest, warnings
warnings.simplefilter("ignore")
# test_fetch compares ENVELOPEs with assertSequenceEqual, written when Envelope was a tuple;
# it is a dataclass now, which that assertion rejects before comparing: compare them as values
_seq_equal = unittest.TestCase.assertSequenceEqual
def _assert_sequence_equal(self, first, second, *args, **kwargs):
    if dataclasses.is_dataclass(first) and dataclasses.is_dataclass(second):
        return self.assertEqual(first, second)
    return _seq_equal(self, first, second, *args, **kwargs)
unittest.TestCase.assertSequenceEqual = _assert_sequence_equal
from imapclient import livetest
from imapclient.config import parse_config_file
conf = parse_config_file(sys.argv[1])
conf.namespace = livetest.probe_host(conf)
livetest.TestGeneral.conf = conf
livetest.TestSocketTimeout.conf = copy.copy(conf)  # it lowers the timeouts
classes = {
    "TestGeneral": livetest.TestGeneral,
    "TestSocketTimeout": livetest.TestSocketTimeout,
    "TestWithUIDs": livetest.createUidTestClass(conf, use_uid=True),
    "TestWithoutUIDs": livetest.createUidTestClass(conf, use_uid=False),
}

class Recorder(unittest.TestResult):
    def __init__(self, label):
        super().__init__()
        self.label = label
    def _out(self, test, outcome, detail=""):
        name = test.id().rsplit(".", 1)[-1]
        print(json.dumps([self.label, name, outcome, detail[-2000:]]), flush=True)
    def addSuccess(self, test): self._out(test, "ok")
    def addFailure(self, test, err): self._out(test, "fail", self._exc_info_to_string(err, test))
    def addError(self, test, err): self._out(test, "error", self._exc_info_to_string(err, test))
    def addSkip(self, test, reason): self._out(test, "skip", reason)

loader = unittest.TestLoader()
for label, cls in classes.items():
    loader.loadTestsFromTestCase(cls).run(Recorder(label))
"""


def test_imapclient_livetest_passes(server: ServerThread, pki: Pki, tmp_path: Path) -> None:
    pytest.importorskip("imapclient.livetest", reason="imapclient is a dev dependency")
    ini = tmp_path / "livetest.ini"
    ini.write_text(
        f"[DEFAULT]\nhost = localhost\nport = {server.tls_port}\nssl = true\n"
        f"ssl_ca_file = {pki.ca.ca_bundle}\nusername = {ALICE}\npassword = {PASSWORD}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(ini)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]
    by_key = {(label, name): (outcome, detail) for label, name, outcome, detail in results}
    passed = [k for k, (outcome, _) in by_key.items() if outcome == "ok"]
    problems = {
        k: detail
        for k, (outcome, detail) in by_key.items()
        if k not in NOT_THE_SERVER
        and (outcome in ("fail", "error") or (outcome == "skip" and not _fair(detail)))
    }
    assert problems == {}, "\n\n".join(f"{k}: {v}" for k, v in problems.items())
    # the suite really ran: about fifty tests pass (the count grows with what we offer)
    assert len(passed) >= 40, sorted(by_key.items())
    # and the exclusions above are still what they say: the tests exist in this version
    assert set(NOT_THE_SERVER) <= set(by_key), sorted(set(NOT_THE_SERVER) - set(by_key))


def _fair(reason: str) -> bool:
    return any(word in reason for word in FAIR_SKIPS)
