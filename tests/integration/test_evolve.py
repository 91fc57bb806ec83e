"""The evolution engine on real Ray with the offline proposer: a few generations give a
verified improvement over the specialized kernel; a run resumes where it stopped; an
island killed mid-generation is restarted and no accepted candidate is lost."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from actors.config import SandboxConfig
from actors.evolve.database import CandidateDB
from actors.evolve.engine import run_evolution
from actors.evolve.lineage import Lineage
from actors.evolve.proposers.base import Proposal, ProposalRequest
from actors.evolve.proposers.offline import OfflineProposer
from actors.evolve.settings import EvolutionConfig
from actors.loading import load_workload
from actors.payload import encode
from actors.verify.stages import Context
from actors.workload import generate
from tests.support.quick import QUICK_EVOLUTION, QUICK_REGIME

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]
REPO = Path(__file__).resolve().parents[2]
WL = load_workload(REPO / "configs/workloads/w2.yaml")
CFG = WL.tenant


@pytest.fixture(scope="module")
def ctx(generic_wasm: bytes) -> Context:
    train = tuple(encode(m) for m in generate(WL, 40, seed=8))
    held = tuple(encode(m) for m in generate(WL, 30, seed=1007))
    sandbox = SandboxConfig(memory_limit_bytes=512 * 2**20, call_deadline_ms=10_000, epoch_tick_ms=10)
    return Context(CFG, sandbox, generic_wasm, generic_wasm, held, train, regime=QUICK_REGIME)


def test_offline_evolution_finds_a_verified_improvement_and_resumes(ctx: Context, tmp_path: Path) -> None:
    cfg = EvolutionConfig(**QUICK_EVOLUTION, islands=2, generations=2, seed=3)
    first = run_evolution(CFG, cfg, ctx, tmp_path)
    assert first["generations"] == 2
    db = CandidateDB(tmp_path / "candidates.sqlite", readonly=True)
    before = {r.id for r in db.records(CFG.org)}
    # Resume to four generations: the first two stay as they were, two more are added.
    summary = run_evolution(CFG, EvolutionConfig(**QUICK_EVOLUTION, islands=2, generations=4, seed=3), ctx, tmp_path, resume=True)
    records = db.records(CFG.org)
    assert before <= {r.id for r in records}
    assert {r.generation for r in records if r.proposer == "offline"} == {0, 1, 2, 3}
    best = summary["best"]
    assert best["ratio_to_specialized"] and best["ratio_to_specialized"] > 1.0, summary
    winner = db.get(best["candidate_id"])
    assert winner is not None and winner.status == "accepted" and winner.report is not None
    assert [s["name"] for s in winner.report["stages"] if s["status"] == "passed"][-3:] == ["differential", "shadow", "bench"]
    # Its lineage is in git: the commit holds its source, and the chain leads to the seed.
    lin = Lineage(tmp_path / "lineage", clock=lambda: 0.0)
    assert lin.source_at(best["commit"]) == winner.source
    assert summary["lineage"][-1]["id"] == f"{CFG.org}-seed"
    with pytest.raises(Exception, match="resume"):
        run_evolution(CFG, cfg, ctx, tmp_path)


class DiesOnce:
    """Kills its island's process on one call (once per marker file), like a crashed actor."""

    name = "offline"

    def __init__(self, marker: Path, at_call: int) -> None:
        self.inner = OfflineProposer()
        self.marker = marker
        self.at_call = at_call
        self.calls = 0

    def propose(self, req: ProposalRequest, rng: random.Random) -> Proposal:
        self.calls += 1
        if self.calls == self.at_call and not self.marker.exists():
            self.marker.write_text("died")
            os._exit(1)
        return self.inner.propose(req, rng)


