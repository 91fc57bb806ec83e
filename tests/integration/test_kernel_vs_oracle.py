"""The generic kernel (real wasm in real wasmtime) against the literal oracle."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import oracle
from actors.config import TenantConfig
from actors.kernel.host import KernelHost
from actors.loading import load_workload
from actors.output import output_hash
from actors.payload import Message, Series, encode
from actors.query import Query, Term
from actors.replay import replay
from actors.workload import generate

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

# A small vocabulary so random filters, groups and tags collide often.
KEYS = ["host", "env", "team"]
# Values with ',' and ':' make different tag combinations render to the same group text.
VALUES = ["a", "ab", "b", "N/A", "", "x,env:a", "a:b"]
BARE = ["canary", "host"]
METRICS = ["cpu", "mem"]

tags = st.one_of(st.builds(lambda k, v: f"{k}:{v}", st.sampled_from(KEYS), st.sampled_from(VALUES)), st.sampled_from(BARE))
terms = st.one_of(
    st.builds(lambda n, t: Term(n, tag=t), st.booleans(), tags),
    st.builds(lambda n, k, p: Term(n, key=k, prefix=p), st.booleans(), st.sampled_from(KEYS), st.sampled_from(["", "a", "b", "N"])),
)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 0.1, 0.2, 0.3, 1e308, -1e308, 5e-324]),
)
# Timestamps around zero and bucket boundaries, negative ones included.
timestamps = st.one_of(st.integers(-100, 100), st.integers(1_764_000_000 - 70, 1_764_000_000 + 70), st.sampled_from([-(2**62), 2**62]))


@st.composite
def configs(draw: st.DrawFn) -> TenantConfig:
    qs = []
    for i in range(draw(st.integers(1, 6))):
        qs.append(
            Query(
                f"q{i}",
                draw(st.sampled_from(["sum", "min", "max", "avg", "count"])),
                draw(st.sampled_from(METRICS)),
                tuple(draw(st.lists(terms, max_size=3))),
                tuple(draw(st.lists(st.sampled_from([*KEYS, "zone"]), unique=True, max_size=3))),
            )
        )
    return TenantConfig(org=7, interval_s=draw(st.sampled_from([1, 7, 30, 3600])), queries=tuple(qs)).validate()


series = st.builds(
    Series,
    st.sampled_from([*METRICS, "other"]),
    st.lists(tags, max_size=6).map(tuple),
    st.lists(st.tuples(timestamps, values), max_size=8).map(tuple),
)
messages = st.builds(Message, st.sampled_from([7, 7, 7, 8]), st.lists(series, max_size=4).map(tuple))


def _kernel_rows(wasm: bytes, cfg: TenantConfig, payloads: list[bytes], batch: int) -> tuple[str, int, dict[str, int]]:
    host = KernelHost(wasm, cfg)
    rep = replay(host, payloads, batch)
    return output_hash(rep.rows), rep.accepted, rep.rejected


@given(cfg=configs(), msgs=st.lists(messages, max_size=6), batch=st.integers(1, 4))
def test_random_configs_and_traffic_agree_with_the_oracle(generic_wasm: bytes, cfg: TenantConfig, msgs: list[Message], batch: int) -> None:
    payloads = [encode(m) for m in msgs]
    ref = oracle.aggregate(cfg, payloads)
    got_hash, accepted, rejected = _kernel_rows(generic_wasm, cfg, payloads, batch)
    assert got_hash == output_hash(ref.rows)
    assert accepted == ref.accepted
    assert rejected == ref.rejected


@given(cfg=configs(), msgs=st.lists(messages, max_size=8), batch=st.integers(1, 3), lag=st.integers(0, 90))
def test_watermark_flushes_and_late_points_agree_with_the_oracle(generic_wasm: bytes, cfg: TenantConfig, msgs: list[Message], batch: int, lag: int) -> None:
    """Flushing by watermark after each batch: same rows, and the same points late."""
    from actors.replay import disagreements

    payloads = [encode(m) for m in msgs]
    rep = replay(KernelHost(generic_wasm, cfg), payloads, batch, flush_lag=lag)
    ref = oracle.aggregate(cfg, payloads, batch, flush_lag=lag)
    assert disagreements(rep, ref) == []


def test_late_points_are_counted_and_never_merged(generic_wasm: bytes) -> None:
    cfg = TenantConfig.from_mapping({"org": 7, "interval_s": 10, "queries": ["sum:cpu{*}"]})
    early = Message(7, (Series("cpu", (), ((0, 1.0), (15, 2.0))),))
    late = Message(7, (Series("cpu", (), ((5, 100.0), (9, math.nan), (19, 3.0), (25, 4.0))),))
    rep = replay(KernelHost(generic_wasm, cfg), [encode(early), encode(late)], batch_size=1, flush_lag=5)
    # After the first batch the watermark is 15 - 5 = 10: bucket 0 is emitted and closed.
    assert [(r.bucket, r.value) for r in rep.rows] == [(0, 1.0), (10, 5.0), (20, 4.0)]
    assert (rep.late, rep.nonfinite, rep.max_ts) == (1, 1, 25)


def test_edge_semantics_spelled_out(generic_wasm: bytes) -> None:
    """The README's semantics on a hand-made case, checked against literal expectations."""
    cfg = TenantConfig.from_mapping(
        {
            "org": 7,
            "interval_s": 30,
            "queries": [
                {"id": "by_team", "q": "sum:cpu{host:a*,!env:prod} by {team,zone}"},
                {"id": "n", "q": "count:cpu{canary}"},
                {"id": "lo", "q": "min:cpu{*}"},
            ],
        }
    )
    m = Message(
        7,
        (
            Series("cpu", ("host:ab", "team:x", "team:y", "canary"), ((-1, 1.5), (29, math.nan), (30, 2.0), (-31, -0.0))),
            Series("cpu", ("host:ab", "env:prod", "team:x"), ((0, 100.0),)),
            Series("cpu", ("host:b",), ((0, 0.0),)),
        ),
    )
    host = KernelHost(generic_wasm, cfg)
    res = host.process([encode(m)])
    assert (res.accepted, res.points, res.nonfinite) == (1, 6, 1)
    rows = {(r.query, r.bucket, r.group): r.value for r in host.flush()}
    assert rows[("by_team", -30, "team:x,zone:N/A")] == 1.5
    assert rows[("by_team", -30, "team:y,zone:N/A")] == 1.5
    assert rows[("by_team", 30, "team:x,zone:N/A")] == 2.0
    assert math.copysign(1, rows[("by_team", -60, "team:x,zone:N/A")]) == 1  # +0.0 + -0.0 = +0.0
    assert rows[("n", -30, "")] == 1.0 and rows[("n", 30, "")] == 1.0
    assert rows[("lo", 0, "")] == 0.0  # the env:prod series is not filtered for lo
    assert math.copysign(1, rows[("lo", -60, "")]) == -1  # -0.0 is the first (and only) value there
    assert ("by_team", 0, "team:x,zone:N/A") not in rows  # only NaN landed there
    assert host.flush() == []  # flushed buckets are forgotten


