"""Compact UID/sequence set formatting (RFC 9051 §9 ``sequence-set``; RFC 4315 ``uid-set``)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["format_uids"]


def format_uids(values: Iterable[int], *, keep_order: bool = False) -> str:
    """``1:3,7,9:10``; with ``keep_order`` (COPYUID pairs) ranges only for consecutive runs in
    the given order."""
    nums = list(values) if keep_order else sorted(set(values))
    if not nums:
        return ""
    out: list[str] = []
    start = prev = nums[0]
    for n in nums[1:]:
        if n == prev + 1:
            prev = n
            continue
        out.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = n
    out.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(out)
