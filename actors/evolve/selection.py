"""Parent selection, migration and stagnation for the island model; pure functions.

Why rank-based: fitness ratios of kernels cluster (1.02, 1.03, ...), so weights
proportional to fitness would be nearly uniform. Ranks give one knob, ``alpha``: 0 picks
uniformly (exploration), large values almost always pick rank 1 (hill climbing). The
child penalty spreads effort: a parent that already produced many children gets less
weight, so one lucky kernel does not absorb every proposal.

Everything is deterministic given the ``random.Random`` passed in: ties are broken by id,
never by dict or set order, and each choice draws exactly one number from the RNG.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from actors.evolve.record import CandidateRecord


def _rank_key(r: CandidateRecord) -> tuple[bool, float, str]:
    """Fitness descending; members without fitness last; ties by id."""
    f = r.fitness
    return (f is None, -f if f is not None else 0.0, r.id)


def ranked(population: Sequence[CandidateRecord]) -> list[CandidateRecord]:
    """The population best first (rank 1 first)."""
    return sorted(population, key=_rank_key)


def parent_weights(
    population: Sequence[CandidateRecord], alpha: float, child_counts: Mapping[str, int] | None = None, child_penalty: float = 0.0
) -> list[tuple[CandidateRecord, float]]:
    """Selection probabilities, best first: p(rank r) ∝ r^-alpha / (1 + child_penalty * children).

    Members without a fitness (not accepted, or never benchmarked) rank last rather than
    being dropped, so a population of only the starting point can still be selected from.
    The weights sum to 1; an empty population gives an empty list.
    """
    if alpha < 0 or not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite and >= 0, got {alpha}")
    if child_penalty < 0 or not math.isfinite(child_penalty):
        raise ValueError(f"child_penalty must be finite and >= 0, got {child_penalty}")
    counts = child_counts or {}
    order = ranked(population)
    # Rank 1 weighs 1^-alpha = 1 before its penalty, so the total is positive however large
    # alpha is (lower ranks may underflow to 0, which is what hill climbing means).
    raw = [(r + 1) ** -alpha / (1.0 + child_penalty * counts.get(m.id, 0)) for r, m in enumerate(order)]
    total = math.fsum(raw)
    return [(m, w / total) for m, w in zip(order, raw, strict=True)]


def choose_parent(
    rng: random.Random,
    population: Sequence[CandidateRecord],
    alpha: float,
    child_counts: Mapping[str, int] | None = None,
    child_penalty: float = 0.0,
) -> CandidateRecord:
    """One parent drawn by ``parent_weights``; consumes exactly one ``rng.random()``."""
    weights = parent_weights(population, alpha, child_counts, child_penalty)
    if not weights:
        raise ValueError("choose_parent: empty population")
    u = rng.random()
    acc = 0.0
    for member, w in weights:
        acc += w
        if u < acc:
            return member
    # Rounding left the cumulative sum a hair under 1: the last member with weight wins.
    return next(m for m, w in reversed(weights) if w > 0)


def migrate(islands: Sequence[Sequence[CandidateRecord]], k_best: int = 1) -> list[list[CandidateRecord]]:
    """Ring migration: what each island receives, ``result[(i + 1) % n]`` = island i's ``k_best`` best.

    Pure: the caller adds the migrants (usually as new records naming the original as
    parent). Migrants without a fitness are never sent, and neither is a source the
    receiving island already holds (by ``source_hash``), which would only duplicate it.
    A single island has no neighbour and receives nothing.
    """
    if k_best < 0:
        raise ValueError(f"k_best must be >= 0, got {k_best}")
    n = len(islands)
    received: list[list[CandidateRecord]] = [[] for _ in range(n)]
    if n < 2:
        return received
    for i, island in enumerate(islands):
        target = (i + 1) % n
        held = {m.source_hash for m in islands[target]}
        sent = [m for m in ranked(island) if m.fitness is not None and m.source_hash not in held][:k_best]
        received[target] = sent
    return received


def stagnant(history: Sequence[float | None], s_generations: int, min_improvement: float = 0.0) -> bool:
    """Whether the last ``s_generations`` entries of an island's best-fitness history failed
    to beat the best before them by more than ``min_improvement``.

    ``history[g]`` is the island's best fitness after generation g (None: nothing accepted
    yet, counted as no fitness at all). With ``s_generations`` or fewer entries there is no
    "before" to compare to, so the island is not stagnant yet.
    """
    if s_generations < 1:
        raise ValueError(f"s_generations must be >= 1, got {s_generations}")
    if len(history) <= s_generations:
        return False
    before = [f for f in history[:-s_generations] if f is not None]
    recent = [f for f in history[-s_generations:] if f is not None]
    if not recent:
        return True
    if not before:
        return False
    return max(recent) <= max(before) + min_improvement


def reseed_from(islands: Sequence[Sequence[CandidateRecord]], stagnant_island: int) -> CandidateRecord | None:
    """The candidate a stagnant island restarts from: the best of the other islands.

    Sources the stagnant island already holds are skipped (restarting from its own idea
    changes nothing), so the next best elsewhere is taken instead. None when no other
    island has a fitted candidate it lacks. Ties go by id, as in ranking.
    """
    if not 0 <= stagnant_island < len(islands):
        raise IndexError(f"island {stagnant_island} of {len(islands)}")
    held = {m.source_hash for m in islands[stagnant_island]}
    others = [m for i, isl in enumerate(islands) if i != stagnant_island for m in isl if m.fitness is not None and m.source_hash not in held]
    best = ranked(others)
    return best[0] if best else None
