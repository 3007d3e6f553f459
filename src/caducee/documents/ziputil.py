"""Defensive ZIP reading: limits against zip bombs and path traversal.

Each refusal is an :class:`InvalidInput` naming the problem. Members are read with a bounded
stream, so a member whose header lies about its size cannot inflate past the limit.
"""

from __future__ import annotations

import io
import stat
import zipfile
from dataclasses import dataclass

from caducee.core.errors import InvalidInput

__all__ = ["ZipLimits", "read_zip_members"]


@dataclass(frozen=True)
class ZipLimits:
    max_archive: int = 50 * 1024 * 1024
    max_members: int = 200
    max_member: int = 40 * 1024 * 1024
    max_total: int = 120 * 1024 * 1024
    max_ratio: int = 200


def _check_name(raw: str) -> str:
    name = raw.replace("\\", "/")
    if "\x00" in name:
        raise InvalidInput(f"zip member name contains NUL: {raw!r}")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise InvalidInput(f"zip member has an absolute path: {raw!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidInput(f"zip member path escapes the archive (path traversal): {raw!r}")
    return "/".join(parts) + ("/" if name.endswith("/") else "")


def read_zip_members(data: bytes, limits: ZipLimits | None = None) -> dict[str, bytes]:
    """Return ``{normalised path: bytes}`` for the regular files of a zip archive.

    Backslash separators (seen in some XDM producers) are normalised to ``/``.
    """
    lim = limits or ZipLimits()
    if len(data) > lim.max_archive:
        raise InvalidInput(f"zip archive is too large ({len(data)} bytes, limit {lim.max_archive})")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise InvalidInput(f"not a readable zip archive: {exc}") from exc
    infos = archive.infolist()
    if len(infos) > lim.max_members:
        raise InvalidInput(
            f"zip archive has too many members ({len(infos)}, limit {lim.max_members})"
        )
    out: dict[str, bytes] = {}
    total = 0
    for info in infos:
        name = _check_name(info.filename)
        if name.endswith("/") or info.is_dir():
            continue
        mode = info.external_attr >> 16
        if mode and stat.S_ISLNK(mode):
            raise InvalidInput(f"zip member is a symbolic link: {info.filename!r}")
        if info.flag_bits & 0x1:
            raise InvalidInput(f"zip member is encrypted: {info.filename!r}")
        if info.file_size > lim.max_member:
            raise InvalidInput(
                f"zip member {info.filename!r} is too large "
                f"({info.file_size} bytes, limit {lim.max_member})"
            )
        if info.compress_size and info.file_size / info.compress_size > lim.max_ratio:
            raise InvalidInput(
                f"zip member {info.filename!r} has a suspicious compression ratio (zip bomb?)"
            )
        if name in out:
            raise InvalidInput(f"zip archive has a duplicate member: {info.filename!r}")
        try:
            with archive.open(info) as stream:
                content = stream.read(lim.max_member + 1)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
            raise InvalidInput(f"zip member {info.filename!r} cannot be read: {exc}") from exc
        if len(content) > lim.max_member:
            raise InvalidInput(f"zip member {info.filename!r} inflates past the size limit")
        total += len(content)
        if total > lim.max_total:
            raise InvalidInput(f"zip archive inflates past the total limit ({lim.max_total} bytes)")
        out[name] = content
    return out
