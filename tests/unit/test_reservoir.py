"""Reservoirs (Algorithm R) and the shadow sampler's training / holdout split."""

from __future__ import annotations

import pickle
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.errors import ConfigError
from actors.reservoir import Reservoir, ShadowSampler, ShadowSettings, holdout_point, in_holdout


def msg(i: int) -> bytes:
    return b"message-%d" % i


def test_capacity_bounds_the_sample() -> None:
    rng = random.Random(1)
    r = Reservoir(8)
    for i in range(5):
        r.offer(msg(i), rng)
    assert len(r) == 5 and r.items() == [msg(i) for i in range(5)] and r.seen == 5
    for i in range(5, 10_000):
        r.offer(msg(i), rng)
        assert len(r) <= 8
    assert len(r) == 8 and r.seen == 10_000
    assert len(r._items) == 8  # what is held, not just what is shown
    empty = Reservoir(0)
    empty.offer(b"x", rng)
    assert len(empty) == 0 and empty.seen == 1


def test_sample_is_roughly_uniform() -> None:
    # Fixed seed: the statistic is a fixed number, this cannot flake. The bound is loose
    # (chi-square with 99 degrees of freedom has mean 99 and sd 14).
    rng = random.Random(12345)
    n, k, trials = 100, 10, 3000
    hits = [0] * n
    for _ in range(trials):
        r = Reservoir(k)
        for i in range(n):
            r.offer(i.to_bytes(1, "big"), rng)
        for item in r.items():
            hits[item[0]] += 1
    expected = trials * k / n
    chi2 = sum((h - expected) ** 2 / expected for h in hits)
    assert chi2 < 160, chi2
    # Early and late items are held alike (a biased reservoir favours one end).
    assert abs(sum(hits[:50]) - sum(hits[50:])) < 0.05 * trials * k


def test_equal_seeds_give_equal_samples() -> None:
    def run(seed: int) -> tuple[list[bytes], list[bytes]]:
        s = ShadowSampler(ShadowSettings(training_capacity=16, holdout_capacity=8, sample_rate=0.5))
        rng = random.Random(seed)
        for start in range(0, 2000, 64):
            s.offer(7, [msg(i) for i in range(start, start + 64)], rng)
        return s.training(7), s.holdout(7)

    assert run(3) == run(3)
    assert run(3) != run(4)


@given(st.lists(st.lists(st.binary(max_size=12), max_size=20), max_size=10), st.integers(0, 2**32), st.integers(0, 2**32))
def test_a_message_is_never_in_both_sets(batches: list[list[bytes]], seed_a: int, seed_b: int) -> None:
    settings = ShadowSettings(training_capacity=4, holdout_capacity=4, holdout_fraction=0.5, sample_rate=0.7)
    # Two shards (or one before and after a restart) sampling the same traffic with different RNGs.
    a, b = ShadowSampler(settings), ShadowSampler(settings)
    rng_a, rng_b = random.Random(seed_a), random.Random(seed_b)
    for batch in batches:
        a.offer(1, batch, rng_a)
        b.offer(1, batch, rng_b)
        b.offer(1, batch, rng_b)  # replayed
    training = set(a.training(1)) | set(b.training(1))
    holdout = set(a.holdout(1)) | set(b.holdout(1))
    assert not training & holdout
    assert all(in_holdout(p, 0.5) for p in holdout) and not any(in_holdout(p, 0.5) for p in training)


def test_holdout_share_follows_the_fraction() -> None:
    for fraction in (0.0, 0.1, 0.2, 0.5, 0.9):
        n = 20_000
        share = sum(in_holdout(msg(i), fraction) for i in range(n)) / n
        assert abs(share - fraction) < 0.015, (fraction, share)
    s = ShadowSampler(ShadowSettings(holdout_fraction=0.2))
    s.offer(1, [msg(i) for i in range(20_000)], random.Random(0))
    st_ = s.stats(1)
    assert st_["seen"] == st_["sampled"] == 20_000
    assert abs(st_["holdout_seen"] / 20_000 - 0.2) < 0.015
    assert st_["training_seen"] + st_["holdout_seen"] == 20_000
    assert (st_["training_size"], st_["holdout_size"]) == (512, 256)


def test_split_depends_on_bytes_only() -> None:
    # Fixed across processes and versions: a keyed BLAKE2b, not Python's salted hash().
    assert holdout_point(b"") == holdout_point(b"")
    assert 0.0 <= holdout_point(b"abc") < 1.0
    assert holdout_point(b"abc") != holdout_point(b"abd")


def test_sample_rate_thins_the_stream() -> None:
    s = ShadowSampler(ShadowSettings(sample_rate=0.25))
    s.offer(1, [msg(i) for i in range(8000)], random.Random(5))
    stats = s.stats(1)
    assert stats["seen"] == 8000 and abs(stats["sampled"] - 2000) < 150


