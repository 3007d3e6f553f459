"""Concurrency stress: several imaplib sessions on one mailbox doing APPEND, STORE, EXPUNGE
and FETCH at once. Each session checks, from the untagged responses it receives in order,
that its view stays consistent (RFC 9051 §7.4.1, §7.5.1, §5.5):

- EXISTS never goes down except through EXPUNGEs it was told of;
- an EXPUNGE names a sequence number it has, and a FETCH's UID matches its sequence map;
- the flags it sees for a message carry its own keyword exactly when it last stored it
  (each session owns one keyword that no other session touches);

and, across sessions, that no message is \\Recent in two of them (RFC 3501 §2.3.2).

The interleaving varies from run to run; the operations each session picks do not (fixed
seeds), and the invariants must hold for every interleaving."""

from __future__ import annotations

import imaplib
import random
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from imap_harness import ALICE, PASSWORD, Pki, ServerThread

SESSIONS = 4
OPS = 120
MSG = b"From: stress@hop.mssante.fr\r\nSubject: load\r\n\r\nbody\r\n"
_FETCH = re.compile(rb"^(\d+) \((.*)\)$", re.S)
_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")


class Recorder(imaplib.IMAP4_SSL):
    """imaplib keeps untagged responses per type; this also keeps their order."""

    log: list[tuple[str, Any]]

    def _append_untagged(self, typ: str, dat: Any) -> None:
        if not hasattr(self, "log"):
            self.log = []
        self.log.append((typ, dat))
        super()._append_untagged(typ, dat)  # type: ignore[misc]


class View:
    def __init__(self, name: str, keyword: str) -> None:
        self.name = name
        self.keyword = keyword
        self.uids: list[int | None] = []  # by sequence number; None until a FETCH names it
        self.mine: dict[int, bool] = {}  # uid -> keyword stored by this session
        self.errors: list[str] = []
        self.seen = 0  # log entries consumed
        self.pending: tuple[int, bool] | None = None  # a STORE of our keyword under way
        self.recent: set[int] = set()  # UIDs this session was shown as \\Recent

    def absorb(self, m: Recorder) -> None:
        for typ, dat in m.log[self.seen :]:
            self.seen += 1
            if typ == "EXISTS":
                n = int(dat)
                if n < len(self.uids):
                    self.errors.append(f"{self.name}: EXISTS {n} below {len(self.uids)}")
                self.uids.extend([None] * (n - len(self.uids)))
            elif typ == "EXPUNGE":
                n = int(dat)
                if not 1 <= n <= len(self.uids):
                    self.errors.append(f"{self.name}: EXPUNGE {n} of {len(self.uids)}")
                    continue
                gone = self.uids.pop(n - 1)
                if gone is not None:
                    self.mine.pop(gone, None)
            elif typ == "FETCH" and isinstance(dat, bytes):
                self._fetch(dat)

    def _fetch(self, dat: bytes) -> None:
        mo = _FETCH.match(dat)
        if mo is None:
            return
        seq = int(mo.group(1))
        if not 1 <= seq <= len(self.uids):
            self.errors.append(f"{self.name}: FETCH {seq} of {len(self.uids)}")
            return
        uid_mo = _UID.search(mo.group(2))
        uid = self.uids[seq - 1]
        if uid_mo is not None:
            got = int(uid_mo.group(1))
            if uid is not None and uid != got:
                self.errors.append(f"{self.name}: seq {seq} is UID {got}, expected {uid}")
            self.uids[seq - 1] = uid = got
        flags_mo = _FLAGS.search(mo.group(2))
        if flags_mo is None or uid is None:
            return
        if b"\\Recent" in flags_mo.group(1).split():
            self.recent.add(uid)
        has = self.keyword.encode() in flags_mo.group(1).split()
        if self.pending is not None and self.pending[0] == uid and has == self.pending[1]:
            self.mine[uid] = has
            self.pending = None
        elif uid in self.mine and has != self.mine[uid]:
            self.errors.append(f"{self.name}: UID {uid} flags {flags_mo.group(1)!r}")


def _session(
    server: ServerThread, pki: Pki, idx: int, errors: list[str], recent: list[set[int]]
) -> None:
    rng = random.Random(1000 + idx)  # fixed seeds: a reproducible choice of operations
    view = View(f"s{idx}", f"$S{idx}")
    m = Recorder("localhost", server.tls_port, ssl_context=pki.client_context(), timeout=30)
    try:
        m.login(ALICE, PASSWORD)
        m.select("INBOX")
        view.absorb(m)
        if view.uids:
            m.fetch("1:*", "(UID)")
            view.absorb(m)
        for _ in range(OPS):
            op = rng.choice(["append", "store", "store", "fetch", "expunge", "noop"])
            known = [(i + 1, u) for i, u in enumerate(view.uids) if u is not None]
            if op == "append":
                m.append("INBOX", None, None, MSG)
            elif op == "store" and known:
                _seq, uid = rng.choice(known)
                add = not view.mine.pop(uid, False)
                # from the STORE's own report of this UID on, every report must agree; a STORE
                # on a message already expunged elsewhere changes nothing and reports nothing
                view.pending = (uid, add)
                typ, _ = m.uid("STORE", str(uid), "+FLAGS" if add else "-FLAGS", view.keyword)
                if typ != "OK":
                    view.errors.append(f"{view.name}: UID STORE {uid} answered {typ}")
                view.absorb(m)
                view.pending = None
            elif op == "fetch" and view.uids:
                m.fetch("1:*", "(UID FLAGS)")
            elif op == "expunge" and known:
                _seq, uid = rng.choice(known)
                m.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
                m.expunge()
            else:
                m.noop()
            view.absorb(m)
        m.logout()
    except Exception as exc:  # reported to the test thread
        errors.append(f"{view.name}: {type(exc).__name__}: {exc}")
    errors.extend(view.errors)
    recent.append(view.recent)


@pytest.mark.slow
def test_concurrent_sessions_keep_consistent_views(
    tmp_path: Path, pki: Pki, engine_dsn: str | None
) -> None:
    server = ServerThread(tmp_path, pki, pg_dsn=engine_dsn).start()
    try:
        _stress(server, pki)
    finally:
        server.stop()


def _stress(server: ServerThread, pki: Pki) -> None:
    for _ in range(5):
        server.deliver(ALICE, MSG)
    errors: list[str] = []
    recent: list[set[int]] = []
    threads = [
        threading.Thread(target=_session, args=(server, pki, i, errors, recent))
        for i in range(SESSIONS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == [], "\n".join(errors)
    shown = [uid for seen in recent for uid in seen]
    assert shown and len(shown) == len(set(shown))  # each \\Recent in one session at most
    # and the sessions agree with the store at the end
    m = imaplib.IMAP4_SSL("localhost", server.tls_port, ssl_context=pki.client_context())
    m.login(ALICE, PASSWORD)
    typ, data = m.select("INBOX")
    stored = server.run(_count(server))
    assert typ == "OK" and int(data[0]) == stored  # type: ignore[arg-type]
    m.logout()


async def _count(server: ServerThread) -> int:
    mb = await server.st.accounts.get_mailbox(ALICE)
    assert mb is not None
    folder = await server.st.messages.get_folder(mb.mailbox_id, "INBOX")
    assert folder is not None
    return len(await server.st.messages.list_messages(folder.folder_id))
