"""The service-regime measure's pure parts: the stream a sample becomes, the flush
schedule, and the ratio with its interval (the timed parts are in the integration tests)."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.kernel.abi import BatchResult, watermark
from actors.kernel.measure import Regime, Runner, ServiceStream, paired_ratio
from actors.payload import Message, Series, decode, encode, first_timestamps, shift_timestamps
from tests.support.shardkit import SMALL, traffic


def _times(p: bytes) -> list[int]:
    return [t for s in decode(p).series for t, _ in s.points]


@given(st.integers(-(2**40), 2**40), st.integers(1, 5000))
def test_shifting_moves_every_point_and_nothing_else(delta: int, seed: int) -> None:
    p = traffic(1, seed)[0]
    q = shift_timestamps(p, delta)
    a, b = decode(p), decode(q)
    assert [(s.metric, s.tags, [repr(v) for _, v in s.points]) for s in a.series] == [(s.metric, s.tags, [repr(v) for _, v in s.points]) for s in b.series]
    assert _times(q) == [t + delta for t in _times(p)]
    assert [f[2] for f in first_timestamps(q)] == [f[2] + delta for f in first_timestamps(p)]


def test_a_reservoir_sample_is_put_in_order_and_at_the_tenant_pace() -> None:
    live = traffic(40, 3)
    sample = random.Random(1).sample(live, len(live))  # slot order: time jumps about
    stream = ServiceStream(sample, Regime(pace_s=2.0))
    copy = stream.copy(0)
    anchors = [max(f[2] for f in first_timestamps(p)) for p in copy]
    assert anchors == sorted(anchors)
    assert all(b - a == 2 for a, b in itertools.pairwise(anchors))

    # Each message is moved as a whole: its points keep their offsets and values.
    def shape(p: bytes) -> list[object]:
        ts = _times(p)
        return [[t - ts[0] for t in ts], [(s.tags, [repr(v) for _, v in s.points]) for s in decode(p).series]]

    assert sorted(map(repr, map(shape, copy))) == sorted(map(repr, map(shape, live)))


def test_copies_continue_the_timeline_without_late_points() -> None:
    stream = ServiceStream(traffic(30, 5), Regime())
    first, second = stream.copy(0), stream.copy(1)
    assert max(max(_times(p)) for p in first) < min(min(_times(p)) for p in second) + 60
    assert [_times(p) for p in second] == [[t + stream.shift_s for t in _times(p)] for p in first]


def test_a_malformed_message_stays_as_it_is() -> None:
    stream = ServiceStream([b"\x07junk", *traffic(3, 1)], Regime(pace_s=1.0))
    assert b"\x07junk" in stream.copy(2)


def test_the_runner_flushes_when_the_watermark_passes_a_boundary() -> None:
    calls: list[int] = []

    class Fake:
        config = SMALL

        def __init__(self) -> None:
            self.ts = iter([100, 110, 131, 131, 200])

        def process(self, payloads: list[bytes], batch: str = "") -> BatchResult:
            return BatchResult(accepted=len(payloads), max_ts=next(self.ts))

        def flush(self, wm: int, batch: str = "") -> list[object]:
            calls.append(wm)
            return []

    r = Runner(Fake(), Regime(lateness_s=10, batch=1))  # type: ignore[arg-type]
    out = r.run([b"x"] * 5, clock=lambda: 0.0)
    assert calls == [watermark(100, 10, 30), watermark(131, 10, 30), watermark(200, 10, 30)] == [90, 120, 180]
    assert out.messages == 5


def test_the_ratio_and_its_interval() -> None:
    r = paired_ratio([1.0, 1.0, 1.0], [2.0, 2.0, 2.0])
    assert r.value == pytest.approx(2.0) and r.low == pytest.approx(2.0) and r.high == pytest.approx(2.0)
    noisy = paired_ratio([1.0, 1.1, 0.9, 1.0], [2.0, 2.1, 2.2, 1.9])
    assert noisy.low < noisy.value < noisy.high and noisy.rounds == 4
    assert math.isinf(paired_ratio([1.0], [2.0]).high)


@given(st.lists(st.floats(0.5, 2.0), min_size=2, max_size=20), st.floats(0.25, 4.0))
def test_a_constant_speed_up_is_inside_its_interval(base: list[float], k: float) -> None:
    r = paired_ratio([b / k for b in base], base)
    assert r.low <= k * (1 + 1e-9) and r.high >= k * (1 - 1e-9)


def test_regime_validation() -> None:
    from actors.errors import ConfigError

    for bad in (Regime(batch=0), Regime(screen_rounds=1), Regime(rounds=2, screen_rounds=3), Regime(pace_s=0.0), Regime(round_s=0)):
        with pytest.raises(ConfigError):
            bad.validate()
    assert Regime().validate() == Regime()


def test_a_message_without_points_keeps_its_place() -> None:
    empty = encode(Message(SMALL.org, (Series("cpu.usage", ("a:b",), ()),)))
    stream = ServiceStream([empty, *traffic(4, 2)], Regime(pace_s=1.0))
    assert empty in stream.copy(0) and len(stream.copy(1)) == 5
