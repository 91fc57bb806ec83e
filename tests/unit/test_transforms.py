"""The offline proposer's catalogue: every genome renders, deterministically; genomes
mutate and cross over reproducibly. (That rendered sources are correct is for the
verifier: tests/integration/test_evolve.py runs them through it.)"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.evolve.transforms import GENES, TransformError, conflict, crossover, describe, mutate, render, template_genome, validate_genome
from actors.specialize import template_kernel


def all_genomes() -> list[dict[str, object]]:
    every = [dict(zip([g.name for g in GENES], values, strict=True)) for values in itertools.product(*(g.values for g in GENES))]
    return [g for g in every if conflict(g) is None]


def test_every_genome_renders_to_a_distinct_source() -> None:
    t = template_kernel()
    sources = {render(t, g) for g in all_genomes()}
    assert len(sources) == len(all_genomes())
    assert render(t, template_genome()) == t
    assert all(len(s.encode()) < 40 * 1024 for s in sources)


def test_a_genome_that_cannot_combine_is_refused_and_never_bred() -> None:
    with pytest.raises(TransformError, match="preagg_runs"):
        validate_genome({"decode": "walk_spans", "preagg_runs": True})
    rng = random.Random(3)
    g = validate_genome({"decode": "walk_spans"})
    for _ in range(300):
        child = mutate(g, rng)
        assert conflict(child) is None
        assert conflict(crossover(child, {"preagg_runs": True}, rng)) is None
    # The gene the mutation forced wins: preagg_runs switched on turns the spans off.
    forced = mutate(g, random.Random(0), rate=0.0, weights={"preagg_runs": 1.0, **{x.name: 0.0 for x in GENES if x.name != "preagg_runs"}})
    assert forced["preagg_runs"] and forced["decode"] == "walk_bytes"


def test_a_changed_template_is_reported_not_silently_ignored() -> None:
    with pytest.raises(TransformError, match="anchor"):
        render(template_kernel().replace("let near = n.saturating_sub(8);", "let near = 0;"), {"near_window": 4})
    with pytest.raises(TransformError, match="catalogue"):
        validate_genome({"tagset_cache": 3})


@given(seed=st.integers(0, 2**32))
def test_mutation_changes_something_and_replays(seed: int) -> None:
    g = validate_genome({"compact_acc": True})
    a, b = mutate(g, random.Random(seed)), mutate(g, random.Random(seed))
    assert a == b and a != g
    c = crossover(a, template_genome(), random.Random(seed))
    assert all(c[k] in (a[k], template_genome()[k]) for k in c)
    assert isinstance(describe(c), str)


def test_weights_aim_the_mutation() -> None:
    rng = random.Random(5)
    children = [mutate(template_genome(), rng, weights={"atom_index": 10.0}) for _ in range(200)]
    assert sum(c["atom_index"] for c in children) > 150
    assert any(not c["atom_index"] for c in children)  # the other genes keep a small weight
