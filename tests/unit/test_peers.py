"""The peers (pyarrow, Polars, DuckDB) against the oracle, and the verdicts of ``compare``.

Every peer in every mode must agree with the oracle ``exact`` or ``within-tolerance``
(summation order differs), never ``wrong``: on small W1 and W2 traffic and on hand-made
edge cases. No wasm, no Ray."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from actors import peers
from actors.config import TenantConfig
from actors.loading import load_workload
from actors.oracle import aggregate_messages
from actors.output import Row, output_hash
from actors.payload import Message, Series
from actors.workload import generate

REPO = Path(__file__).resolve().parents[2]
CASES = [(peer, mode) for peer in peers.PEERS for mode in peers.MODES]


def tenant(interval_s: int, *queries: str) -> TenantConfig:
    return TenantConfig.from_mapping({"org": 1, "interval_s": interval_s, "queries": list(queries)})


def series(metric: str, tags: list[str], points: list[tuple[int, float]]) -> Series:
    return Series(metric, tuple(tags), tuple(points))


def agree(cfg: TenantConfig, messages: list[Message], peer: str, mode: str) -> peers.Agreement:
    reference = aggregate_messages(cfg, messages).rows
    rows = peers.run(peer, mode, cfg, peers.prepare(cfg, messages))
    verdict = peers.compare(rows, reference, cfg)
    assert verdict.verdict in ("exact", "within-tolerance"), f"{peer} {mode}: {verdict.detail}"
    return verdict


@pytest.fixture(scope="module", params=["w1", "w2"])
def workload(request: pytest.FixtureRequest) -> tuple[TenantConfig, peers.Prepared, list[Row]]:
    """20 messages of 1,000 points, prepared once, and the oracle's rows (computed once)."""
    w = load_workload(REPO / "configs" / "workloads" / f"{request.param}.yaml")
    messages = list(generate(w, 20))
    return w.tenant, peers.prepare(w.tenant, messages), aggregate_messages(w.tenant, messages).rows


@pytest.mark.parametrize(("peer", "mode"), CASES)
def test_generated_traffic(workload: tuple[TenantConfig, peers.Prepared, list[Row]], peer: str, mode: str) -> None:
    cfg, prepared, reference = workload
    verdict = peers.compare(peers.run(peer, mode, cfg, prepared), reference, cfg)
    assert verdict.verdict in ("exact", "within-tolerance"), f"{peer} {mode}: {verdict.detail}"


# Every filter form, 0-3 group-by keys, keys with several values, missing keys, bare tags,
# values containing ':' and ',' and non-ASCII text.
EDGE = tenant(
    30,
    "sum:cpu{*}",
    "count:cpu{host:a}",
    "min:cpu{env:prod*}",
    "max:cpu{!env:staging}",
    "avg:cpu{!env:st*}",
    "sum:cpu{canary}",
    "count:cpu{!canary} by {host}",
    "sum:cpu{*} by {host,region}",
    "count:cpu{env:*} by {region,env,host}",
    "sum:mem{host:a,!canary} by {zone}",
    "max:cpu{host:a,host:a}",
    "min:cpu{host:a,!host:a}",
    "sum:cpu{k:v:w}",
    "count:cpu{*} by {k}",
    "avg:cpu{x:é*} by {x}",
    "count:cpu{x:*,!x:é*}",
    "sum:cpu{*} by {a,b}",
    "max:nobody{*} by {host}",
    "sum:cpu{host:a,env:prod}",
    "count:cpu{host:a,region:e*,!canary} by {env}",
)
INF, NAN = math.inf, math.nan
EDGE_MESSAGES = [
    Message(
        1,
        (
            series("cpu", ["host:a", "region:eu", "region:us", "env:prod", "canary"], [(0, 1.0), (29, 2.5), (30, NAN), (-1, 4.0), (-30, INF), (-31, -6.5)]),
            series("cpu", ["host:a", "host:a", "region:eu", "region:eu", "env:staging"], [(1, 7.0), (59, -INF), (60, 8.5)]),
            series("cpu", [], [(5, 9.0), (-29, 10.0)]),
            series("cpu", ["canary"], [(7, 11.0)]),
            series("disk", ["host:a"], [(7, 12.0)]),
            series("cpu", ["host:b", "env:prod-eu", "env:prod", "zone:z1"], []),
        ),
    ),
    Message(1, ()),
    Message(
        1,
        (
            series("mem", ["host:a", "zone:z1", "zone:z2"], [(3, 13.0), (31, 14.0), (33, NAN)]),
            series("mem", ["host:a", "zone:z1", "canary"], [(3, 15.0)]),
            series("cpu", ["k:v:w", "x:éa", "x:", ":odd", "env:"], [(2**62 - 1, 16.0), (-(2**62), 17.5)]),
            series("cpu", ["x:ea", "host:b"], [(10, 18.0), (40, 19.0)]),
            # Two combinations render to one text, "a:1,b:2,b:3": the oracle counts both.
            series("cpu", ["a:1", "a:1,b:2", "b:2,b:3", "b:3"], [(11, 20.0), (12, 21.0)]),
            series("cpu", ["host:a", "env:prod", "region:us"], [(14, NAN), (15, INF)]),
        ),
    ),
    Message(1, (series("cpu", ["host:a", "region:eu", "env:prod"], [(2, 22.0), (-2, 23.5), (88, 24.0), (90, 25.0)]),)),
]


@pytest.mark.parametrize(("peer", "mode"), CASES)
def test_edge_cases(peer: str, mode: str) -> None:
    # Halves and integers add exactly in any order: the peers must be bit-exact here.
    assert agree(EDGE, EDGE_MESSAGES, peer, mode).verdict == "exact"


