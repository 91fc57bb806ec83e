"""The offline proposer's catalogue: every genome renders, deterministically; genomes
mutate and cross over reproducibly. (That rendered sources are correct is for the
verifier: tests/integration/test_evolve.py runs them through it.)"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.evolve.transforms import GENES, TransformError, crossover, describe, mutate, render, template_genome, validate_genome
from actors.specialize import template_kernel


def all_genomes() -> list[dict[str, object]]:
    return [dict(zip([g.name for g in GENES], values, strict=True)) for values in itertools.product(*(g.values for g in GENES))]


def test_every_genome_renders_to_a_distinct_source() -> None:
    t = template_kernel()
    sources = {render(t, g) for g in all_genomes()}
    assert len(sources) == len(all_genomes())
    assert render(t, template_genome()) == t
    assert all(len(s.encode()) < 24 * 1024 for s in sources)


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
