"""The offline proposer builds on a parent's own source when it holds edits no genome
describes (a model's): the child keeps those edits and gains one catalogue rewrite; a
parent that is its genome's rendering is mutated and re-rendered as before."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from actors.evolve.proposers.base import ProposalRequest
from actors.evolve.proposers.offline import OfflineProposer
from actors.evolve.transforms import render, template_genome
from actors.specialize import EVOLVABLE, template_kernel

MODEL_EDIT = ("let near = n.saturating_sub(8);", "let near = n.saturating_sub(12); // a model's edit")


def _request(source: str, genome: dict[str, Any] | None) -> ProposalRequest:
    return ProposalRequest(
        org=1,
        crate_dir=Path("."),
        evolvable=EVOLVABLE,
        parent_id="p",
        parent_source=source,
        parent_metrics={"genome": genome} if genome is not None else {},
        inspirations=(),
        last_build_errors=None,
        last_report=None,
        profile=None,
    )


@pytest.mark.parametrize("seed", range(12))
def test_a_models_edit_is_kept_and_a_rewrite_is_added_to_it(seed: int) -> None:
    edited = template_kernel().replace(*MODEL_EDIT)
    p = OfflineProposer().propose(_request(edited, None), random.Random(seed))
    assert MODEL_EDIT[1] in p.source and p.source != edited
    assert p.genome is not None
    changed = {k for k, v in p.genome.items() if v != template_genome()[k]}
    assert len(changed) == 1 and "own source" in p.prompt
    # The child is the parent plus that rewrite (near_window's anchor is the edited line: never it).
    assert changed != {"near_window"}


def test_a_rendered_parent_is_mutated_from_the_template() -> None:
    genome = {**template_genome(), "atom_index": True}
    p = OfflineProposer().propose(_request(render(template_kernel(), genome), genome), random.Random(1))
    assert p.source == render(template_kernel(), p.genome or {}) and "own source" not in p.prompt


def test_a_parent_no_rewrite_applies_to_falls_back_to_the_template() -> None:
    p = OfflineProposer().propose(_request("// a whole new kernel, nothing of the template's\n", None), random.Random(2))
    assert p.genome is not None and p.source == render(template_kernel(), p.genome)