@pytest.mark.parametrize(("peer", "mode"), CASES)
def test_odd_interval_and_nothing_finite(peer: str, mode: str) -> None:
    cfg = tenant(7, "count:cpu{*} by {host}", "sum:cpu{host:a}")
    messages = [
        Message(1, (series("cpu", ["host:a"], [(-15, 1.0), (-14, 2.0), (-8, 3.0), (-7, 4.0), (-1, 5.0), (0, 6.0), (6, 7.0), (7, 8.0)]),)),
        Message(1, (series("cpu", ["host:b"], [(1, NAN), (2, INF)]),)),
        Message(1, ()),
        Message(1, (series("cpu", ["canary"], [(3, 1.0)]), series("cpu", [], [(4, 2.0)]))),  # no by-key tag in the message
    ]
    assert agree(cfg, messages, peer, mode).verdict == "exact"


@pytest.mark.parametrize(("peer", "mode"), CASES)
def test_no_rows_at_all(peer: str, mode: str) -> None:
    cfg = tenant(30, "sum:cpu{host:a}")
    for messages in ([], [Message(1, ())], [Message(1, (series("mem", ["host:a"], [(1, 1.0)]), series("cpu", ["host:a"], [(1, NAN)])))]):
        assert peers.run(peer, mode, cfg, peers.prepare(cfg, messages)) == []


@pytest.mark.parametrize(("peer", "mode"), CASES)
def test_signed_zero_is_at_worst_within_tolerance(peer: str, mode: str) -> None:
    """min/max of 0.0 and -0.0 keep the first in the reference; engines may keep the other."""
    cfg = tenant(30, "min:cpu{*}", "max:cpu{*}", "sum:cpu{*}", "avg:cpu{*}")
    messages = [Message(1, (series("cpu", [], [(1, -0.0), (2, 0.0)]),)), Message(1, (series("cpu", [], [(31, 0.0), (32, -0.0)]),))]
    agree(cfg, messages, peer, mode)


def test_sums_are_normalized_to_positive_zero() -> None:
    cfg = tenant(30, "sum:cpu{*}")
    messages = [Message(1, (series("cpu", [], [(1, -0.0)]),))]
    for peer, mode in CASES:
        (row,) = peers.run(peer, mode, cfg, peers.prepare(cfg, messages))
        assert math.copysign(1.0, row.value) == 1.0, (peer, mode)


def test_unknown_peer_or_mode() -> None:
    cfg = tenant(30, "sum:cpu{*}")
    prepared = peers.prepare(cfg, [])
    with pytest.raises(ValueError, match="unknown peer"):
        peers.run("pandas", "bulk", cfg, prepared)
    with pytest.raises(ValueError, match="unknown mode"):
        peers.run("duckdb", "batch", cfg, prepared)


def test_engines_run_on_one_thread() -> None:
    assert peers.engine_threads()["duckdb"] == 1


# --- compare ------------------------------------------------------------------------------

CFG = tenant(30, "sum:cpu{*}", "count:cpu{*}", "min:cpu{*}", "avg:cpu{*}")
REF = [Row("q0", 0, "", 0.1 + 0.2), Row("q1", 0, "", 3.0), Row("q2", 30, "", -0.0), Row("q3", 30, "", 2.5)]


def test_compare_exact_means_equal_hash() -> None:
    got = list(reversed(REF))
    assert peers.compare(got, REF, CFG) == peers.Agreement("exact", "")
    assert output_hash(got) == output_hash(REF)


def test_compare_sum_reassociated_is_within_tolerance() -> None:
    got = [Row("q0", 0, "", 0.3), *REF[1:]]  # 0.1 + 0.2 != 0.3 in binary, by one ulp
    verdict = peers.compare(got, REF, CFG)
    assert verdict.verdict == "within-tolerance"
    assert "q0" in verdict.detail
    assert peers.compare(got, REF).verdict == "within-tolerance"


@pytest.mark.parametrize(
    ("got", "why"),
    [
        (REF[1:], "missing row"),
        ([*REF, Row("q0", 30, "", 1.0)], "extra row"),
        ([*REF, REF[0]], "twice"),
        ([REF[0], Row("q1", 0, "", 4.0), *REF[2:]], "q1"),
        ([Row("q0", 0, "", 0.3 * (1 + 1e-8)), *REF[1:]], "q0"),
        ([*REF[:3], Row("q3", 30, "", 2.5 + 1e-6)], "q3"),
        ([*REF[:2], Row("q2", 30, "", -1e-300), REF[3]], "q2"),
        ([Row("q0", 0, "", math.nan), *REF[1:]], "q0"),
        ([Row("q0", 0, "", math.inf), *REF[1:]], "q0"),
        ([Row("q0", 0, "ab", REF[0].value), *REF[1:]], "missing row"),
    ],
)
def test_compare_wrong(got: list[Row], why: str) -> None:
    verdict = peers.compare(got, REF, CFG)
    assert verdict.verdict == "wrong"
    assert why in verdict.detail


def test_compare_without_config_still_catches_a_count() -> None:
    got = [REF[0], Row("q1", 0, "", 4.0), *REF[2:]]
    assert peers.compare(got, REF).verdict == "wrong"


def test_compare_min_max_count_must_be_equal_but_zero_signs_pass() -> None:
    nudged = [*REF[:2], Row("q2", 30, "", -(2**-1074)), REF[3]]  # a tolerance would accept this
    assert peers.compare(nudged, REF, CFG).verdict == "wrong"
    flipped = [*REF[:2], Row("q2", 30, "", 0.0), REF[3]]
    verdict = peers.compare(flipped, REF, CFG)
    assert verdict.verdict == "within-tolerance"
    assert "q2" in verdict.detail
