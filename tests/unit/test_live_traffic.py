"""Traffic as agents send it: recent points, event time advancing with the stream, a small
share really late; batch-like history only when asked for. And a source's pool, which
goes on with the same timeline."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from actors.errors import ConfigError
from actors.loading import load_workload
from actors.oracle import aggregate
from actors.payload import decode, encode
from actors.traffic_source import pooled
from actors.workload import TrafficShape, generate

REPO = Path(__file__).resolve().parents[2]
W1 = load_workload(REPO / "configs" / "workloads" / "w1.yaml")


def test_every_message_carries_recent_points() -> None:
    t = W1.traffic
    msgs = list(generate(W1, 400, seed=3))
    for i, m in enumerate(msgs):
        now = t.start_ts + (i * t.step_s) // t.messages_per_window
        for s in m.series:
            ts = [p[0] for p in s.points]
            assert ts == sorted(ts) and len(ts) == t.points_per_series
            late = ts[-1] < now - t.jitter_s
            assert now - t.jitter_s - t.live_window_s <= ts[0] or late
            assert ts[-1] <= now


def test_the_shard_drops_few_points_with_the_default_lateness() -> None:
    payloads = [encode(m) for m in generate(W1, 600, seed=5)]
    res = aggregate(W1.tenant, payloads, 64, 60)
    assert res.points == 600_000
    assert 0 < res.late <= 0.001 * res.points


def test_history_is_there_when_asked_for_and_mostly_late_for_a_shard() -> None:
    hist = replace(W1, traffic=replace(W1.traffic, timing="history"))
    payloads = [encode(m) for m in generate(hist, 400, seed=5)]
    res = aggregate(W1.tenant, payloads, 64, 60)
    assert res.late > 0.3 * res.points


def test_late_share_and_timing_are_checked() -> None:
    with pytest.raises(ConfigError, match="timing"):
        TrafficShape(timing="yesterday").validate()
    with pytest.raises(ConfigError, match="late_share"):
        TrafficShape(late_share=2.0).validate()
    assert TrafficShape().event_s_per_message() == 10 / 20


def test_a_stream_starts_where_its_first_message_says() -> None:
    whole = list(generate(W1, 30, seed=9))
    t = W1.traffic
    later = list(generate(W1, 10, seed=9, first=20))
    now = t.start_ts + (20 * t.step_s) // t.messages_per_window
    assert max(p[0] for s in later[0].series for p in s.points) <= now
    assert len(whole) == 30


def test_a_source_pool_goes_on_with_the_workloads_timeline() -> None:
    stream = list(itertools.islice(pooled(W1, 4, pool=200), 600))
    direct = [encode(m) for m in generate(W1, 200, 4)]
    assert stream[:200] == direct
    span = round(200 * W1.traffic.event_s_per_message())
    for i in (200, 399, 599):
        a, b = decode(stream[i]), decode(direct[i % 200])
        k = i // 200
        assert [[p[0] - k * span for p in s.points] for s in a.series] == [[p[0] for p in s.points] for s in b.series]
    assert len(set(stream)) == 600  # new bytes each round: new samples for the shard
