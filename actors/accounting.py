"""Accounting: per-org counters of a shard, and a bounded sliding message rate.

Every message an org sends is counted exactly once, as accepted or under one rejection
reason: ``messages_accepted + sum(rejected.values()) == messages_received`` at all times
(:meth:`OrgAccount.accounted`). Times come from the caller's clock (``now``, seconds), so a
replay with the same clock readings gives the same numbers.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.errors import ConfigError

DEFAULT_RATE_WINDOW_S = 60.0
"""Window of an account's ``msg_per_s`` unless given."""

STATE_VERSION = 1


class SlidingRate:
    """Events per second over the last ``window_s`` seconds, in bounded memory.

    Events are counted in ``BUCKETS`` buckets of ``window_s / BUCKETS`` seconds (aligned to
    multiples of the width), so memory does not grow with the call rate. The approximation: the
    window is the bucket holding ``now`` and the ``BUCKETS - 1`` before it, so an event stops
    counting between 0.9 and 1.0 window after it happened; the rate divides by the time those
    buckets span up to ``now``, which is exact for a steady rate.

    Before a full window has passed since the first event, the span starts at the first event
    (nothing happened before it), and is never shorter than one bucket: a single batch at the
    first reading yields ``n / width``, not ``n / 0``. With no event in the window the rate is 0.
    The clock is expected not to go backwards; an earlier ``now`` is treated as the latest seen.
    """

    BUCKETS = 10

    def __init__(self, window_s: float) -> None:
        if isinstance(window_s, bool) or not isinstance(window_s, int | float) or not math.isfinite(window_s) or window_s <= 0:
            raise ConfigError(f"window_s: expected a positive number of seconds, found {window_s!r}")
        self.window_s = float(window_s)
        self.width = self.window_s / self.BUCKETS
        """Seconds per bucket."""
        # [bucket index, count], oldest first; only non-empty buckets, at most BUCKETS of them.
        self._buckets: deque[list[int]] = deque(maxlen=self.BUCKETS)
        self._first: float | None = None
        self._latest: float | None = None

    def add(self, n: int, now: float) -> None:
        """Counts ``n`` events at time ``now``."""
        if n < 0:
            raise ValueError(f"SlidingRate.add: n must be >= 0, got {n}")
        if self._latest is not None and now < self._latest:
            now = self._latest
        self._latest = now
        if self._first is None:
            self._first = now
        idx = math.floor(now / self.width)
        if self._buckets and self._buckets[-1][0] == idx:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([idx, n])

    def rate(self, now: float) -> float:
        """Events per second over the window ending at ``now``."""
        if self._latest is None or self._first is None:
            return 0.0
        now = max(now, self._latest)
        lo = math.floor(now / self.width) - self.BUCKETS + 1
        count = sum(c for i, c in self._buckets if i >= lo)
        if count == 0:
            return 0.0
        span = now - max(lo * self.width, self._first)
        return count / max(span, self.width)


