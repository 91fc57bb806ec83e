"""What a tenant's configuration and training sample say about where a kernel's time can
go, for proposers to aim with (no Ray, no wasm; the held-back sample is never read here).

- ``queries_per_metric``: queries a series of a metric is tried against (the filter loop);
  ``atom_queries``: the share of them with a positive exact filter atom (an index finds
  those without trying them one by one).
- ``group_by_share``, ``min_max_count_share``: the queries' shapes.
- ``tagset_repeat``: the share of series whose (metric, tags) already came earlier in the
  sample (a cache of what a tag set lands in hits that often).
- ``run_length``: points per run of one series in one bucket (per-run work is amortised
  over that many points); ``buckets_per_series``: runs per series.

``gene_weights`` turns them into how often the offline proposer tries each rewrite: a
rewrite whose premise the tenant does not have is still tried, rarely.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from typing import Any

from actors.config import TenantConfig
from actors.errors import PayloadError
from actors.payload import decode

SAMPLE = 64
"""Messages of the training sample read (decoding is Python: enough to see the shape)."""


def workload_stats(cfg: TenantConfig, training: Sequence[bytes]) -> dict[str, Any]:
    by_metric: dict[str, list[bool]] = {}
    for q in cfg.queries:
        by_metric.setdefault(q.metric, []).append(any(not t.negated and not t.is_prefix for t in q.filter))
    per_metric = max((len(v) for v in by_metric.values()), default=0)
    atoms = [x for v in by_metric.values() for x in v]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    series = repeats = 0
    runs: list[int] = []
    buckets: list[int] = []
    iv = cfg.interval_s
    for p in training[:SAMPLE]:
        try:
            m = decode(p, expect_org=cfg.org)
        except PayloadError:
            continue
        for s in m.series:
            series += 1
            key = (s.metric, s.tags)
            repeats += key in seen
            seen.add(key)
            starts = [t - t % iv for t, _ in s.points]
            n = 1
            count = 1 if starts else 0
            for a, b in itertools.pairwise(starts):
                if a == b:
                    n += 1
                else:
                    runs.append(n)
                    n = 1
                    count += 1
            if starts:
                runs.append(n)
                buckets.append(count)
    out: dict[str, Any] = {
        "queries": len(cfg.queries),
        "queries_per_metric": per_metric,
        "atom_queries": round(sum(atoms) / len(atoms), 3) if atoms else 0.0,
        "group_by_share": round(sum(1 for q in cfg.queries if q.by) / len(cfg.queries), 3),
        "min_max_count_share": round(sum(1 for q in cfg.queries if q.agg in ("min", "max", "count")) / len(cfg.queries), 3),
        "sample_messages": min(len(training), SAMPLE),
        "series": series,
        "tagset_repeat": round(repeats / series, 3) if series else 0.0,
        "run_length": round(statistics.fmean(runs), 2) if runs else 0.0,
        "buckets_per_series": round(statistics.fmean(buckets), 2) if buckets else 0.0,
    }
    out["gene_weights"] = gene_weights(out)
    return out


def gene_weights(s: dict[str, Any]) -> dict[str, float]:
    """How often each rewrite is tried, from the statistics (relative weights)."""
    many = min(1.0, s["queries_per_metric"] / 16)
    runs = min(1.0, s["run_length"] / 8)
    points = s["run_length"] * max(1.0, s["buckets_per_series"])
    return {
        "atom_index": round(0.1 + 3.0 * many * s["atom_queries"], 3),
        "tagset_cache": round(0.1 + 2.0 * s["tagset_repeat"] * max(s["group_by_share"], many), 3),
        "preagg_runs": round(0.1 + 2.0 * s["min_max_count_share"] * runs, 3),
        "run_fold": round(0.1 + 0.5 * runs, 3),
        "seq_hint": round(0.1 + 0.5 * min(1.0, max(0.0, s["buckets_per_series"] - 1)), 3),
        # The walk replaces the shared reader and gathers a series' values once for all
        # its queries: it pays with the points a series carries.
        "decode": round(0.3 + 1.5 * min(1.0, points / 16), 3),
        "wide_eq": 0.5,
        "compact_acc": 0.3,
        "near_window": 0.2,
    }
