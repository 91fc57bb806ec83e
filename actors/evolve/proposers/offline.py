"""The offline proposer: no network, deterministic in the caller's RNG. It evolves a
genome over the catalogue of rewrites in ``actors/evolve/transforms.py`` and renders
the child's evolvable file from the template: mutation of the parent's genome (the gene
it changes drawn by the weights the tenant's statistics give, ``actors.evolve.stats``),
and now and then crossover with an inspiration's. It reads the parent's genome from its metrics
(``parent_metrics["genome"]``; the specialized starting point has the template's) and
returns the child's in ``Proposal.genome``.

A child it proposed before (same rendered source) is still returned: novelty is the
engine's check (the database knows every source hash), not the proposer's.
"""

from __future__ import annotations

import difflib
import random
from typing import Any

from actors.evolve.proposers.base import Proposal, ProposalRequest
from actors.evolve.transforms import crossover, describe, mutate, render, template_genome, validate_genome
from actors.specialize import template_kernel


class OfflineProposer:
    name = "offline"

    def __init__(self, crossover_rate: float = 0.3, template: str | None = None) -> None:
        self.crossover_rate = crossover_rate
        self.template = template if template is not None else template_kernel()

    def propose(self, req: ProposalRequest, rng: random.Random) -> Proposal:
        parent: dict[str, Any] = validate_genome(req.parent_metrics.get("genome") or template_genome())
        others = [m["genome"] for _, _, m in req.inspirations if m.get("genome")]
        how = "mutation"
        child = parent
        if others and rng.random() < self.crossover_rate:
            child = crossover(parent, rng.choice(others), rng)
            how = "crossover"
        if child == parent:
            child = mutate(parent, rng, weights=(req.workload or {}).get("gene_weights"))
        source = render(self.template, child)
        patch = "".join(difflib.unified_diff(req.parent_source.splitlines(True), source.splitlines(True), "a/src/kernel.rs", "b/src/kernel.rs", n=2))
        prompt = f"{how} of [{describe(parent)}] -> [{describe(child)}]"
        return Proposal(source, patch, prompt, self.name, None, 0, 0, 0.0, notes=describe(child), genome=child)
