"""The reference semantics, written literally and slowly. Tests compare kernels to it.

For every accepted message (in order), every series (in order), every query (in
configuration order) whose metric equals the series' metric and whose filter holds,
every group the series lands in, and every point (in order) with a finite value:
add the value to the accumulator of (query, bucket, group), where
``bucket = ts - ts mod interval_s`` (floor). Accumulators: ``sum`` folds from +0.0,
``min``/``max`` replace only on strict ``<``/``>`` (the first of equal values stays),
``count`` counts, ``avg = sum / count``. A row exists for every accumulator that
received at least one value. Non-finite values are ignored and counted per message.
Once a bucket has been flushed it stays closed: finite points that would land in it are
late, counted and dropped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from actors.config import TenantConfig
from actors.errors import PayloadError
from actors.output import Row
from actors.payload import Message, decode
from actors.query import MISSING, Query, Term


def split_tag(tag: str) -> tuple[str, str] | None:
    """``key:value`` split at the first ':'; ``None`` for a bare tag."""
    key, sep, value = tag.partition(":")
    return (key, value) if sep else None


def term_holds(term: Term, tags: tuple[str, ...]) -> bool:
    if term.is_prefix:
        hit = False
        for t in tags:
            kv = split_tag(t)
            if kv is not None and kv[0] == term.key and kv[1].startswith(term.prefix or ""):
                hit = True
    else:
        hit = term.tag in tags
    return hit != term.negated


def groups_of(query: Query, tags: tuple[str, ...]) -> list[str]:
    """Every group the series lands in: one value per group-by key, all combinations."""
    per_key: list[list[str]] = []
    for key in query.by:
        values: list[str] = []
        for t in tags:
            kv = split_tag(t)
            if kv is not None and kv[0] == key and kv[1] not in values:
                values.append(kv[1])
        per_key.append(values or [MISSING])
    return [",".join(f"{k}:{v}" for k, v in zip(query.by, combo, strict=False)) for combo in itertools.product(*per_key)]


@dataclass
class _Acc:
    sum: float = 0.0
    count: int = 0
    min: float = math.inf
    max: float = -math.inf


@dataclass
class OracleResult:
    rows: list[Row]
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    points: int = 0
    nonfinite: int = 0
    late: int = 0


class LiteralView:
    """The materialized view, literally: accumulators per (query, bucket, group), and
    watermark flushes after which a flushed bucket stays closed (its late points are
    counted and dropped)."""

    def __init__(self, config: TenantConfig) -> None:
        self.config = config
        self.agg_of = {q.id: q.agg for q in config.queries}
        self.accs: dict[tuple[str, int, str], _Acc] = {}
        self.flushed_to: int | None = None
        self.max_ts: int | None = None
        self.result = OracleResult(rows=[])

    def add(self, msg: Message) -> None:
        res, interval = self.result, self.config.interval_s
        res.accepted += 1
        for s in msg.series:
            res.points += len(s.points)
            for ts, v in s.points:
                self.max_ts = ts if self.max_ts is None else max(self.max_ts, ts)
                if not math.isfinite(v):
                    res.nonfinite += 1
                elif self.flushed_to is not None and ts - ts % interval + interval <= self.flushed_to:
                    res.late += 1
            for q in self.config.queries:
                if q.metric != s.metric or not all(term_holds(t, s.tags) for t in q.filter):
                    continue
                for g in groups_of(q, s.tags):
                    for ts, v in s.points:
                        bucket = ts - ts % interval
                        if not math.isfinite(v) or (self.flushed_to is not None and bucket + interval <= self.flushed_to):
                            continue
                        a = self.accs.setdefault((q.id, bucket, g), _Acc())
                        a.sum += v
                        a.count += 1
                        if v < a.min:
                            a.min = v
                        if v > a.max:
                            a.max = v

    def flush(self, watermark: int) -> list[Row]:
        """Rows of the buckets ending at or before ``watermark``, which are then closed."""
        rows = []
        for key in [k for k in self.accs if k[1] + self.config.interval_s <= watermark]:
            a = self.accs.pop(key)
            value = {"sum": a.sum, "min": a.min, "max": a.max, "avg": a.sum / a.count, "count": float(a.count)}[self.agg_of[key[0]]]
            rows.append(Row(key[0], key[1], key[2], value))
        self.flushed_to = watermark if self.flushed_to is None else max(self.flushed_to, watermark)
        self.result.rows += rows
        return rows


FLUSH_ALL = 2**63 - 1


def aggregate(config: TenantConfig, payloads: Iterable[bytes], batch_size: int = 1, flush_lag: int | None = None) -> OracleResult:
    """Decodes each payload (rejecting what the kernel rejects) and aggregates literally.

    With ``flush_lag``, payloads go in batches of ``batch_size`` and after each batch
    every bucket ending at or before (largest timestamp seen - ``flush_lag``) is
    flushed, as ``evoagg replay --flush-lag`` does; everything is flushed at the end.
    """
    view = LiteralView(config)
    rejected: dict[str, int] = {}
    batch = 0
    for p in payloads:
        try:
            view.add(decode(p, expect_org=config.org))
        except PayloadError as e:
            rejected[e.reason] = rejected.get(e.reason, 0) + 1
        batch += 1
        if batch == batch_size:
            batch = 0
            if flush_lag is not None and view.max_ts is not None:
                view.flush(view.max_ts - flush_lag)
    view.flush(FLUSH_ALL)
    view.result.rejected = rejected
    return view.result


def aggregate_messages(config: TenantConfig, messages: Iterable[Message]) -> OracleResult:
    """Aggregates decoded messages and flushes everything at the end."""
    view = LiteralView(config)
    for m in messages:
        view.add(m)
    view.flush(FLUSH_ALL)
    return view.result
