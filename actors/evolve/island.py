"""One island's decisions, as pure functions (no Ray, no I/O): which parent, which
inspirations, what request the proposer gets, and what record a verdict becomes.
``actors/evolve/engine.py`` wires them to the proposer, the verifier pool and the store.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from actors.evolve.archive import Archive
from actors.evolve.proposers.base import Proposal, ProposalRequest
from actors.evolve.record import CandidateRecord, hash_source
from actors.evolve.selection import choose_parent, ranked
from actors.evolve.settings import EvolutionConfig
from actors.specialize import EVOLVABLE


def candidate_id(org: int, island: int, generation: int, n: int) -> str:
    return f"{org}-i{island}-g{generation:04d}-c{n}"


@dataclass(frozen=True)
class Choice:
    parent: CandidateRecord
    inspirations: tuple[CandidateRecord, ...]


def choose(
    population: Sequence[CandidateRecord],
    archive: Archive,
    records: Mapping[str, CandidateRecord],
    child_counts: Mapping[str, int],
    cfg: EvolutionConfig,
    rng: random.Random,
) -> Choice:
    """Parent by power-law rank (penalised by its children); inspirations from the archive
    (diverse high performers of every island) plus the island's best."""
    parent = choose_parent(rng, population, cfg.alpha, child_counts, cfg.child_penalty)
    picked: list[CandidateRecord] = []
    for e in archive.inspirations(rng, cfg.inspirations, exclude_id=parent.id):
        if e.id in records:
            picked.append(records[e.id])
    best = ranked(population)[0]
    if best.id != parent.id and all(p.id != best.id for p in picked) and cfg.inspirations > 0:
        picked.append(best)
    return Choice(parent, tuple(picked[: max(cfg.inspirations, 0) + 1]))


def _metrics(r: CandidateRecord) -> dict[str, Any]:
    return {"ratio_to_generic": r.ratio_to_generic, "ratio_to_specialized": r.ratio_to_specialized, "msg_per_s": r.msg_per_s, "genome": r.genome}


def parent_profile(parent: CandidateRecord) -> dict[str, Any] | None:
    """What the parent's bench stage measured (fuel per message against the generic
    kernel's, CPU µs per message, the share of it in flushes), or None without a report."""
    stages = (parent.report or {}).get("stages") or []
    bench = next((st for st in stages if st.get("name") == "bench" and st.get("status") == "passed"), None)
    if bench is None:
        return None
    d = bench.get("details") or {}
    cand = d.get("candidate") or {}
    return {
        "source": "the parent's bench stage (service regime; fuel is about one unit per wasm instruction)",
        "fuel_per_message": d.get("fuel_per_message"),
        "generic_fuel_per_message": d.get("current_fuel_per_message"),
        "us_per_message": cand.get("us_per_message"),
        "flush_share": cand.get("flush_share"),
        "ratio_to_generic": d.get("ratio"),
    }


def request(
    org: int, crate_dir: Path, choice: Choice, last_failure: CandidateRecord | None, profile: dict[str, Any] | None, workload: dict[str, Any] | None = None
) -> ProposalRequest:
    """What the proposer is given; the last failed child of this parent (``last_failure``,
    when its parent is the chosen one) is fed back with its source."""
    build_errors = None
    report = None
    if last_failure is not None and last_failure.parent_id != choice.parent.id:
        last_failure = None
    if last_failure is not None and last_failure.report is not None:
        report = last_failure.report
        build = next((s for s in report.get("stages", []) if s.get("name") == "build" and s.get("status") == "failed"), None)
        if build:
            build_errors = str(build.get("details", {}).get("output", "")) or build.get("reason")
    if profile is None:
        profile = parent_profile(choice.parent)
    return ProposalRequest(
        org=org,
        crate_dir=crate_dir,
        evolvable=EVOLVABLE,
        parent_id=choice.parent.id,
        parent_source=choice.parent.source,
        parent_metrics=_metrics(choice.parent),
        inspirations=tuple((r.id, r.source, _metrics(r)) for r in choice.inspirations),
        last_build_errors=build_errors,
        last_report=report,
        profile=profile,
        workload=workload,
        failed_source=last_failure.source if last_failure is not None and last_failure.report is not None else None,
    )


def record(
    cid: str,
    org: int,
    island: int,
    generation: int,
    parent_id: str | None,
    proposal: Proposal,
    report: dict[str, Any] | None,
    seed_ratio: float | None,
    created_at: float,
    seconds: float,
    duplicate_of: str | None = None,
    failure: str | None = None,
) -> CandidateRecord:
    """The database record of a verdict: accepted with its fitness, rejected with the stage
    and reason, a duplicate of an earlier source (not built again), or a proposal that
    failed (``failure``: stage ``proposal``, with what it spent)."""
    status, stage, reason = "error", None, "no verification report"
    ratio = msg = None
    if failure is not None:
        status, stage, reason = "rejected", "proposal", failure[:2000]
    elif duplicate_of is not None:
        status, reason = "duplicate", f"same source as {duplicate_of}"
    elif report is not None:
        failed = next((s for s in report["stages"] if s["status"] == "failed"), None)
        if report["accepted"]:
            status, reason = "accepted", "every stage passed or did not need to run"
            ratio, msg = report.get("ratio"), report.get("msg_per_s")
        elif failed is not None:
            status, stage, reason = "rejected", failed["name"], str(failed["reason"])[:2000]
    return CandidateRecord(
        id=cid,
        org=org,
        parent_id=parent_id,
        island=island,
        generation=generation,
        proposer=proposal.proposer,
        model=proposal.model,
        prompt=proposal.prompt,
        patch=proposal.patch,
        source=proposal.source,
        source_hash=hash_source(proposal.source),
        commit=None,
        report=report,
        status=status,
        rejected_stage=stage,
        reason=reason,
        msg_per_s=msg,
        ratio_to_generic=ratio,
        ratio_to_specialized=(ratio / seed_ratio) if ratio and seed_ratio else None,
        tokens_in=proposal.tokens_in,
        tokens_out=proposal.tokens_out,
        cost_usd=proposal.cost_usd,
        created_at=created_at,
        seconds=seconds,
        genome=proposal.genome,
    )


def migrant(r: CandidateRecord, island: int, generation: int, n: int) -> CandidateRecord:
    """A copy of an accepted candidate on another island (same source and verdict)."""
    return replace(
        r, id=candidate_id(r.org, island, generation, n) + "-m", parent_id=r.id, island=island, generation=generation, proposer="migration", commit=None
    )
