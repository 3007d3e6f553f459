"""Exactly once across a crash: the agent is SIGKILLed in the middle of a batch (while the
practice software holds a document without having acknowledged it), then restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from intg_cda import variant
from intg_env import IMG, PRACTICE, AgentEnv
from intg_mllp import Received

from caducee.integration.agent import Agent, message_key
from caducee.integration.config import load_config
from caducee.integration.state import AgentState

ROOT = Path(__file__).resolve().parents[2]


def _start_agent(env: AgentEnv, name: str) -> subprocess.Popen[bytes]:
    with (env.root / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "caducee", "integrate", "--config", str(env.config)],
            env=dict(os.environ, PYTHONPATH=str(ROOT / "src"), **env.env),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError(what)


@pytest.mark.slow
def test_sigkill_mid_batch_then_restart(agent_env: AgentEnv, shared_dir: Path) -> None:
    env = agent_env
    env.write_config(folder=True, idle=30)
    base = (shared_dir / "corpora" / IMG).read_bytes()
    docs = [f"1.2.7.{k}" for k in range(6)]
    for k, doc_id in enumerate(docs):
        env.append(variant(base, doc_id=doc_id, set_id=f"1.2.7.{k}.s"))

    first = _start_agent(env, "first")
    killed: list[str] = []

    def crash(received: Received, nth: int) -> None:
        if nth == 3 and not killed:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
            killed.append(received.document_id)

    env.mllp.before_ack = crash
    _wait(lambda: killed, 60, "the agent never reached the third document")
    assert first.returncode == -signal.SIGKILL
    assert env.dovecot.count(PRACTICE, "INBOX") >= 4  # the batch was cut in the middle

    second = _start_agent(env, "second")
    try:
        _wait(
            lambda: env.dovecot.count(PRACTICE, "Caducee/Integrated") == 6,
            60,
            "the restarted agent did not file every message",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0, (env.root / "second.log").read_text()
    integrated = [r.document_id for r in env.mllp.integrated]
    assert sorted(integrated) == sorted(docs)  # every document, once
    # The only replay is the document in flight at the crash, with the same control id.
    replayed = [c for c in set(env.mllp.frames) if env.mllp.frames.count(c) > 1]
    assert len(env.mllp.frames) == 7 and len(replayed) == 1
    assert (
        next(r for r in env.mllp.integrated if r.control_id == replayed[0]).document_id == killed[0]
    )
    assert env.dovecot.count(PRACTICE, "INBOX") == 0
    assert len(env.smtp.wait_for(6)) == 6
    assert sorted(p.name for p in env.folder.glob("*.xml")) == sorted(f"{d}.xml" for d in docs)


async def test_resume_from_recorded_stage(agent_env: AgentEnv, shared_dir: Path) -> None:
    """A crash after the MDN but before filing: on restart the message is only filed."""
    env = agent_env
    env.write_config(folder=False)
    raw = env.append((shared_dir / "corpora" / IMG).read_bytes())
    import email
    from email.policy import default

    key = message_key(raw, email.message_from_bytes(raw, policy=default))
    cfg = load_config(env.config)
    state = AgentState(cfg.state)
    state.set_message(key, "answered", None)
    state.close()
    agent = Agent(cfg)
    try:
        assert await agent.run_once() == 1
    finally:
        await agent.close()
    assert env.mllp.frames == []
    assert env.smtp.messages == []
    assert env.dovecot.count(PRACTICE, "Caducee/Integrated") == 1
