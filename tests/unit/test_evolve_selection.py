"""Parent selection, migration, stagnation and the archive: pure and deterministic given the RNG."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.evolve.archive import Archive, similarity
from actors.evolve.record import CandidateRecord
from actors.evolve.selection import choose_parent, migrate, parent_weights, ranked, reseed_from, stagnant
from tests.support.records import record


def rec(id: str, fitness: float | None, island: int = 0, source: str | None = None, status: str | None = None) -> CandidateRecord:
    return record(
        id,
        f"// {id}\n" if source is None else source,
        island=island,
        status=status or ("accepted" if fitness is not None else "rejected"),
        ratio_to_generic=fitness,
    )


fitnesses = st.lists(st.one_of(st.none(), st.floats(0.1, 10.0)), min_size=1, max_size=30)
alphas = st.floats(0.0, 20.0)


def population(fs: list[float | None]) -> list[CandidateRecord]:
    return [rec(f"c{i:02d}", f) for i, f in enumerate(fs)]


# -- parent weights --------------------------------------------------------------------


@given(fitnesses, alphas, st.lists(st.integers(0, 50), min_size=30, max_size=30), st.floats(0.0, 5.0))
def test_weights_sum_to_one(fs: list[float | None], alpha: float, children: list[int], penalty: float) -> None:
    pop = population(fs)
    counts = {m.id: children[i] for i, m in enumerate(pop)}
    w = parent_weights(pop, alpha, counts, penalty)
    assert len(w) == len(pop)
    assert all(x >= 0 for _, x in w)
    assert math.isclose(math.fsum(x for _, x in w), 1.0, rel_tol=1e-9)


@given(fitnesses)
def test_alpha_zero_is_uniform(fs: list[float | None]) -> None:
    w = parent_weights(population(fs), 0.0)
    assert all(math.isclose(x, 1 / len(fs)) for _, x in w)


@given(st.lists(st.floats(0.1, 10.0), min_size=2, max_size=30), alphas, alphas)
def test_larger_alpha_concentrates_on_rank_one(fs: list[float], a1: float, a2: float) -> None:
    lo, hi = sorted((a1, a2))
    pop = population(list(fs))
    w_lo, w_hi = parent_weights(pop, lo), parent_weights(pop, hi)
    assert w_lo[0][0] == w_hi[0][0] == ranked(pop)[0]
    assert w_hi[0][1] >= w_lo[0][1] - 1e-12
    assert parent_weights(pop, 60.0)[0][1] > 0.99


def test_ranking_is_fitness_then_id() -> None:
    pop = [rec("b", 1.5), rec("a", 1.5), rec("c", 2.0), rec("d", None)]
    assert [m.id for m in ranked(pop)] == ["c", "a", "b", "d"]
    assert [m.id for m, _ in parent_weights(pop, 1.0)] == ["c", "a", "b", "d"]


@given(st.lists(st.floats(0.1, 10.0), min_size=2, max_size=20), alphas, st.data())
def test_child_penalty_lowers_a_parents_weight(fs: list[float], alpha: float, data: st.DataObject) -> None:
    pop = population(list(fs))
    victim = data.draw(st.sampled_from(pop))
    children = data.draw(st.integers(1, 20))
    before = dict((m.id, w) for m, w in parent_weights(pop, alpha))
    after = dict((m.id, w) for m, w in parent_weights(pop, alpha, {victim.id: children}, 0.5))
    if before[victim.id] > 0:
        assert after[victim.id] < before[victim.id]
    assert all(after[m.id] >= before[m.id] - 1e-12 for m in pop if m.id != victim.id)


@given(fitnesses, alphas, st.integers(0, 2**32))
def test_same_seed_same_choices(fs: list[float | None], alpha: float, seed: int) -> None:
    pop = population(fs)
    r1, r2 = random.Random(seed), random.Random(seed)
    first = [choose_parent(r1, pop, alpha, {"c00": 3}, 0.2).id for _ in range(20)]
    second = [choose_parent(r2, list(reversed(pop)), alpha, {"c00": 3}, 0.2).id for _ in range(20)]
    assert first == second  # the input's order does not matter either
    assert r1.getstate() == r2.getstate()  # one draw per choice


def test_choose_parent_follows_weights() -> None:
    pop = population([3.0, 2.0, 1.0])
    rng = random.Random(7)
    picks = [choose_parent(rng, pop, 2.0).id for _ in range(4000)]
    share = picks.count("c00") / len(picks)
    assert abs(share - 1 / (1 + 1 / 4 + 1 / 9)) < 0.03
    assert set(picks) == {"c00", "c01", "c02"}
    with pytest.raises(ValueError):
        choose_parent(rng, [], 1.0)
    with pytest.raises(ValueError):
        parent_weights(pop, -1.0)


# -- migration, stagnation, reseeding -------------------------------------------------------


def test_ring_migration_sends_each_islands_best_to_the_next() -> None:
    islands = [[rec(f"i{i}-{j}", 1.0 + i + j / 10, island=i) for j in range(3)] for i in range(3)]
    got = migrate(islands, k_best=1)
    assert [[m.id for m in r] for r in got] == [["i2-2"], ["i0-2"], ["i1-2"]]
    got2 = migrate(islands, k_best=2)
    assert [[m.id for m in r] for r in got2] == [["i2-2", "i2-1"], ["i0-2", "i0-1"], ["i1-2", "i1-1"]]
    assert migrate([islands[0]]) == [[]]
    assert migrate([]) == []


def test_migration_skips_unfit_members_and_sources_already_held() -> None:
    shared = "fn shared() {}\n"
    a = [rec("a1", 2.0, source=shared), rec("a2", 1.5), rec("a3", None)]
    b = [rec("b1", 1.0, island=1, source=shared)]
    got = migrate([a, b], k_best=3)
    assert [m.id for m in got[1]] == ["a2"]  # a1's source is already on island 1; a3 has no fitness
    assert [m.id for m in got[0]] == []  # b1's source is already on island 0


def test_stagnation() -> None:
    assert not stagnant([1.0, 1.1], 3)  # too short to tell
    assert stagnant([1.0, 1.2, 1.2, 1.2, 1.2], 3)
    assert not stagnant([1.0, 1.2, 1.2, 1.3], 3)
    assert not stagnant([1.0, 1.0, 1.0, 1.01], 3)
    assert stagnant([1.0, 1.0, 1.0, 1.01], 3, min_improvement=0.05)
    assert stagnant([None, None, None, None], 3)  # nothing accepted for s generations
    assert not stagnant([None, None, None, 1.0], 3)
    with pytest.raises(ValueError):
        stagnant([1.0], 0)


def test_reseed_from_takes_the_best_of_the_other_islands() -> None:
    islands = [
        [rec("a", 1.1, island=0, source="x")],
        [rec("b", 1.9, island=1, source="x"), rec("b2", 1.4, island=1)],
        [rec("c", 1.5, island=2), rec("c2", None, island=2)],
    ]
    assert reseed_from(islands, 2) is islands[1][0]
    chosen = reseed_from(islands, 0)  # b holds island 0's own source: skip to the next best elsewhere
    assert chosen is not None and chosen.id == "c"
    assert reseed_from([[rec("a", 1.0)]], 0) is None
    with pytest.raises(IndexError):
        reseed_from(islands, 3)


# -- archive --------------------------------------------------------------------------


def family(f: int, variant: int = -1) -> str:
    """Forty lines of one 'idea'; ``variant`` rewrites one line of it (a near duplicate)."""
    lines = [f"fn f{f}_{i}(x: u64) -> u64 {{ x.wrapping_mul({f * 31 + i}) ^ (x >> {i % 7}) }}" for i in range(40)]
    if variant >= 0:
        lines[variant % 40] = f"fn f{f}_{variant % 40}(x: u64) -> u64 {{ x.rotate_left({variant}) }}"
    return "\n".join(lines)


def test_similarity_sees_through_formatting_and_comments() -> None:
    a = family(1)
    assert similarity(a, a) == 1.0
    assert similarity(a, "// a comment\n" + a.replace(" ", "  ").replace("\n", "\n\n")) == 1.0
    assert similarity(a, family(1, 3)) >= 0.85
    assert similarity(a, family(2)) < 0.2


def test_archive_keeps_distinct_sources_and_evicts_near_duplicates() -> None:
    arc = Archive(capacity=5, threshold=0.8)
    for f in range(3):
        adm = arc.admit(rec(f"fam{f}", 1.0 + f / 10, source=family(f)))
        assert adm.admitted, adm.reason
        arc = adm.archive
    assert arc.ids() == ["fam2", "fam1", "fam0"]
    worse_twin = arc.admit(rec("twin-worse", 1.05, source=family(1, 5)))
    assert not worse_twin.admitted and "fam1" in worse_twin.reason and worse_twin.archive is arc
    better_twin = arc.admit(rec("twin-better", 1.5, source=family(1, 5)))
    assert better_twin.admitted and better_twin.evicted == ("fam1",)
    assert better_twin.archive.ids() == ["twin-better", "fam2", "fam0"]
    same = better_twin.archive.admit(rec("copy", 9.0, source=family(2)))
    assert same.admitted and same.evicted == ("fam2",)  # an exact copy counts as fully similar
    assert not arc.admit(rec("rejected", None, source=family(9))).admitted
    assert not arc.admit(rec("fam0", 5.0, source=family(8))).admitted  # ids are unique


def test_archive_capacity_evicts_the_worst() -> None:
    arc = Archive(capacity=3, threshold=0.8)
    for f in range(3):
        arc = arc.admit(rec(f"fam{f}", 1.0 + f, source=family(f))).archive
    low = arc.admit(rec("low", 0.5, source=family(7)))
    assert not low.admitted and "worst" in low.reason
    high = arc.admit(rec("high", 2.5, source=family(7)))
    assert high.admitted and high.evicted == ("fam0",)
    assert high.archive.ids() == ["fam2", "high", "fam1"]


@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(-1, 39), st.floats(0.5, 3.0)), max_size=40),
    st.integers(1, 6),
)
def test_archive_invariants(offers: list[tuple[int, int, float]], capacity: int) -> None:
    arc = Archive(capacity=capacity, threshold=0.8)
    for n, (f, variant, fit) in enumerate(offers):
        arc = arc.admit(rec(f"c{n}", fit, source=family(f, variant))).archive
        assert len(arc) <= capacity
        assert [e.id for e in sorted(arc.entries, key=lambda e: (-e.fitness, e.id))] == arc.ids()
        sources = [e.source for e in arc.entries]
        assert all(similarity(a, b) < 0.8 for i, a in enumerate(sources) for b in sources[i + 1 :])
    assert Archive.from_json(json.loads(json.dumps(arc.to_json()))) == arc


def test_inspirations_are_distinct_deterministic_and_exclude_the_parent() -> None:
    arc = Archive(capacity=10, threshold=0.8)
    for f in range(6):
        arc = arc.admit(rec(f"fam{f}", 1.0 + f, source=family(f))).archive
    a = [e.id for e in arc.inspirations(random.Random(3), 3, exclude_id="fam5")]
    b = [e.id for e in arc.inspirations(random.Random(3), 3, exclude_id="fam5")]
    assert a == b and len(set(a)) == 3 and "fam5" not in a
    assert len(arc.inspirations(random.Random(3), 50)) == 6
    assert arc.inspirations(random.Random(3), 0) == []
