"""Routing orgs to shards: rendezvous hashing (stable, minimal movement, balanced) and pins."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.errors import ConfigError
from actors.shard.router import Routing, rendezvous, weight

SHARDS = ["shard-0", "shard-1", "shard-2", "shard-3"]
orgs_st = st.sets(st.integers(min_value=0, max_value=2**63 - 1), min_size=1, max_size=200)


def test_the_weight_is_a_fixed_function_of_shard_and_org() -> None:
    # Pinned values: a change of the hash would silently re-route every org of a running cluster.
    assert weight("shard-0", 1042) == int.from_bytes(hashlib.sha256(b"shard-0\x001042").digest()[:8], "big")
    assert weight("shard-0", 1042) == 14717446130369366785
    assert weight("shard-0", 1042) != weight("shard-1", 1042)
    assert weight("shard-0", 1042) != weight("shard-0", 1043)


@given(orgs_st)
def test_rendezvous_is_deterministic_and_ignores_shard_order(orgs: set[int]) -> None:
    for org in orgs:
        first = rendezvous(org, SHARDS)
        assert first in SHARDS
        assert rendezvous(org, SHARDS) == first
        assert rendezvous(org, reversed(SHARDS)) == first
        assert rendezvous(org, iter(sorted(SHARDS, key=lambda s: weight(s, 7)))) == first
        assert Routing(list(SHARDS)).shard_for(org) == first


def test_rendezvous_picks_the_largest_weight() -> None:
    for org in range(200):
        assert rendezvous(org, SHARDS) == max(SHARDS, key=lambda s: weight(s, org))


@given(orgs_st, st.integers(min_value=1, max_value=len(SHARDS)))
def test_adding_a_shard_moves_only_orgs_to_the_new_shard(orgs: set[int], n: int) -> None:
    before = Routing(SHARDS[:n]).mapping(orgs)
    after = Routing([*SHARDS[:n], "shard-new"]).mapping(orgs)
    for org in orgs:
        assert after[org] in (before[org], "shard-new")


@given(orgs_st, st.integers(min_value=2, max_value=len(SHARDS)), st.data())
def test_removing_a_shard_moves_only_its_orgs(orgs: set[int], n: int, data: st.DataObject) -> None:
    shards = SHARDS[:n]
    gone = data.draw(st.sampled_from(shards))
    before = Routing(list(shards)).mapping(orgs)
    after = Routing([s for s in shards if s != gone]).mapping(orgs)
    for org in orgs:
        if before[org] == gone:
            assert after[org] != gone
        else:
            assert after[org] == before[org]


def test_adding_then_removing_a_shard_restores_the_mapping() -> None:
    orgs = range(2000)
    before = Routing(list(SHARDS)).mapping(orgs)
    assert Routing([*SHARDS, "x"]).mapping(orgs) != before  # something did move to x
    assert Routing([s for s in [*SHARDS, "x"] if s != "x"]).mapping(orgs) == before


def test_ten_thousand_orgs_spread_roughly_evenly() -> None:
    counts = Counter(Routing(list(SHARDS)).mapping(range(10_000)).values())
    assert set(counts) == set(SHARDS)
    assert all(2000 <= c <= 3000 for c in counts.values()), counts  # 2500 expected each


def test_a_pin_overrides_the_hash() -> None:
    r = Routing(list(SHARDS))
    org = 1042
    home = r.shard_for(org)
    other = next(s for s in SHARDS if s != home)
    r.pin(org, other)
    assert r.pins == {org: other}
    assert r.shard_for(org) == other
    assert r.mapping([org, 1, 2])[org] == other
    assert all(r.shard_for(o) == rendezvous(o, SHARDS) for o in range(100) if o != org)


def test_pinning_to_the_hash_choice_removes_the_pin() -> None:
    r = Routing(list(SHARDS))
    org = 7
    home = r.shard_for(org)
    r.pin(org, home)
    assert r.pins == {}  # no pin needed
    other = next(s for s in SHARDS if s != home)
    r.pin(org, other)
    r.pin(org, home)
    assert r.pins == {}
    assert r.shard_for(org) == home


def test_a_pin_survives_adding_a_shard() -> None:
    r = Routing(list(SHARDS))
    org = 99
    other = next(s for s in SHARDS if s != r.shard_for(org))
    r.pin(org, other)
    r.shards.append("shard-new")
    assert r.shard_for(org) == other


def test_a_pin_to_a_removed_shard_falls_back_to_the_hash() -> None:
    r = Routing(list(SHARDS))
    org = 99
    other = next(s for s in SHARDS if s != r.shard_for(org))
    r.pin(org, other)
    r.shards.remove(other)
    assert r.shard_for(org) == rendezvous(org, r.shards)


def test_pinning_to_an_unknown_shard_is_a_config_error() -> None:
    r = Routing(list(SHARDS))
    with pytest.raises(ConfigError, match="unknown shard 'nope'"):
        r.pin(1, "nope")
    assert r.pins == {}


def test_no_shards_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no shards"):
        rendezvous(1, [])
    with pytest.raises(ConfigError, match="no shards"):
        Routing([]).shard_for(1)
    with pytest.raises(ConfigError, match="no shards"):
        Routing([], pins={1: "gone"}).shard_for(1)
    with pytest.raises(ConfigError):
        Routing([]).pin(1, "shard-0")


@given(st.lists(st.integers(min_value=0, max_value=2**63 - 1), max_size=100))
def test_the_mapping_is_sorted_by_org(orgs: list[int]) -> None:
    m = Routing(list(SHARDS)).mapping(orgs)
    assert list(m) == sorted(set(orgs))
    assert all(m[o] == rendezvous(o, SHARDS) for o in orgs)
