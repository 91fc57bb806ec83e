"""Synthetic traffic from a workload file: the tenant plus the shape of its traffic.

Hosts have fixed tag values (a host belongs to one service, region, ...), as in real
fleets. Each message carries ``series_per_message`` series of randomly drawn hosts
and metrics, each with ``points_per_series`` points. Rates inject what real intake
sees: multi-valued tags, missing tags, bare tags, non-finite values. Generation is a
pure function of the workload, the seed and the index of the first message.

Two timings (``timing``):

- ``live`` (the default; what agents send and what every traffic source sends): event
  time ("now") advances with the stream, by ``step_s`` every ``messages_per_window``
  messages. Each series' points lie in the last ``live_window_s`` seconds before its
  send time, which trails now by up to ``jitter_s``; a share ``late_share`` of series
  arrive really late (``late_by_s`` to twice that behind now), which a shard counts and
  drops once their bucket is closed.
- ``history``: batch-like backfill, for replay benchmarks that want it and say so. Each
  series carries ``points_per_series`` points ``step_s`` apart, so a message spans
  ``points_per_series × step_s`` seconds of history; every ``messages_per_window``
  messages the window moves on by that span. A shard with a lateness shorter than the
  span drops much of it as late.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.config import TenantConfig, check_int, check_keys
from actors.errors import ConfigError
from actors.payload import Message, Series

TIMINGS = ("live", "history")


def _rate(where: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
        raise ConfigError(f"{where}: expected a probability in [0, 1], found {v!r}")
    return float(v)


@dataclass(frozen=True)
class TrafficShape:
    """How a workload's messages look."""

    seed: int = 7
    """Default seed (``evoagg gen --seed`` overrides it)."""
    start_ts: int = 1_764_000_000
    """Timestamp of the first point, seconds."""
    step_s: int = 10
    """Seconds between consecutive points of a series."""
    series_per_message: int = 50
    """Series in each message."""
    points_per_series: int = 20
    """Points in each series (50 x 20 = 1,000 points a message by default)."""
    messages_per_window: int = 20
    """Messages sharing one time window before time moves on."""
    hosts: int = 200
    """Distinct hosts; each has fixed values for every key in ``tags``."""
    tags: Mapping[str, int] = field(default_factory=lambda: {"service": 10})
    """Tag key -> number of distinct values (``<key>-<n>``; ``service`` values are ``svc-NN``)."""
    metrics: Mapping[str, float] = field(default_factory=lambda: {"cpu.usage": 1.0})
    """Metric name -> relative frequency."""
    bare_tags: Mapping[str, float] = field(default_factory=dict)
    """Bare tag -> probability that a series carries it."""
    multi_value_rate: float = 0.0
    """Probability that a series carries a second value for one of its keys."""
    missing_tag_rate: float = 0.0
    """Probability that a series lacks one of its keyed tags."""
    nonfinite_rate: float = 0.0
    """Probability that a point's value is NaN or +/-inf."""
    timing: str = "live"
    """``live`` (recent points, event time advancing with the stream) or ``history``
    (each message carries ``points_per_series × step_s`` seconds of backfill)."""
    live_window_s: int = 10
    """``live``: a series' points lie within this many seconds before its send time."""
    jitter_s: int = 5
    """``live``: a series' send time trails now by 0 to this many seconds."""
    late_share: float = 0.0005
    """``live``: probability that a series arrives really late (``late_by_s`` behind or more)."""
    late_by_s: int = 300
    """``live``: a late series is sent ``late_by_s`` to ``2 × late_by_s`` seconds behind now."""

    def validate(self) -> TrafficShape:
        check_int("seed", self.seed, 0, 2**63 - 1)
        check_int("start_ts", self.start_ts, -(2**61), 2**61)
        check_int("step_s", self.step_s, 1, 86_400)
        check_int("series_per_message", self.series_per_message, 0, 100_000)
        check_int("points_per_series", self.points_per_series, 0, 100_000)
        check_int("messages_per_window", self.messages_per_window, 1, 10**9)
        check_int("hosts", self.hosts, 1, 10**7)
        for k, n in self.tags.items():
            check_int(f"tags.{k}", n, 1, 10**7)
        if not self.metrics or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w < math.inf for w in self.metrics.values()):
            raise ConfigError("metrics: expected at least one metric, each with a positive finite weight")
        for k, p in self.bare_tags.items():
            _rate(f"bare_tags.{k}", p)
        _rate("multi_value_rate", self.multi_value_rate)
        _rate("missing_tag_rate", self.missing_tag_rate)
        _rate("nonfinite_rate", self.nonfinite_rate)
        if self.timing not in TIMINGS:
            raise ConfigError(f"timing: expected one of {', '.join(TIMINGS)}, found {self.timing!r}")
        check_int("live_window_s", self.live_window_s, 0, 86_400)
        check_int("jitter_s", self.jitter_s, 0, 86_400)
        _rate("late_share", self.late_share)
        check_int("late_by_s", self.late_by_s, 0, 10**7)
        return self

    def event_s_per_message(self) -> float:
        """Seconds of event time per message: how fast "now" moves with the stream."""
        span = self.step_s if self.timing == "live" else self.points_per_series * self.step_s
        return span / self.messages_per_window

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "traffic") -> TrafficShape:
        check_keys(source, data, set(cls.__dataclass_fields__))
        for name in ("tags", "metrics", "bare_tags"):
            if name in data and not (isinstance(data[name], Mapping) and all(isinstance(k, str) for k in data[name])):
                raise ConfigError(f"{source}: {name}: expected a mapping of names to numbers, found {data[name]!r}")
        try:
            return cls(**data).validate()
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"{source}: {e}") from None


