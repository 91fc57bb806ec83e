"""The offline proposer: no network, deterministic in the caller's RNG. It evolves a
genome over the catalogue of rewrites in ``actors/evolve/transforms.py`` and renders
the child's evolvable file from the template (a parent whose source is not its genome's
rendering, one a model edited, gets a rewrite it lacks applied to its own source instead,
so evolution builds on the model's edit): mutation of the parent's genome (the gene
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
from actors.evolve.transforms import GENES, TransformError, conflict, crossover, describe, mutate, render, template_genome, validate_genome
from actors.specialize import template_kernel


class OfflineProposer:
    name = "offline"

    def __init__(self, crossover_rate: float = 0.3, template: str | None = None) -> None:
        self.crossover_rate = crossover_rate
        self.template = template if template is not None else template_kernel()

    def propose(self, req: ProposalRequest, rng: random.Random) -> Proposal:
        parent: dict[str, Any] = validate_genome(req.parent_metrics.get("genome") or template_genome())
        weights = (req.workload or {}).get("gene_weights")
        if render(self.template, parent) != req.parent_source:
            # The parent holds edits no genome describes (a model's): build on them.
            grown = self._on_parent(req.parent_source, parent, rng, weights)
            if grown is not None:
                child, source, what = grown
                return self._proposal(req, parent, child, source, f"{what} on the parent's own source (its edits kept)")
        others = [m["genome"] for _, _, m in req.inspirations if m.get("genome")]
        how = "mutation"
        child = parent
        if others and rng.random() < self.crossover_rate:
            child = crossover(parent, rng.choice(others), rng)
            how = "crossover"
        if child == parent:
            child = mutate(parent, rng, weights=weights)
        return self._proposal(req, parent, child, render(self.template, child), how)

    def _on_parent(self, source: str, parent: dict[str, Any], rng: random.Random, weights: Any) -> tuple[dict[str, Any], str, str] | None:
        """A rewrite the parent does not have yet, applied to its source: genes still at the
        template's value, drawn by weight; one whose anchors the edits removed is skipped.
        None when none applies (the child is then rendered from the template)."""
        off = [g for g in GENES if parent[g.name] == g.values[0]]
        while off:
            w = [max(0.01, float((weights or {}).get(g.name, 1.0))) for g in off]
            gene = rng.choices(off, w)[0]
            off.remove(gene)
            value = rng.choice(gene.values[1:])
            child = {**parent, gene.name: value}
            if conflict(child):
                continue
            try:
                return child, gene.apply(source, value), f"{gene.name}={value}"
            except TransformError:
                continue
        return None

    def _proposal(self, req: ProposalRequest, parent: dict[str, Any], child: dict[str, Any], source: str, how: str) -> Proposal:
        patch = "".join(difflib.unified_diff(req.parent_source.splitlines(True), source.splitlines(True), "a/src/kernel.rs", "b/src/kernel.rs", n=2))
        prompt = f"{how} of [{describe(parent)}] -> [{describe(child)}]"
        return Proposal(source, patch, prompt, self.name, None, 0, 0, 0.0, notes=describe(child), genome=child)
