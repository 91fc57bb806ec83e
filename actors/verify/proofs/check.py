"""A :class:`Check`: one property of the codec and what is known about it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One property and what is known about it."""

    name: str
    """e.g. ``verus:varint``, ``z3:varint``, ``exhaustive:svb-control-bytes``, ``sync:verus-copy``"""
    kind: str
    """``verus`` | ``z3-model`` | ``exhaustive`` | ``sync``"""
    status: str
    """``passed`` | ``failed`` | ``not-run``"""
    reason: str
    """Why it failed or did not run, or what passing means; one line."""
    seconds: float
    tool: str
    """The tool and its version, e.g. ``z3 4.15.4``."""


def one_line(text: str, limit: int = 400) -> str:
    flat = " | ".join(x.strip() for x in text.strip().splitlines() if x.strip())
    return flat if len(flat) <= limit else "..." + flat[-limit:]
