"""Text folding for search: accent- and case-insensitive tokens, compound names, typos.

One normalisation is applied on both engines (in Python, before storage and on each query), so
SQLite FTS5 and PostgreSQL ``tsvector`` see the same tokens: accents removed (NFKD), ligatures
expanded, case folded, every non-alphanumeric character a separator.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

__all__ = ["compact", "deletes", "edit_distance_le1", "fold", "name_tokens", "tokens"]

_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ß": "ss"})
_CACHE: dict[str, str] = {}


def fold(text: str) -> str:
    """``"Ève-Marie D'Ornano"`` -> ``"eve marie d ornano"``."""
    cached = _CACHE.get(text)
    if cached is not None:
        return cached
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    out = []
    for ch in decomposed:
        if ch.isalnum():
            out.append(ch)
        elif not unicodedata.combining(ch):
            out.append(" ")
    result = " ".join("".join(out).casefold().split())
    if len(_CACHE) < 1_000_000:
        _CACHE[text] = result
    return result


def tokens(text: str) -> list[str]:
    return fold(text).split()


def compact(text: str) -> str:
    """Folded text without separators (a city or a compound name as one token)."""
    return fold(text).replace(" ", "")


def name_tokens(*parts: str) -> list[str]:
    """Search tokens of a person's names: each word, plus each compound name joined.

    ``"de La Fontaine"`` gives ``de la fontaine lafontaine delafontaine``; ``"Jean-Marie"`` gives
    ``jean marie jeanmarie``, so ``jeanmarie``, ``jean mar`` and ``lafont`` all find them.
    """
    if len(parts) == 1:
        return _part_tokens(parts[0])
    out: dict[str, None] = {}
    for part in parts:
        out.update(dict.fromkeys(_part_tokens(part)))
    return list(out)


_PARTS: dict[str, list[str]] = {}


def _part_tokens(part: str) -> list[str]:
    cached = _PARTS.get(part)
    if cached is not None:
        return cached
    words = tokens(part)
    out = list(words)
    if len(words) > 1:
        for i in range(len(words) - 1):
            joined = "".join(words[i:])
            if len(joined) > 2:
                out.append(joined)
    result = list(dict.fromkeys(out))
    if len(_PARTS) < 500_000:
        _PARTS[part] = result
    return result


def deletes(term: str) -> set[str]:
    """The one-character deletions of ``term`` (symmetric delete spelling correction)."""
    return {term[:i] + term[i + 1 :] for i in range(len(term))}


def edit_distance_le1(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by at most one insertion, deletion, substitution or
    transposition of adjacent characters."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    if la > lb:
        a, b = b, a
    return any(b[:i] + b[i + 1 :] == a for i in range(len(b)))


def unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))