@dataclass(frozen=True)
class Workload:
    """A tenant and its traffic."""

    name: str
    """Short name (``w1``)."""
    tenant: TenantConfig
    """The tenant whose queries run on this traffic."""
    traffic: TrafficShape
    """The traffic's shape."""


def _value_name(key: str, i: int, n: int) -> str:
    width = len(str(n - 1))
    return f"svc-{i:0{width}d}" if key == "service" else f"{key}-{i:0{width}d}"


def generate(w: Workload, n_messages: int, seed: int | None = None, first: int = 0) -> Iterator[Message]:
    """``n_messages`` messages of workload ``w``, the first being message number ``first``
    of the stream (its place on the timeline); same inputs, same messages."""
    t = w.traffic
    rng = random.Random(t.seed if seed is None else seed)
    keys = list(t.tags)
    hosts = []
    for h in range(t.hosts):
        tags = [f"host:{_value_name('host', h, t.hosts)}"]
        tags += [f"{k}:{_value_name(k, rng.randrange(t.tags[k]), t.tags[k])}" for k in keys]
        hosts.append(tags)
    metrics = list(t.metrics)
    weights = [t.metrics[m] for m in metrics]
    bad = (math.nan, math.inf, -math.inf)
    live = t.timing == "live"
    n = t.points_per_series
    for i in range(first, first + n_messages):
        if live:
            now = t.start_ts + (i * t.step_s) // t.messages_per_window
        else:
            t0 = t.start_ts + (i // t.messages_per_window) * n * t.step_s
        series = []
        for _ in range(t.series_per_message):
            tags = list(rng.choice(hosts))
            if keys and rng.random() < t.missing_tag_rate:
                tags.pop(rng.randrange(1, len(tags)))
            if keys and rng.random() < t.multi_value_rate:
                k = rng.choice(keys)
                tags.append(f"{k}:{_value_name(k, rng.randrange(t.tags[k]), t.tags[k])}")
            tags += [b for b, p in t.bare_tags.items() if rng.random() < p]
            if live:
                # The series' points: the last live_window_s seconds before it was sent.
                end = now - rng.randrange(t.jitter_s + 1)
                if t.late_share and rng.random() < t.late_share:
                    end -= t.late_by_s + rng.randrange(t.late_by_s + 1)
                times = [end - t.live_window_s + ((j + 1) * t.live_window_s) // n for j in range(n)]
            else:
                offset = rng.randrange(t.step_s)
                times = [t0 + j * t.step_s + offset for j in range(n)]
            points = []
            for ts in times:
                v = rng.choice(bad) if t.nonfinite_rate and rng.random() < t.nonfinite_rate else round(rng.uniform(0, 100), 3)
                points.append((ts, v))
            series.append(Series(rng.choices(metrics, weights)[0], tuple(tags), tuple(points)))
        yield Message(w.tenant.org, tuple(series))