def test_an_island_killed_mid_run_is_restarted_and_loses_nothing(ctx: Context, tmp_path: Path) -> None:
    cfg = EvolutionConfig(**QUICK_EVOLUTION, islands=1, generations=3, seed=5)
    summary = run_evolution(CFG, cfg, ctx, tmp_path / "run", proposer=DiesOnce(tmp_path / "marker", at_call=2))  # type: ignore[arg-type]
    assert (tmp_path / "marker").exists() and summary["island_restarts"] == 1
    records = CandidateDB(tmp_path / "run" / "candidates.sqlite", readonly=True).records(CFG.org)
    gens = sorted(r.generation for r in records if r.proposer == "offline")
    assert gens == [0, 1, 2]  # generation 1 was redone once, after the crash, nothing twice
    lin = Lineage(tmp_path / "run" / "lineage", clock=lambda: 0.0)
    for r in records:
        if r.status == "accepted":
            assert r.commit and lin.source_at(r.commit) == r.source


def test_three_tenants_evolve_at_once(generic_wasm: bytes, tmp_path: Path) -> None:
    from actors.config import TenantConfig
    from actors.evolve.engine import run_many
    from actors.verify.traffic import config_traffic

    queries = [
        ["sum:cpu.usage{service:svc-01}", "max:cpu.usage{*} by {region}"],
        ["avg:cpu.usage{!env:prod} by {service,env}", "count:mem.used{region:r*}"],
        ["min:cpu.usage{*} by {az}", "sum:cpu.usage{canary}"],
    ]
    tenants = []
    for n, qs in enumerate(queries):
        cfg = TenantConfig.from_mapping({"org": 9000 + n, "interval_s": 30, "queries": qs})
        sandbox = SandboxConfig(memory_limit_bytes=256 * 2**20, call_deadline_ms=10_000, epoch_tick_ms=10)
        c = Context(cfg, sandbox, generic_wasm, generic_wasm, tuple(config_traffic(cfg, 1, 20)), tuple(config_traffic(cfg, 2, 20)), regime=QUICK_REGIME)
        tenants.append((cfg, c))
    summaries = run_many(tenants, EvolutionConfig(**QUICK_EVOLUTION, islands=1, generations=1, seed=1), tmp_path)
    assert [s["org"] for s in summaries] == [9000, 9001, 9002]
    for s in summaries:
        assert s["candidates"] == 1 and s["best"]["commit"]
        assert Path(s["best"]["wasm"]).stat().st_size > 1000
        assert set(s) >= {"best", "generations", "candidates", "rejections_by_stage", "tokens", "cost_usd", "seconds"}


class BuggyOnce:
    """Raises an unexpected error on its first call (a bug, not a bad candidate)."""

    name = "offline"

    def __init__(self) -> None:
        self.inner = OfflineProposer()
        self.calls = 0

    def propose(self, req: ProposalRequest, rng: random.Random) -> Proposal:
        self.calls += 1
        if self.calls == 1:
            raise ValueError("proposer bug")
        return self.inner.propose(req, rng)


def test_a_failing_island_generation_does_not_end_the_run(ctx: Context, tmp_path: Path) -> None:
    summary = run_evolution(CFG, EvolutionConfig(**QUICK_EVOLUTION, islands=1, generations=2, seed=9), ctx, tmp_path, proposer=BuggyOnce())  # type: ignore[arg-type]
    assert summary["stopped"] == "generations done"
    records = CandidateDB(tmp_path / "candidates.sqlite", readonly=True).records(CFG.org)
    assert sorted(r.generation for r in records if r.proposer == "offline") == [1]


def test_the_generalisation_suite_reports_every_shape_in_one_table(generic_wasm: bytes, tmp_path: Path) -> None:
    from actors.evolve.suite import run_suite, table

    shape = REPO / "configs/workloads/suite/one_point.yaml"
    cfg = EvolutionConfig(**QUICK_EVOLUTION, islands=1, generations=1, seed=5)
    sandbox = SandboxConfig(memory_limit_bytes=512 * 2**20, call_deadline_ms=10_000, epoch_tick_ms=10)
    result = run_suite([shape], cfg, tmp_path, generic_wasm, sandbox, training=30, held_back=30)
    (row,) = result["shapes"]
    assert row["shape"] == "one_point" and row["queries"] == 10
    assert row["evolved_to_generic"] > 0 and row["evolved_to_specialized"] > 0
    assert result["all_reach_bar"] == (row["evolved_to_specialized"] >= result["bar"])
    assert (tmp_path / "one_point" / "candidates.sqlite").is_file()
    text = table(result)
    assert "one_point" in text and "every shape at least 1.3x" in text