@pytest.mark.parametrize("name", ["w1", "w2"])
def test_workloads_agree_with_the_oracle(generic_wasm: bytes, name: str) -> None:
    wl = load_workload(REPO / "configs" / "workloads" / f"{name}.yaml")
    payloads = [encode(m) for m in generate(wl, 30, seed=11)]
    ref = oracle.aggregate(wl.tenant, payloads)
    for batch in (1, 7, 64):
        host = KernelHost(generic_wasm, wl.tenant)
        rep = replay(host, payloads, batch)
        assert output_hash(rep.rows) == output_hash(ref.rows), f"batch size {batch}"
        assert (rep.points, rep.nonfinite) == (ref.points, ref.nonfinite)
    assert len(ref.rows) > 100


@pytest.mark.parametrize("order", [(0.0, -0.0), (-0.0, 0.0)])
def test_min_and_max_keep_the_first_of_equal_values(generic_wasm: bytes, order: tuple[float, float]) -> None:
    cfg = TenantConfig.from_mapping({"org": 7, "interval_s": 30, "queries": [{"id": "lo", "q": "min:m{*}"}, {"id": "hi", "q": "max:m{*}"}]})
    msgs = [Message(7, (Series("m", (), ((0, order[0]), (1, order[1]))),))]
    host = KernelHost(generic_wasm, cfg)
    host.process([encode(m) for m in msgs])
    for rows in (host.flush(), oracle.aggregate_messages(cfg, msgs).rows):
        signs = {r.query: math.copysign(1, r.value) for r in rows}
        assert signs == {"lo": math.copysign(1, order[0]), "hi": math.copysign(1, order[0])}


