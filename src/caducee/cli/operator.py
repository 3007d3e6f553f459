"""``caducee operator``: run an operator node."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

from caducee.cli._node import add_config_arg, node_config

__all__ = ["register", "run_until_signalled", "serve"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("operator", help="run an operator node", description=__doc__)
    cmds = parser.add_subparsers(dest="operator_command", metavar="COMMAND", required=True)
    serve_p = cmds.add_parser(
        "serve",
        help="run the node until SIGINT/SIGTERM",
        description="Runs relay-in (MX), submission, IMAP and the delivery worker of one node "
        "until interrupted (SIGINT or SIGTERM: graceful stop).",
    )
    add_config_arg(serve_p)
    serve_p.set_defaults(func=serve)


async def run_until_signalled(
    start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
) -> None:
    """Awaits ``start()``, then waits for SIGINT/SIGTERM, then awaits ``stop()``."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await start()
        await stopping.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await stop()


def serve(args: argparse.Namespace) -> int:
    from caducee.app import Operator

    cfg = node_config(args)
    op = Operator(cfg)

    async def start() -> None:
        await op.start()
        for name, addrs in op.addresses.items():
            shown = ", ".join(f"{h}:{p}" for h, p in addrs)
            print(f"{cfg.name}: {name} on {shown}", flush=True)
        print(f"{cfg.name}: ready (Ctrl-C to stop)", flush=True)

    asyncio.run(run_until_signalled(start, op.stop))
    print(f"{cfg.name}: stopped", flush=True)
    return 0
