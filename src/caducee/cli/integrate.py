"""``caducee integrate``: the integration agent for practice software (docs/integration.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from caducee.integration.agent import Agent
from caducee.integration.config import load_config

__all__ = ["register"]


async def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    agent = Agent(cfg)
    if args.once:
        try:
            count = await agent.run_once()
        finally:
            await agent.close()
        print(f"{count} message(s) processed")
        return 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await agent.run(stop)
    return 0


def _integrate(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "integrate",
        help="integration agent: mailbox (IMAP IDLE) -> practice software (MLLP, FHIR, folder)",
        description=(
            "Watch an MSSanté mailbox over IMAP, integrate each IHE_XDM document into the "
            "practice software and answer with an MDN (ANS profile, errors 900-906)."
        ),
    )
    p.add_argument("--config", required=True, help="agent configuration (TOML)")
    p.add_argument("--once", action="store_true", help="process the inbox once and exit")
    p.set_defaults(func=_integrate)
