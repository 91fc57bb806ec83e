"""The engine with the Anthropic proposer, on real Ray with real builds, against the local
Messages-protocol server: a build failure is fed back to the model, whose corrected edit
is verified and committed; a spent budget stops the run cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.config import SandboxConfig
from actors.evolve.database import CandidateDB
from actors.evolve.engine import run_evolution
from actors.evolve.proposers.anthropic import AnthropicProposer
from actors.evolve.proposers.base import Budget
from actors.evolve.settings import EvolutionConfig
from actors.loading import load_workload
from actors.payload import encode
from actors.verify.stages import Context
from actors.workload import generate
from tests.support.fake_anthropic import FakeAnthropic, message, text, tool_use
from tests.support.quick import QUICK_EVOLUTION, QUICK_REGIME

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]
REPO = Path(__file__).resolve().parents[2]
WL = load_workload(REPO / "configs/workloads/w1.yaml")
CFG = WL.tenant
MODEL = "claude-sonnet-4-6"

BROKEN = """Drop a semicolon (on purpose, for the test).
src/kernel.rs
<<<<<<< SEARCH
                    stats.late += 1;
=======
                    stats.late += 1
>>>>>>> REPLACE
"""
FIXED = """Scan more recent buckets before a binary search.
src/kernel.rs
<<<<<<< SEARCH
    let near = n.saturating_sub(8);
=======
    let near = n.saturating_sub(16);
>>>>>>> REPLACE
"""


@pytest.fixture(scope="module")
def ctx(generic_wasm: bytes) -> Context:
    train = tuple(encode(m) for m in generate(WL, 40, seed=8))
    held = tuple(encode(m) for m in generate(WL, 30, seed=1007))
    return Context(CFG, SandboxConfig(), generic_wasm, generic_wasm, held, train, regime=QUICK_REGIME)


def test_a_build_failure_is_fed_back_and_the_fix_is_verified(ctx: Context, tmp_path: Path) -> None:
    with FakeAnthropic() as fake:
        fake.push(
            message(tool_use("read_file", path="src/kernel.rs", start_line=1, end_line=20), input_tokens=900, output_tokens=40),
            message(text(BROKEN), input_tokens=1200, output_tokens=90),
            message(text(FIXED), input_tokens=1500, output_tokens=80),
        )
        proposer = AnthropicProposer(MODEL, api_key="test-key", base_url=fake.base_url, budget=Budget(), max_turns=4)
        summary = run_evolution(CFG, EvolutionConfig(**QUICK_EVOLUTION, islands=1, generations=2, proposer="anthropic"), ctx, tmp_path, proposer=proposer)
        requests = list(fake.requests)
    records = {r.generation: r for r in CandidateDB(tmp_path / "candidates.sqlite", readonly=True).records(CFG.org) if r.proposer == "anthropic"}
    assert records[0].status == "rejected" and records[0].rejected_stage == "build"
    assert records[1].status == "accepted" and records[1].commit
    assert "saturating_sub(16)" in records[1].source and records[1].model == MODEL
    # The second proposal's opening message carried the compiler's error.
    opening = requests[2].body["messages"][0]["content"]
    assert "error" in str(opening) and "stats.late += 1" in str(opening)
    assert summary["tokens"] == 900 + 40 + 1200 + 90 + 1500 + 80 and summary["cost_usd"] > 0
    assert summary["rejections_by_stage"] == {"build": 1}


def test_a_spent_budget_stops_the_run_cleanly(ctx: Context, tmp_path: Path) -> None:
    with FakeAnthropic() as fake:
        fake.push(message(text(FIXED), input_tokens=5000, output_tokens=100))
        proposer = AnthropicProposer(MODEL, api_key="test-key", base_url=fake.base_url, budget=Budget(max_tokens=1000), max_turns=4)
        summary = run_evolution(CFG, EvolutionConfig(**QUICK_EVOLUTION, islands=1, generations=5, proposer="anthropic"), ctx, tmp_path, proposer=proposer)
        calls = len(fake.requests)
    assert calls == 1  # the first call overshot the budget; none was made after it
    assert summary["stopped"] == "budget exhausted"
    assert summary["candidates"] == 1 and summary["accepted"] == 1


def test_a_failed_proposal_is_recorded_with_what_it_spent(ctx: Context, tmp_path: Path) -> None:
    unapplicable = "src/kernel.rs\n<<<<<<< SEARCH\nno such line\n=======\nanything\n>>>>>>> REPLACE\n"
    with FakeAnthropic() as fake:
        fake.push(
            message(text(unapplicable), input_tokens=700, output_tokens=30),
            message(text(unapplicable), input_tokens=800, output_tokens=30),
            message(text(FIXED), input_tokens=900, output_tokens=40),
        )
        proposer = AnthropicProposer(MODEL, api_key="test-key", base_url=fake.base_url, budget=Budget(), max_turns=4)
        summary = run_evolution(CFG, EvolutionConfig(**QUICK_EVOLUTION, islands=1, generations=2, proposer="anthropic"), ctx, tmp_path, proposer=proposer)
    records = {r.generation: r for r in CandidateDB(tmp_path / "candidates.sqlite", readonly=True).records(CFG.org) if r.proposer == "anthropic"}
    failed = records[0]
    assert failed.status == "rejected" and failed.rejected_stage == "proposal" and "EditRejected" in (failed.reason or "")
    assert (failed.tokens_in, failed.tokens_out, failed.model) == (1500, 60, MODEL) and failed.cost_usd > 0 and failed.commit is None
    assert records[1].status == "accepted"
    assert summary["tokens"] == 1500 + 60 + 900 + 40 and summary["rejections_by_stage"] == {"proposal": 1}
