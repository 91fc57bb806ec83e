"""The generalisation suite's shapes (``configs/workloads/suite``) are what their names
promise: each loads, and its tenant and traffic have the property it stands for."""

from __future__ import annotations

from pathlib import Path

from actors.evolve.suite import shapes, traffic
from actors.loading import load_workload

SUITE = Path(__file__).resolve().parents[2] / "configs" / "workloads" / "suite"


def test_six_shapes_each_with_its_property() -> None:
    wls = {p.stem: load_workload(p) for p in shapes(SUITE)}
    assert set(wls) >= {"many_keys", "min_max", "one_point", "churn", "prefix_not", "count_avg"}
    assert max(len(q.by) for q in wls["many_keys"].tenant.queries) >= 5
    assert {q.agg for q in wls["min_max"].tenant.queries} == {"min", "max"}
    assert {q.agg for q in wls["count_avg"].tenant.queries} == {"count", "avg"}
    assert wls["one_point"].traffic.points_per_series == 1
    assert wls["churn"].traffic.hosts >= 100_000
    terms = [t for q in wls["prefix_not"].tenant.queries for t in q.filter]
    assert any(t.is_prefix for t in terms) and any(t.negated for t in terms)
    assert len({w.tenant.org for w in wls.values()}) == len(wls)


def test_every_shape_has_traffic_its_queries_see() -> None:
    from actors.oracle import aggregate_messages
    from actors.payload import decode

    for p in shapes(SUITE):
        wl = load_workload(p)
        train, held = traffic(wl, 20, 20)
        assert train != held
        rows = aggregate_messages(wl.tenant, [decode(b) for b in train]).rows
        # Every query of the shape produces rows on its traffic: none is dead by mistake.
        assert {r[0] for r in rows} == {q.id for q in wl.tenant.queries}, p.stem
