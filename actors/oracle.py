"""The reference semantics, written literally and slowly. Tests compare kernels to it.

For every accepted message (in order), every series (in order), every query (in
configuration order) whose metric equals the series' metric and whose filter holds,
every group the series lands in, and every point (in order) with a finite value:
add the value to the accumulator of (query, bucket, group), where
``bucket = ts - ts mod interval_s`` (floor). Accumulators: ``sum`` folds from +0.0,
``min``/``max`` replace only on strict ``<``/``>`` (the first of equal values stays),
``count`` counts, ``avg = sum / count``. A row exists for every accumulator that
received at least one value. Non-finite values are ignored and counted per message.
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


def aggregate(config: TenantConfig, payloads: Iterable[bytes]) -> OracleResult:
    """Decodes each payload (rejecting what the kernel rejects) and aggregates literally."""
    messages: list[Message] = []
    rejected: dict[str, int] = {}
    for p in payloads:
        try:
            messages.append(decode(p, expect_org=config.org))
        except PayloadError as e:
            rejected[e.reason] = rejected.get(e.reason, 0) + 1
    res = aggregate_messages(config, messages)
    res.rejected = rejected
    return res


def aggregate_messages(config: TenantConfig, messages: Iterable[Message]) -> OracleResult:
    accs: dict[tuple[str, int, str], _Acc] = {}
    agg_of = {q.id: q.agg for q in config.queries}
    res = OracleResult(rows=[])
    for msg in messages:
        res.accepted += 1
        for s in msg.series:
            res.points += len(s.points)
            res.nonfinite += sum(1 for _, v in s.points if not math.isfinite(v))
            for q in config.queries:
                if q.metric != s.metric or not all(term_holds(t, s.tags) for t in q.filter):
                    continue
                for g in groups_of(q, s.tags):
                    for ts, v in s.points:
                        if not math.isfinite(v):
                            continue
                        bucket = ts - ts % config.interval_s
                        a = accs.setdefault((q.id, bucket, g), _Acc())
                        a.sum += v
                        a.count += 1
                        if v < a.min:
                            a.min = v
                        if v > a.max:
                            a.max = v
    for (qid, bucket, g), a in accs.items():
        agg = agg_of[qid]
        value = {"sum": a.sum, "min": a.min, "max": a.max, "avg": a.sum / a.count, "count": float(a.count)}[agg]
        res.rows.append(Row(qid, bucket, g, value))
    return res
