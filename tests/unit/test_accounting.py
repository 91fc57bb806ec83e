"""Per-org accounting: the sliding rate under an injected clock, counters, checkpoints."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.accounting import OrgAccount, SlidingRate
from actors.errors import ConfigError


def test_steady_rate() -> None:
    r = SlidingRate(60.0)
    t = 1_000_000.0
    for i in range(1200):  # 10 messages every 0.1 s for 120 s: 100/s
        now = t + i * 0.1
        r.add(10, now)
        if i < 60:
            # Within one bucket (6 s) of the first event the span is one bucket: an underestimate, never a spike.
            assert r.rate(now) == pytest.approx(10 * (i + 1) / 6.0)
        else:
            assert r.rate(now) == pytest.approx(100, rel=0.02), (i, r.rate(now))
    assert r.rate(t + 119.9) == pytest.approx(100, rel=0.02)


def test_burst_then_silence_falls_to_zero_within_the_window() -> None:
    r = SlidingRate(60.0)
    assert r.rate(0.0) == 0.0
    r.add(600, 100.0)
    # Never divides by ~0: at the burst's instant the span is one bucket (6 s).
    assert r.rate(100.0) == pytest.approx(100.0)
    assert r.rate(130.0) == pytest.approx(600 / 30)
    # The burst's bucket is [96, 102): it leaves the window when the bucket of now starts 60 s
    # after it, at 156 (0.9 to 1.0 window after an event, by the bucket granularity).
    assert r.rate(155.9) == pytest.approx(600 / 55.9)
    assert r.rate(156.0) == 0.0
    assert r.rate(160.0) == 0.0  # a whole window later: nothing left
    assert r.rate(1e9) == 0.0
    r.add(60, 1000.0)
    # The window now spans the buckets from 972 (= (floor(1030 / 6) - 9) * 6), not from the first event ever.
    assert r.rate(1030.0) == pytest.approx(60 / 58)


def test_memory_is_bounded_and_a_late_clock_reading_is_clamped() -> None:
    r = SlidingRate(10.0)
    for i in range(100_000):
        r.add(1, i * 0.001)
    assert len(r._buckets) <= SlidingRate.BUCKETS
    r.add(5, 50.0)
    r.add(5, 40.0)  # the clock went back: counted at 50
    assert r.rate(10.0) == r.rate(50.0) > 0


def test_window_must_be_positive() -> None:
    for bad in (0, -1.0, float("inf"), float("nan"), True):
        with pytest.raises(ConfigError):
            SlidingRate(bad)
    with pytest.raises(ValueError):
        SlidingRate(1.0).add(-1, 0.0)


def test_counters_and_the_accounted_invariant() -> None:
    a = OrgAccount(msg_rate=SlidingRate(10.0))
    a.record_batch(64, 60, {"truncated": 3, "wrong_org": 1}, points=6000, nonfinite=2, late=5, now=1.0)
    a.record_batch(64, 64, {}, points=6400, nonfinite=0, late=0, now=2.0)
    a.record_batch(10, 9, {"truncated": 1, "empty": 0}, points=900, nonfinite=1, late=0, now=3.0)
    assert a.messages_received == 138 and a.messages_accepted == 133
    assert a.rejected == {"truncated": 4, "wrong_org": 1}
    assert a.accounted() == a.messages_received
    assert (a.points, a.nonfinite_points, a.late_points) == (13_300, 3, 5)
    a.record_rows(12, now=4.0)
    a.record_rows(0, now=5.0)
    assert (a.rows_emitted, a.flushes, a.last_flush) == (12, 2, 5.0)
    snap = a.snapshot(3.0)
    assert snap["msg_per_s"] == pytest.approx(138 / 2.0)
    assert (snap["points_in"], snap["points_nonfinite"], snap["points_late"]) == (13_300, 3, 5)
    assert json.loads(json.dumps(snap, allow_nan=False)) == snap


def test_an_inconsistent_batch_counts_nothing() -> None:
    a = OrgAccount()
    with pytest.raises(ValueError, match="accepted"):
        a.record_batch(10, 8, {"truncated": 1}, 0, 0, 0, now=0.0)
    with pytest.raises(ValueError, match="must be >= 0"):
        a.record_batch(10, 11, {"truncated": -1}, 0, 0, 0, now=0.0)
    with pytest.raises(ValueError):
        a.record_rows(-1, 0.0)
    assert a == OrgAccount() and a.snapshot(0.0)["msg_per_s"] == 0.0


@given(st.lists(st.tuples(st.integers(0, 100), st.dictionaries(st.sampled_from(["empty", "truncated", "overload"]), st.integers(0, 20))), max_size=30))
def test_accounted_equals_received_for_any_batches(batches: list[tuple[int, dict[str, int]]]) -> None:
    a = OrgAccount()
    for t, (accepted, rejected) in enumerate(batches):
        a.record_batch(accepted + sum(rejected.values()), accepted, rejected, 0, 0, 0, now=float(t))
    assert a.accounted() == a.messages_received
    assert all(n > 0 for n in a.rejected.values())


def test_modules_swaps_and_rollbacks() -> None:
    a = OrgAccount()
    a.record_module(1, "generic", 10.0)
    assert (a.module_version, a.module_origin, a.module_since, a.swaps) == (1, "generic", 10.0, 0)
    a.record_module(1, "generic", 11.0)  # recorded again after recovery: no change
    assert (a.module_since, a.swaps) == (10.0, 0)
    a.record_module(2, "evolved", 20.0)
    a.record_swap_rejection("shadow_mismatch")
    a.record_swap_rejection("shadow_mismatch")
    a.record_swap_rejection("slower")
    a.record_rollback()
    a.record_module(1, "generic", 30.0)
    assert (a.module_version, a.module_since, a.swaps, a.rollbacks) == (1, 30.0, 2, 1)
    assert a.swap_rejections == {"shadow_mismatch": 2, "slower": 1}


def test_state_round_trip() -> None:
    a = OrgAccount()
    a.record_batch(5, 4, {"bad_utf8": 1}, 40, 1, 2, now=1.0)
    a.record_rows(3, 2.0)
    a.record_module(7, "evolved", 3.0)
    a.record_swap_rejection("verify")
    state = json.loads(json.dumps(a.to_state()))  # checkpoints may go through JSON
    b = OrgAccount.from_state(state, window_s=5.0)
    assert b == a and b.to_state() == a.to_state()
    assert b.msg_rate.window_s == 5.0 and b.snapshot(2.0)["msg_per_s"] == 0.0  # the window starts afresh
    assert OrgAccount.from_state(OrgAccount().to_state()) == OrgAccount()


def test_bad_states_are_refused() -> None:
    good = OrgAccount(messages_received=3, messages_accepted=2, rejected={"empty": 1}).to_state()
    bad: list[dict[str, Any]] = [
        {**good, "version": 0},
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "points"},
        {**good, "points": -1},
        {**good, "points": 1.0},
        {**good, "flushes": True},
        {**good, "rejected": {"empty": "1"}},
        {**good, "rejected": [1]},
        {**good, "module_version": "7"},
        {**good, "module_since": True},
        {**good, "messages_received": 4},  # breaks accepted + rejected == received
    ]
    for state in bad:
        with pytest.raises(ValueError):
            OrgAccount.from_state(state)
