"""Runs every operator of a sandbox trust space in one process (``caducee sandbox run``).

The sandbox directory is made by ``caducee sandbox init`` (``sandbox.init``): ``sandbox.json``
lists the operators, each with its node configuration file. Peers are routed by the
``trust.routes`` table of each node (domain -> host:port on 127.0.0.1), so no DNS is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caducee.app import Operator
from caducee.config.model import NodeConfig, load_config
from caducee.core.errors import ConfigError

__all__ = ["Sandbox", "SandboxOperator", "load_sandbox", "run_sandbox", "start_sandbox"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SandboxOperator:
    name: str
    config_path: Path
    info: dict[str, Any]  # the operator's object in sandbox.json


@dataclass(frozen=True, slots=True)
class Sandbox:
    directory: Path
    info: dict[str, Any]  # the whole sandbox.json
    operators: list[SandboxOperator]


def _config_path(directory: Path, op: dict[str, Any]) -> Path:
    for key in ("config", "config_file", "node_config"):
        value = op.get(key)
        if isinstance(value, str):
            path = Path(value)
            return path if path.is_absolute() else directory / path
    name = str(op.get("name", ""))
    for cand in (directory / name / "node.toml", directory / f"{name}.toml"):
        if cand.is_file():
            return cand
    raise ConfigError([f"sandbox.json: operator {name!r} has no node configuration file"])


def load_sandbox(directory: Path) -> Sandbox:
    """Reads ``directory/sandbox.json`` (schema: docs/sandbox.md)."""
    path = directory / "sandbox.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            [f"{path}: no sandbox here (create one with: caducee sandbox init --dir {directory})"]
        ) from exc
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{path}: not valid JSON: {exc}"]) from exc
    ops = info.get("operators")
    if not isinstance(ops, list) or not ops:
        raise ConfigError([f"{path}: operators: a non-empty list is required"])
    operators = [
        SandboxOperator(str(op["name"]), _config_path(directory, op), op)
        for op in ops
        if isinstance(op, dict) and "name" in op
    ]
    return Sandbox(directory, info, operators)


def sandbox_configs(sandbox: Sandbox) -> list[NodeConfig]:
    return [load_config(op.config_path) for op in sandbox.operators]


class _Service:
    """A sandbox service that is not an operator (the authority, the directory), stoppable
    like one so ``stop_all`` handles the whole list."""

    def __init__(self, name: str, stop: Callable[[], Awaitable[None]], addresses: str) -> None:
        self.name = name
        self._stop = stop
        self.addresses = addresses

    async def stop(self) -> None:
        await self._stop()


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def start_services(sandbox: Sandbox) -> list[Any]:
    """Starts the trust authority and the directory node of the sandbox (when it has them):
    they must be up before the operators, which fetch the list and CRLs at start."""
    services: list[Any] = []
    from caducee.sandbox.authority import AuthorityThread, open_sandbox_authority

    auth = await asyncio.to_thread(open_sandbox_authority, sandbox.info)
    if auth is not None:
        server = AuthorityThread(auth, sandbox.info["authority"])
        bound = await server.start()
        where = ", ".join(f"{k} {h}:{p}" for k, (h, p) in bound.items())
        services.append(_Service("authority", server.stop, where))
    node = sandbox.info.get("directory_node")
    if isinstance(node, dict):
        from caducee.sandbox.directory import serve_directory

        try:
            dserver, dtask, store = await serve_directory(node)
        except BaseException:
            await stop_all(services)
            raise

        async def stop_directory() -> None:
            dserver.should_exit = True
            await asyncio.wait({dtask}, timeout=10)
            await _cancel(dtask)
            store.close()

        services.append(_Service("directory", stop_directory, f"fhir {node['fhir_url']}"))
    return services


async def start_sandbox(directory: Path) -> tuple[Sandbox, list[Operator]]:
    """Loads and starts the authority, the directory and every operator; on failure, stops
    those already started. The services come first in the returned list (stopped last)."""
    sandbox = load_sandbox(directory)
    configs = sandbox_configs(sandbox)
    operators: list[Any] = await start_services(sandbox)
    from caducee.web.sandbox import start_idp

    try:
        idp = await start_idp(directory, sandbox.info)  # the webmails' identity provider
    except BaseException:
        await stop_all(operators)
        raise
    if idp is not None:
        operators.append(_Service("idp", idp.stop, f"issuer {sandbox.info['idp']['issuer']}"))
    try:
        for cfg in configs:
            op = Operator(cfg)
            await op.start()
            operators.append(op)
    except BaseException:
        await stop_all(operators)
        raise
    return sandbox, operators


async def stop_all(operators: list[Any]) -> None:
    for op in reversed(operators):
        try:
            await op.stop()
        except Exception:
            log.exception("stopping %s failed", op.name)


def describe(operators: list[Any]) -> str:
    lines = []
    for op in operators:
        if isinstance(op, _Service):
            lines.append(f"  {op.name}: {op.addresses}")
            continue
        parts = [f"{name} {h}:{p}" for name, addrs in op.addresses.items() for h, p in addrs[:1]]
        lines.append(f"  {op.name} ({', '.join(op.cfg.domains)}): {'; '.join(parts)}")
    return "\n".join(lines)


def run_sandbox(directory: Path) -> None:
    """Runs the sandbox in ``directory`` until SIGINT/SIGTERM (graceful stop)."""
    from caducee.cli.operator import run_until_signalled

    operators: list[Operator] = []

    async def start() -> None:
        _, started = await start_sandbox(directory)
        operators.extend(started)
        count = sum(1 for op in operators if isinstance(op, Operator))
        print(f"sandbox {directory}: {count} operator(s) running", flush=True)
        print(describe(operators), flush=True)
        from caducee.web.sandbox import describe_web

        print(describe_web(load_sandbox(directory).info), flush=True)
        print("Ctrl-C to stop.", flush=True)

    async def stop() -> None:
        await stop_all(operators)

    asyncio.run(run_until_signalled(start, stop))
    print(f"sandbox {directory}: stopped", flush=True)