@dataclass
class OrgAccount:
    """What a shard has done for one org: messages, points, rows, and its serving module."""

    messages_received: int = 0
    """Messages handed to the shard for this org."""
    messages_accepted: int = 0
    """Messages the kernel accepted."""
    rejected: dict[str, int] = field(default_factory=dict)
    """Messages refused, by reason (the payload reject reasons, or the shard's own, e.g. ``overload``)."""
    points: int = 0
    """Points in accepted messages."""
    nonfinite_points: int = 0
    """Of ``points``, those dropped for a NaN or infinite value."""
    late_points: int = 0
    """Of ``points``, finite ones dropped because their bucket had already been flushed."""
    rows_emitted: int = 0
    """Rows handed to the sink."""
    flushes: int = 0
    """Flushes handed to the sink (calls of :meth:`record_rows`, empty ones included)."""
    last_flush: float | None = None
    """Clock reading of the latest flush; None before the first."""
    module_version: int | None = None
    """Version of the module serving the org now; None before the first."""
    module_origin: str | None = None
    """Where that module came from (e.g. ``generic``, ``specialized``, ``evolved``)."""
    module_since: float | None = None
    """Clock reading when that module started serving."""
    swaps: int = 0
    """Times the serving module was replaced by another (rollbacks included; the first module is not a swap)."""
    swap_rejections: dict[str, int] = field(default_factory=dict)
    """Swaps refused before serving, by reason (e.g. a failed shadow check)."""
    rollbacks: int = 0
    """Times a swapped-in module was replaced by the one before it."""
    msg_rate: SlidingRate = field(default_factory=lambda: SlidingRate(DEFAULT_RATE_WINDOW_S), compare=False, repr=False)
    """Messages received per second over a sliding window; not checkpointed."""

    def accounted(self) -> int:
        """``messages_accepted + sum(rejected)``: equals ``messages_received`` (every message counted once)."""
        return self.messages_accepted + sum(self.rejected.values())

    def record_batch(self, received: int, accepted: int, rejected: Mapping[str, int], points: int, nonfinite: int, late: int, now: float) -> None:
        """Counts one batch. Raises ``ValueError`` (and counts nothing) if a count is negative
        or ``accepted + sum(rejected) != received``."""
        counts = {"received": received, "accepted": accepted, "points": points, "nonfinite": nonfinite, "late": late}
        counts.update({f"rejected[{k!r}]": v for k, v in rejected.items()})
        for name, v in counts.items():
            if v < 0:
                raise ValueError(f"record_batch: {name} must be >= 0, got {v}")
        if accepted + sum(rejected.values()) != received:
            raise ValueError(f"record_batch: {accepted} accepted + {sum(rejected.values())} rejected != {received} received")
        self.messages_received += received
        self.messages_accepted += accepted
        for reason, n in rejected.items():
            if n:
                self.rejected[reason] = self.rejected.get(reason, 0) + n
        self.points += points
        self.nonfinite_points += nonfinite
        self.late_points += late
        self.msg_rate.add(received, now)

    def record_rows(self, n: int, now: float) -> None:
        """Counts one flush of ``n`` rows."""
        if n < 0:
            raise ValueError(f"record_rows: n must be >= 0, got {n}")
        self.rows_emitted += n
        self.flushes += 1
        self.last_flush = now

    def record_module(self, version: int, origin: str, now: float) -> None:
        """Records that ``version`` (from ``origin``) serves from ``now`` on; a change is a swap.

        Recording the module already serving changes nothing (recovery may record it again).
        """
        if version == self.module_version and origin == self.module_origin:
            return
        if self.module_version is not None:
            self.swaps += 1
        self.module_version = version
        self.module_origin = origin
        self.module_since = now

    def record_swap_rejection(self, reason: str) -> None:
        """Counts a swap refused for ``reason``."""
        self.swap_rejections[reason] = self.swap_rejections.get(reason, 0) + 1

    def record_rollback(self) -> None:
        """Counts a rollback (the caller records the restored module with :meth:`record_module`)."""
        self.rollbacks += 1

    def snapshot(self, now: float) -> dict[str, Any]:
        """A plain, JSON-able view, with ``msg_per_s`` at ``now``; points under the names
        the service reports them by (``points_in``, ``points_late``, ``points_nonfinite``)."""
        out = self._counters()
        out["points_in"] = out.pop("points")
        out["points_late"] = out.pop("late_points")
        out["points_nonfinite"] = out.pop("nonfinite_points")
        out["msg_per_s"] = self.msg_rate.rate(now)
        return out

    def _counters(self) -> dict[str, Any]:
        return {
            "messages_received": self.messages_received,
            "messages_accepted": self.messages_accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "points": self.points,
            "nonfinite_points": self.nonfinite_points,
            "late_points": self.late_points,
            "rows_emitted": self.rows_emitted,
            "flushes": self.flushes,
            "last_flush": self.last_flush,
            "module_version": self.module_version,
            "module_origin": self.module_origin,
            "module_since": self.module_since,
            "swaps": self.swaps,
            "swap_rejections": dict(sorted(self.swap_rejections.items())),
            "rollbacks": self.rollbacks,
        }

    def to_state(self) -> dict[str, Any]:
        """The counters as a plain dict, for a checkpoint (the sliding rate is not kept)."""
        return {"version": STATE_VERSION, **self._counters()}

    @classmethod
    def from_state(cls, data: Mapping[str, Any], window_s: float = DEFAULT_RATE_WINDOW_S) -> OrgAccount:
        """Rebuilds an account from :meth:`to_state`, with a fresh sliding rate of ``window_s``.

        Raises ``ValueError`` on unknown or missing keys, wrong types, or counters that break
        the ``accounted() == messages_received`` invariant.
        """
        expected = set(cls()._counters()) | {"version"}
        if not isinstance(data, Mapping) or set(data) != expected:
            got = set(data) if isinstance(data, Mapping) else set()
            raise ValueError(f"account state: missing {sorted(expected - got)}, unknown {sorted(got - expected)}")
        if data["version"] != STATE_VERSION:
            raise ValueError(f"account state: version {data['version']!r}, expected {STATE_VERSION}")

        def count(name: str, v: Any) -> int:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"account state: {name} must be a non-negative integer, got {v!r}")
            return v

        def counts(name: str) -> dict[str, int]:
            d = data[name]
            if not isinstance(d, Mapping) or not all(isinstance(k, str) for k in d):
                raise ValueError(f"account state: {name} must map reasons to counts")
            return {k: count(f"{name}[{k!r}]", v) for k, v in d.items()}

        def optional(name: str, types: tuple[type, ...]) -> Any:
            v = data[name]
            if v is not None and (isinstance(v, bool) or not isinstance(v, types)):
                raise ValueError(f"account state: {name} must be None or {'/'.join(t.__name__ for t in types)}, got {v!r}")
            return v

        acc = cls(
            messages_received=count("messages_received", data["messages_received"]),
            messages_accepted=count("messages_accepted", data["messages_accepted"]),
            rejected=counts("rejected"),
            points=count("points", data["points"]),
            nonfinite_points=count("nonfinite_points", data["nonfinite_points"]),
            late_points=count("late_points", data["late_points"]),
            rows_emitted=count("rows_emitted", data["rows_emitted"]),
            flushes=count("flushes", data["flushes"]),
            last_flush=optional("last_flush", (int, float)),
            module_version=optional("module_version", (int,)),
            module_origin=optional("module_origin", (str,)),
            module_since=optional("module_since", (int, float)),
            swaps=count("swaps", data["swaps"]),
            swap_rejections=counts("swap_rejections"),
            rollbacks=count("rollbacks", data["rollbacks"]),
            msg_rate=SlidingRate(window_s),
        )
        if acc.accounted() != acc.messages_received:
            raise ValueError(f"account state: {acc.accounted()} messages accounted for but {acc.messages_received} received")
        return acc