def test_orgs_are_separate_and_can_be_dropped() -> None:
    s = ShadowSampler()
    rng = random.Random(0)
    s.offer(1, [msg(i) for i in range(100)], rng)
    s.offer(2, [b"other"], rng)
    assert s.orgs() == [1, 2]
    assert set(s.training(2)) | set(s.holdout(2)) == {b"other"}
    assert b"other" not in set(s.training(1)) | set(s.holdout(1))
    s.drop(2)
    s.drop(99)
    assert s.orgs() == [1] and s.training(2) == [] and s.holdout(2) == []
    assert s.stats(2) == {"seen": 0, "sampled": 0, "training_seen": 0, "training_size": 0, "holdout_seen": 0, "holdout_size": 0}


def test_export_import_round_trip_continues_identically() -> None:
    settings = ShadowSettings(training_capacity=8, holdout_capacity=4)
    a = ShadowSampler(settings)
    rng = random.Random(9)
    a.offer(3, [msg(i) for i in range(100)], rng)
    data = pickle.loads(pickle.dumps(a.export(3)))
    b = ShadowSampler(settings)
    b.import_(3, data)
    assert (b.training(3), b.holdout(3), b.stats(3)) == (a.training(3), a.holdout(3), a.stats(3))
    # The moved sample continues exactly as the original would have.
    rng_a, rng_b = random.Random(10), random.Random(10)
    more = [msg(i) for i in range(100, 300)]
    a.offer(3, more, rng_a)
    b.offer(3, more, rng_b)
    assert (b.training(3), b.holdout(3), b.stats(3)) == (a.training(3), a.holdout(3), a.stats(3))


def test_export_of_unknown_org_is_empty_and_creates_nothing() -> None:
    s = ShadowSampler()
    data = s.export(5)
    assert s.orgs() == []
    s.import_(6, data)
    assert s.stats(6)["seen"] == 0 and s.training(6) == []


def test_import_keeps_capacities_and_resplits_under_another_fraction() -> None:
    a = ShadowSampler(ShadowSettings(training_capacity=64, holdout_capacity=64, holdout_fraction=0.5))
    a.offer(1, [msg(i) for i in range(1000)], random.Random(2))
    b = ShadowSampler(ShadowSettings(training_capacity=8, holdout_capacity=8, holdout_fraction=0.2))
    b.import_(1, a.export(1))
    assert len(b.training(1)) == 64  # sampled with capacity 64: stays 64 (uniform)
    assert all(not in_holdout(p, 0.2) for p in b.training(1))
    assert all(in_holdout(p, 0.2) for p in b.holdout(1))
    assert 0 < len(b.holdout(1)) < 64  # those between 0.2 and 0.5 are dropped


def test_bad_imports_are_refused() -> None:
    s = ShadowSampler()
    good = ShadowSampler(ShadowSettings(training_capacity=2, holdout_capacity=2))
    good.offer(1, [msg(i) for i in range(10)], random.Random(0))
    base = good.export(1)

    def variant(**changes: Any) -> dict[str, Any]:
        d: dict[str, Any] = pickle.loads(pickle.dumps(base))
        for k, v in changes.items():
            if v is None:
                del d[k]
            else:
                d[k] = v
        return d

    bad = [
        variant(version=2),
        variant(seen=None),
        variant(extra=1),
        variant(seen=-1),
        variant(sampled=base["sampled"] + 1),
        variant(training={**base["training"], "items": ["text"]}),
        variant(training={**base["training"], "items": [b"a", b"b", b"c"]}),
        variant(training={**base["training"], "capacity": 2**30}),
        variant(holdout={"capacity": 2, "seen": 0}),
        [],
    ]
    for d in bad:
        with pytest.raises(ValueError):
            s.import_(1, d)  # type: ignore[arg-type]
    assert s.orgs() == []


def test_settings_validation() -> None:
    assert ShadowSettings().validate() == ShadowSettings(512, 256, 0.2, 1.0)
    assert ShadowSettings.from_mapping({"holdout_fraction": 0, "sample_rate": 1}).holdout_fraction == 0
    cases: list[tuple[dict[str, Any], str]] = [
        ({"training_capacity": 0}, "training_capacity"),
        ({"holdout_capacity": 2**21}, "holdout_capacity"),
        ({"training_capacity": 1.5}, "training_capacity"),
        ({"holdout_fraction": 1.0}, "holdout_fraction"),
        ({"holdout_fraction": -0.1}, "holdout_fraction"),
        ({"holdout_fraction": float("nan")}, "holdout_fraction"),
        ({"holdout_fraction": "0.2"}, "holdout_fraction"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": 1.01}, "sample_rate"),
        ({"sample_rate": True}, "sample_rate"),
        ({"sample_rat": 0.5}, "unknown key"),
    ]
    for data, words in cases:
        with pytest.raises(ConfigError, match=words) as e:
            ShadowSettings.from_mapping(data, "shard.yaml: shadow")
        assert str(e.value).startswith("shard.yaml: shadow: ")
    with pytest.raises(ConfigError, match="expected a mapping"):
        ShadowSettings.from_mapping([], "x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        ShadowSampler(ShadowSettings(holdout_capacity=0))
