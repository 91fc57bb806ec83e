"""Text rewrites of the evolvable file by exact anchors: what every catalogue rewrite is
made of (``transforms.py``, ``decode_rewrites.py``)."""

from __future__ import annotations

from actors.errors import EvoaggError


class TransformError(EvoaggError):
    """A rewrite's anchor is missing from the source it is applied to, or the genome asks
    for rewrites that cannot be combined."""


def sub(src: str, old: str, new: str, what: str) -> str:
    """``src`` with ``old`` (which must occur exactly once) replaced by ``new``."""
    if src.count(old) != 1:
        raise TransformError(f"{what}: anchor found {src.count(old)} times, expected once: {old[:80]!r}")
    return src.replace(old, new, 1)


def find(src: str, needle: str, what: str, start: int = 0) -> int:
    """Where ``needle`` is in ``src`` (from ``start``); a missing one is a :class:`TransformError`."""
    at = src.find(needle, start)
    if at < 0:
        raise TransformError(f"{what}: anchor not found: {needle[:80]!r}")
    return at