def test_groups_are_identified_by_their_text(generic_wasm: bytes) -> None:
    """Two tag combinations that render to the same group text are one group."""
    cfg = TenantConfig.from_mapping({"org": 7, "interval_s": 30, "queries": ["sum:m{*} by {a,b}"]})
    msgs = [Message(7, (Series("m", ("a:1,b:2", "b:3"), ((0, 1.0),)), Series("m", ("a:1", "b:2,b:3"), ((0, 2.0),))))]
    host = KernelHost(generic_wasm, cfg)
    host.process([encode(m) for m in msgs])
    assert [(r.group, r.value) for r in host.flush()] == [("a:1,b:2,b:3", 3.0)]
    assert [(r.group, r.value) for r in oracle.aggregate_messages(cfg, msgs).rows] == [("a:1,b:2,b:3", 3.0)]


def test_a_series_spanning_many_buckets_is_linear(generic_wasm: bytes) -> None:
    """200,000 one-second buckets in one series: finishes well within the deadline."""
    cfg = TenantConfig.from_mapping({"org": 7, "interval_s": 1, "queries": ["count:cpu{*}"]})
    n = 200_000
    m = Message(7, (Series("cpu", (), tuple((t, 1.0) for t in range(n))),))
    host = KernelHost(generic_wasm, cfg)
    assert host.process([encode(m)]).points == n
    rows = host.flush()
    assert len(rows) == n and {r.value for r in rows} == {1.0}


def test_state_stays_bounded_under_churn(generic_wasm: bytes) -> None:
    """Unique strings in every message (matching no query, or as ever-new groups) with a
    flush after each batch: memory stays under a small limit, and results stay right."""
    from actors.config import SandboxConfig

    cfg = TenantConfig.from_mapping({"org": 7, "interval_s": 10, "queries": ["count:cpu{*} by {req}"]})
    host = KernelHost(generic_wasm, cfg, SandboxConfig(memory_limit_bytes=16 * 2**20))
    total = 0
    for b in range(300):
        noise = tuple(Series("other", (f"req:{b}-{i}-{'x' * 30}",), ((b * 10, 1.0),)) for i in range(100))
        groups = tuple(Series("cpu", (f"req:{b}-{i}-{'y' * 30}",), ((b * 10, 1.0),)) for i in range(100))
        host.process([encode(Message(7, noise + groups))], batch=f"churn-{b}")
        rows = host.flush(watermark=b * 10 + 10)
        assert len(rows) == 100 and all(r.bucket == b * 10 for r in rows)
        total += len(rows)
    assert total == 30_000
    assert host._memory.data_len(host.store) < 16 * 2**20


def test_compaction_keeps_live_groups_intact(generic_wasm: bytes) -> None:
    """Churning groups force compactions while a few groups stay open the whole time
    (multi-valued and missing tags among them): every row still equals the oracle's."""
    cfg = TenantConfig.from_mapping({"org": 7, "interval_s": 10, "queries": ["sum:cpu{*} by {host,dc}", "count:cpu{!dc:x} by {dc}"]})
    msgs = []
    for b in range(120):
        churn = tuple(Series("cpu", (f"host:c{b}-{i}", "dc:x"), ((b * 10, 0.5),)) for i in range(60))
        stable = (
            Series("cpu", ("host:s1", "dc:a", "dc:b"), ((1_000_000, 0.1 * b),)),
            Series("cpu", ("host:s2",), ((1_000_001, 1.0 + b),)),
        )
        msgs.append(Message(7, churn + stable))
    host = KernelHost(generic_wasm, cfg)
    rows = []
    for b, m in enumerate(msgs):
        host.process([encode(m)])
        rows += host.flush(watermark=b * 10 + 10)
    rows += host.flush()
    assert output_hash(rows) == output_hash(oracle.aggregate_messages(cfg, msgs).rows)
    # Compaction runs once 4,096 dead slots outnumber the live: here from about batch 69 on.
    assert len(rows) == 120 * 60 + 3 + 3


def test_watermark_flush_emits_only_closed_buckets(generic_wasm: bytes) -> None:
    cfg = TenantConfig.from_mapping({"org": 7, "interval_s": 10, "queries": ["sum:cpu{*}"]})
    host = KernelHost(generic_wasm, cfg)
    host.process([encode(Message(7, (Series("cpu", (), ((0, 1.0), (10, 2.0), (25, 3.0))),)))])
    assert [(r.bucket, r.value) for r in host.flush(watermark=20)] == [(0, 1.0), (10, 2.0)]
    assert [(r.bucket, r.value) for r in host.flush()] == [(20, 3.0)]
