"""Traffic for verification, derived from a tenant's configuration (never from a workload
file, so it exists for any tenant and a kernel cannot be tuned to it).

- :func:`edge_messages`: the oracle's edge cases, aimed at this configuration's
  literals: every filter tag present, absent and nearly matched; prefix terms hit,
  missed by one character and on an empty value; negated terms; group-by keys missing,
  multi-valued, repeated, with ``N/A`` and commas in values; bare tags; metrics no query
  asks for; empty messages and series; NaN, ±inf, -0.0, subnormals and sums that
  overflow; negative, bucket-boundary (±1) and far-apart timestamps, out of order; a
  wrong org and truncated payloads (rejection parity).
- :func:`fuzzed_payloads`: damaged copies of those, for decoder fuzzing.
- :func:`config_traffic`: ordinary traffic over the same vocabulary (regular series
  of ascending points), for the shadow and bench stages when no messages are given.

Both are deterministic in their seed.
"""

from __future__ import annotations

import math
import random

from actors.config import TenantConfig
from actors.payload import Message, Series, encode
from actors.query import MISSING


def vocabulary(cfg: TenantConfig) -> tuple[list[str], list[str]]:
    """(metrics, tags) that exercise ``cfg``: its literals, near misses and noise."""
    metrics = [*sorted({q.metric for q in cfg.queries}), "other.metric"]
    tags: list[str] = ["host:h-1", "host:h-2", "canary", "cana"]
    for q in cfg.queries:
        for t in q.filter:
            if t.is_prefix:
                k, p = t.key or "", t.prefix or ""
                tags += [f"{k}:{p}", f"{k}:{p}zz", f"{k}:{p[:-1]}", f"{k}:", f"{k}x:{p}"]
            else:
                tag = t.tag or ""
                tags += [tag, tag + "x", tag[:-1]]
        for k in q.by:
            tags += [f"{k}:a", f"{k}:b", f"{k}:{MISSING}", f"{k}:a,{k}:b", f"{k}:"]
    seen: set[str] = set()
    uniq = [t for t in tags if t and not (t in seen or seen.add(t))]  # type: ignore[func-returns-value]
    return metrics, uniq


_ODD_VALUES = (math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, -5e-324, 1.7e308, -1.7e308, 1e-300)


def _points(rng: random.Random, interval: int, base: int, n: int, odd: bool) -> tuple[tuple[int, float], ...]:
    pts = []
    for _ in range(n):
        r = rng.random()
        if r < 0.3:
            ts = base + rng.randrange(-2, 3) * interval + rng.choice((-1, 0, 1))
        elif r < 0.4:
            ts = rng.choice((0, -1, 1, -interval, interval - 1, -(2**40), 2**40))
        else:
            ts = base + rng.randrange(-3 * interval, 3 * interval)
        v = rng.choice(_ODD_VALUES) if odd and rng.random() < 0.2 else round(rng.uniform(-50, 100), rng.choice((0, 3, 9)))
        pts.append((ts, v))
    return tuple(pts)


def edge_messages(cfg: TenantConfig, seed: int = 0, n: int = 120) -> list[Message]:
    """``n`` messages of edge cases for ``cfg`` (decoded; see :func:`edge_payloads`)."""
    rng = random.Random(seed)
    metrics, tags = vocabulary(cfg)
    interval = cfg.interval_s
    out: list[Message] = [Message(cfg.org, ())]
    for i in range(n - 1):
        series = []
        for _ in range(rng.choice((0, 1, 2, 5, 12))):
            chosen = rng.sample(tags, k=min(len(tags), rng.choice((0, 1, 2, 3, 5, 8))))
            if chosen and rng.random() < 0.2:
                chosen.append(rng.choice(chosen))  # a repeated tag counts once
            base = (i // 10) * interval * 3 + rng.choice((0, interval))
            series.append(Series(rng.choice(metrics), tuple(chosen), _points(rng, interval, base, rng.choice((0, 1, 3, 10)), odd=True)))
        out.append(Message(cfg.org, tuple(series)))
    return out


def edge_payloads(cfg: TenantConfig, seed: int = 0, n: int = 120) -> list[bytes]:
    """:func:`edge_messages` encoded, plus messages every kernel must refuse the same way:
    a wrong org, truncations and a bad version byte."""
    payloads = [encode(m) for m in edge_messages(cfg, seed, n)]
    rng = random.Random(seed + 1)
    donor = max(payloads, key=len)
    bad = [encode(Message(cfg.org + 1, ())), b"", b"\x07", donor[: len(donor) // 2], donor[:-1], bytes([donor[0] ^ 0x40]) + donor[1:]]
    for b in bad:
        payloads.insert(rng.randrange(len(payloads) + 1), b)
    return payloads


def fuzzed_payloads(cfg: TenantConfig, seed: int = 0) -> list[bytes]:
    """Damaged copies of :func:`edge_payloads` for decoder fuzzing (``actors.verify.fuzz``)."""
    from actors.verify.fuzz import damaged

    valid = [encode(m) for m in edge_messages(cfg, seed)]
    return damaged(valid, seed)


def config_traffic(cfg: TenantConfig, seed: int, n: int, series_per_message: int = 50, points_per_series: int = 20) -> list[bytes]:
    """``n`` ordinary payloads over ``cfg``'s vocabulary: hosts with stable tag sets, live
    timing as agents send (``actors.workload``): each series' points ascending within the
    10 s before its send time, which trails "now" by up to 5 s; now advances 10 s every
    100 messages."""
    rng = random.Random(seed)
    metrics, tags = vocabulary(cfg)
    good = [t for t in tags if not t.endswith(":") and "," not in t]
    hosts = [(*sorted(set(rng.sample(good, k=min(len(good), rng.randint(1, 6))))), f"host:h{h}") for h in range(200)]
    weights = [8.0 if m != "other.metric" else 1.0 for m in metrics]
    out = []
    for i in range(n):
        now = 1_764_000_000 + (i * 10) // 100
        series = []
        for _ in range(series_per_message):
            end = now - rng.randrange(6)
            pts = tuple((end - 10 + ((j + 1) * 10) // points_per_series, round(rng.uniform(0, 100), 3)) for j in range(points_per_series))
            series.append(Series(rng.choices(metrics, weights)[0], rng.choice(hosts), pts))
        out.append(encode(Message(cfg.org, tuple(series))))
    return out
