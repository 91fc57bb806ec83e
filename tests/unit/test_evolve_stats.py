"""What a tenant's config and training sample say to the offline proposer: the rewrites
whose premise the tenant has are tried most."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.evolve.stats import workload_stats
from actors.loading import load_workload
from actors.payload import encode
from actors.workload import generate

REPO = Path(__file__).resolve().parents[2]


def _stats(name: str) -> dict[str, Any]:
    wl = load_workload(REPO / "configs" / "workloads" / f"{name}.yaml")
    return workload_stats(wl.tenant, [encode(m) for m in generate(wl, 40, seed=2)])


def test_filters_on_many_queries_point_at_the_atom_index() -> None:
    s = _stats("w1")
    assert s["queries_per_metric"] == 100 and s["atom_queries"] == 1.0 and s["group_by_share"] == 0.0
    w = s["gene_weights"]
    assert isinstance(w, dict) and max(w, key=lambda k: w[k]) == "atom_index"


def test_group_bys_with_repeating_tag_sets_point_at_the_cache_and_run_summaries() -> None:
    s = _stats("w2")
    assert s["atom_queries"] == 0.0 and s["group_by_share"] == 1.0 and 0.5 < s["tagset_repeat"] < 1.0
    w = s["gene_weights"]
    assert isinstance(w, dict)
    top = sorted(w, key=lambda k: w[k], reverse=True)[:3]
    assert set(top) == {"tagset_cache", "preagg_runs", "decode"} and w["atom_index"] < 0.2
    assert s["run_length"] > 5  # live traffic: a series' points mostly share a bucket
