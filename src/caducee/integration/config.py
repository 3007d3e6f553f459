"""Configuration of the integration agent (``caducee integrate --config FILE``), in TOML.

Every problem is reported at once (:class:`ConfigError`). Passwords never sit in the file:
each secret is read from an environment variable (``password_env``) or a file
(``password_file``). See docs/integration.md for a complete example.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caducee.core.errors import ConfigError

__all__ = ["AdapterConfig", "AgentConfig", "load_config"]


@dataclass(frozen=True)
class AdapterConfig:
    type: str
    options: dict[str, Any]


@dataclass(frozen=True)
class AgentConfig:
    imap_host: str
    imap_port: int
    imap_user: str
    imap_password: str
    imap_tls: str
    imap_ca_file: str | None
    inbox: str
    integrated_folder: str
    rejected_folder: str
    idle_seconds: float
    address: str
    patients: Path
    state: Path
    adapters: tuple[AdapterConfig, ...]
    smtp_server: str | None = None
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_ca_file: str | None = None
    cda_schema: Path | None = None
    require_conformant: bool = False
    oru_listen: str | None = None
    concurrency: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def _secret(section: dict[str, Any], where: str, problems: list[str], base: Path) -> str:
    if section.get("password_file"):
        path = base / str(section["password_file"])
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            problems.append(f"{where}.password_file: cannot read {path}: {exc.strerror}")
            return ""
    var = str(section.get("password_env", ""))
    if not var:
        problems.append(f"{where}: give password_env or password_file")
        return ""
    value = os.environ.get(var, "")
    if not value:
        problems.append(f"{where}.password_env: environment variable {var} is not set")
    if "password" in section:
        problems.append(f"{where}.password: passwords are not accepted in the file")
    return value


def _path(base: Path, value: Any) -> Path:
    p = Path(str(value))
    return p if p.is_absolute() else base / p


def load_config(path: str | Path) -> AgentConfig:
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"config: cannot read {p}: {exc.strerror}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config: {p} is not valid TOML: {exc}"]) from exc
    base = p.resolve().parent
    problems: list[str] = []
    mb = raw.get("mailbox", {})
    pr = raw.get("practice", {})
    for key in ("host", "port", "user"):
        if key not in mb:
            problems.append(f"mailbox.{key}: required")
    for key in ("address", "patients", "state"):
        if key not in pr:
            problems.append(f"practice.{key}: required")
    tls = str(mb.get("tls", "starttls"))
    if tls not in ("starttls", "implicit"):
        problems.append("mailbox.tls: must be starttls or implicit")
    imap_password = _secret(mb, "mailbox", problems, base) if mb else ""
    sub = raw.get("submission")
    smtp_password = None
    if sub is not None:
        for key in ("server", "user"):
            if key not in sub:
                problems.append(f"submission.{key}: required")
        smtp_password = _secret(sub, "submission", problems, base)
    adapters: list[AdapterConfig] = []
    for i, ad in enumerate(raw.get("adapter", [])):
        kind = str(ad.get("type", ""))
        need = {"mllp": ("host", "port"), "fhir": ("base_url",), "folder": ("path",)}.get(kind)
        if need is None:
            problems.append(f"adapter[{i}].type: must be mllp, fhir or folder")
            continue
        problems.extend(f"adapter[{i}].{k}: required for {kind}" for k in need if k not in ad)
        opts = {k: v for k, v in ad.items() if k != "type"}
        if kind == "folder" and "path" in opts:
            opts["path"] = str(_path(base, opts["path"]))
        adapters.append(AdapterConfig(kind, opts))
    if not adapters and "adapter" not in raw:
        problems.append("adapter: configure at least one adapter (mllp, fhir or folder)")
    patients = _path(base, pr.get("patients", "")) if "patients" in pr else Path()
    if "patients" in pr and not patients.is_file():
        problems.append(f"practice.patients: file not found: {patients}")
    schema = _path(base, pr["cda_schema"]) if pr.get("cda_schema") else None
    if schema is not None and not schema.is_file():
        problems.append(f"practice.cda_schema: file not found: {schema}")
    concurrency = pr.get("concurrency", 1)
    if not isinstance(concurrency, int) or not 1 <= concurrency <= 32:
        problems.append("practice.concurrency: an integer from 1 to 32")
    if problems:
        raise ConfigError(problems)
    return AgentConfig(
        imap_host=str(mb["host"]),
        imap_port=int(mb["port"]),
        imap_user=str(mb["user"]),
        imap_password=imap_password,
        imap_tls=tls,
        imap_ca_file=str(_path(base, mb["ca_file"])) if mb.get("ca_file") else None,
        inbox=str(mb.get("folder", "INBOX")),
        integrated_folder=str(mb.get("integrated_folder", "Caducee/Integrated")),
        rejected_folder=str(mb.get("rejected_folder", "Caducee/Rejected")),
        idle_seconds=float(mb.get("idle_seconds", 300)),
        address=str(pr["address"]),
        patients=patients,
        state=_path(base, pr["state"]),
        adapters=tuple(adapters),
        smtp_server=str(sub["server"]) if sub else None,
        smtp_user=str(sub["user"]) if sub else None,
        smtp_password=smtp_password,
        smtp_ca_file=str(_path(base, sub["ca_file"])) if sub and sub.get("ca_file") else None,
        cda_schema=schema,
        require_conformant=bool(pr.get("require_conformant", False)),
        oru_listen=str(raw["oru"]["listen"]) if raw.get("oru", {}).get("listen") else None,
        concurrency=int(concurrency),
    )
