"""The Anthropic proposer with the real SDK over real HTTP, against a local server speaking
the Messages protocol (tests/support/fake_anthropic.py). No Ray, no wasm: the crate is
materialized from the W1 tenant's config, nothing is built."""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.errors import BudgetExhausted, EditRejected, ProposalFailed
from actors.evolve.proposers import Budget, Proposal, ProposalRequest, Proposer
from actors.evolve.proposers.anthropic import INLINE_LIMIT, PRICES, AnthropicProposer, model_price
from actors.loading import load_tenant
from actors.specialize import EVOLVABLE, materialize
from tests.support.fake_anthropic import FakeAnthropic, Reply, error, message, text, tool_use

REPO = Path(__file__).resolve().parents[2]
MODEL = "claude-sonnet-4-6"

KERNEL = """//! The specialized kernel (test copy).
//! Rule: semantics must stay those of the generic kernel.
use crate::spec::{self, Agg};

const NONE: u32 = u32::MAX;
const NONE16: u16 = u16::MAX;

fn fold(acc: f64, v: f64) -> f64 {
    acc + v
}

fn count(n: u64) -> u64 {
    n + 1
}
"""

EDIT = """Count with a wrapping add.

src/kernel.rs
<<<<<<< SEARCH
fn count(n: u64) -> u64 {
    n + 1
=======
fn count(n: u64) -> u64 {
    n.wrapping_add(1)
>>>>>>> REPLACE
"""
EDITED = KERNEL.replace("    n + 1\n", "    n.wrapping_add(1)\n")
BAD_EDIT = "<<<<<<< SEARCH\nfn count(n: u32) -> u32 {\n=======\nfn count(n: u64) -> u64 {\n>>>>>>> REPLACE\n"


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(scope="module")
def crate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated once: proposers only read the crate."""
    return materialize(load_tenant(REPO / "configs/tenants/1042.yaml"), tmp_path_factory.mktemp("crate"), kernel_src=KERNEL)


def request(crate: Path, **kw: Any) -> ProposalRequest:
    fields: dict[str, Any] = {
        "org": 1042,
        "crate_dir": crate,
        "evolvable": EVOLVABLE,
        "parent_id": "c-0007",
        "parent_source": KERNEL,
        "parent_metrics": {"ratio_to_generic": 2.0, "msg_per_s": 26267.0},
        "inspirations": (("c-0003", KERNEL.replace("acc + v", "v + acc"), {"ratio_to_generic": 1.9}),),
        "last_build_errors": None,
        "last_report": None,
        "profile": None,
    }
    fields.update(kw)
    return ProposalRequest(**fields)


class Harness:
    """A proposer wired to the fake server, with its log lines and sleeps recorded."""

    def __init__(self, fake: FakeAnthropic, budget: Budget | None = None, model: str = MODEL, **kw: Any) -> None:
        self.logs: list[str] = []
        self.sleeps: list[float] = []
        self.budget = budget or Budget()
        args: dict[str, Any] = {"max_turns": 6, "jitter": 0.0, "backoff_s": 2.0}
        args.update(kw)
        self.proposer = AnthropicProposer(
            model, api_key="test-key", base_url=fake.base_url, max_tokens=4096, budget=self.budget, log=self.logs.append, sleep=self.sleeps.append, **args
        )

    def propose(self, req: ProposalRequest) -> Proposal:
        return self.proposer.propose(req, random.Random(1))


def test_tool_calls_then_an_edit(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(
        message(text("Let me look around."), tool_use("list_files"), input_tokens=1000, output_tokens=50),
        message(
            tool_use("read_file", path="src/kernel.rs", start_line=8, end_line=10),
            tool_use("grep", pattern=r"pub fn literal", path="src/spec.rs"),
            tool_use("read_file", path="inspirations/c-0003.rs", start_line=9, end_line=9),
            input_tokens=2000,
            output_tokens=80,
        ),
        message(tool_use("grep", pattern=r"pub struct Groups"), input_tokens=3000, output_tokens=30),
        message(text(EDIT), input_tokens=4000, output_tokens=200),
    )
    h = Harness(fake)
    p = h.propose(request(crate))
    assert isinstance(h.proposer, Proposer)

    assert p.source == EDITED
    assert "<<<<<<< SEARCH" in p.patch and "n.wrapping_add(1)" in p.patch
    assert (p.proposer, p.model) == ("anthropic", MODEL)
    assert len(fake.requests) == 4 and fake.pending == 0

    first = fake.requests[0]
    assert first.path == "/v1/messages" and first.body["model"] == MODEL and first.body["max_tokens"] == 4096
    assert first.headers.get("x-stainless-retry-count") == "0"
    assert {t["name"] for t in first.body["tools"]} == {"list_files", "read_file", "grep", "last_build_errors", "last_report", "profile"}
    system = first.body["system"]
    for phrase in ("faster", "bit-exact", "Only src/kernel.rs may change", "<<<<<<< SEARCH", ">>>>>>> REPLACE", "//! Rule: semantics must stay"):
        assert phrase in system
    assert p.prompt.startswith(system)
    opening = first.body["messages"][0]["content"]
    assert "org 1042" in opening and "c-0007" in opening and "ratio_to_generic" in opening and "inspirations/c-0003.rs" in opening

    listing = fake.requests[1].tool_results()
    assert len(listing) == 1 and listing[0]["tool_use_id"] == fake.requests[1].body["messages"][1]["content"][1]["id"]
    files = listing[0]["content"]
    for path in ("Cargo.toml", "src/lib.rs", "src/spec.rs", "src/kernel.rs", "deps/tables/src/groups.rs", "deps/codec/PAYLOAD.md", "inspirations/c-0003.rs"):
        assert path in files
    assert "kernel.wasm" not in files and "target/" not in files

    read, grep, insp = fake.requests[2].tool_results()
    assert read["content"] == "    8\tfn fold(acc: f64, v: f64) -> f64 {\n    9\t    acc + v\n   10\t}"
    assert "src/spec.rs:" in grep["content"] and "pub fn literal(s: &[u8]) -> u16 {" in grep["content"]
    assert insp["content"] == "    9\t    v + acc"
    assert not any(r.get("is_error") for r in (read, grep, insp))
    assert "deps/tables/src/groups.rs:" in fake.requests[3].tool_results()[0]["content"]
    assert all(r.body["tool_choice"] == {"type": "auto"} for r in fake.requests)

    assert (p.tokens_in, p.tokens_out) == (10000, 360)
    pin, pout = PRICES[MODEL]
    assert p.cost_usd == pytest.approx((10000 * pin + 360 * pout) / 1e6)
    assert h.budget.spent()["calls"] == 4 and h.budget.tokens == 10360 and h.budget.usd == pytest.approx(p.cost_usd)
    assert sum("anthropic: call" in line for line in h.logs) == 4
    assert "grep×2" in p.notes and "list_files×1" in p.notes and "read_file×2" in p.notes


def test_malformed_edit_is_fed_back_and_a_corrected_one_accepted(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(message(text(BAD_EDIT)), message(text(EDIT)))
    h = Harness(fake)
    p = h.propose(request(crate))
    assert p.source == EDITED
    assert len(fake.requests) == 2
    feedback = fake.requests[1].last_user_text()
    assert "rejected" in feedback and "not in src/kernel.rs" in feedback and "fn count(n: u32) -> u32 {" in feedback
    assert fake.requests[1].body["messages"][1]["content"][0]["text"] == BAD_EDIT
    assert "first edit rejected" in p.notes
    assert any("edit rejected" in line for line in h.logs)


def test_a_second_malformed_edit_gives_up(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(message(text(BAD_EDIT)), message(text("<<<<<<< SEARCH\nfn count(n: u64) -> u64 {\n=======\n")))
    with pytest.raises(EditRejected, match=r"corrected edit was rejected too: .*REPLACE' missing"):
        Harness(fake).propose(request(crate))
    assert len(fake.requests) == 2


def test_an_edit_to_another_file_is_fed_back(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(
        message(text("src/spec.rs\n<<<<<<< SEARCH\npub const ORG: u64 = 1042;\n=======\npub const ORG: u64 = 1;\n>>>>>>> REPLACE\n")), message(text(EDIT))
    )
    assert Harness(fake).propose(request(crate)).source == EDITED
    assert "only src/kernel.rs may change" in fake.requests[1].last_user_text()


def test_build_errors_report_and_profile_reach_the_model(fake: FakeAnthropic, crate: Path) -> None:
    errors = "error[E0425]: cannot find value `acc2` in this scope\n  --> src/kernel.rs:9:5\n" + "note: padding\n" * 400 + "error: aborting (END)\n"
    assert len(errors) > INLINE_LIMIT
    report = {
        "accepted": False,
        "stages": [{"name": "build", "status": "passed", "reason": ""}, {"name": "differential", "status": "failed", "reason": "output hash differs"}],
    }
    profile = {"decode": 11.0, "accumulate": 616.0}
    fake.push(message(tool_use("last_build_errors"), tool_use("last_report"), tool_use("profile")), message(text(EDIT)))
    Harness(fake).propose(request(crate, last_build_errors=errors, last_report=report, profile=profile))
    opening = fake.requests[0].body["messages"][0]["content"]
    assert "error[E0425]: cannot find value `acc2`" in opening and "(END)" not in opening and "last_build_errors" in opening
    assert "differential: failed: output hash differs" in opening and "build: passed" not in opening
    assert '"accumulate": 616.0' in opening
    built, rep, prof = fake.requests[1].tool_results()
    assert built["content"] == errors
    assert '"output hash differs"' in rep["content"] and '"accumulate": 616.0' in prof["content"]


def test_without_feedback_the_tools_say_so(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(message(tool_use("last_build_errors"), tool_use("last_report"), tool_use("profile")), message(text(EDIT)))
    Harness(fake).propose(request(crate))
    assert [r["content"] for r in fake.requests[1].tool_results()] == [
        "No build errors: the last attempt built.",
        "No verification report yet.",
        "No profile available.",
    ]


def test_bad_tool_calls_come_back_as_errors(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(
        message(
            tool_use("read_file", path="../../../etc/passwd"),
            tool_use("read_file", path="src/kernel.rs", start_line=99),
            tool_use("read_file", path="src/kernel.rs", start_line="x"),
            tool_use("grep", pattern="("),
            tool_use("rm", path="src/kernel.rs"),
        ),
        message(text(EDIT)),
    )
    assert Harness(fake).propose(request(crate)).source == EDITED
    results = fake.requests[1].tool_results()
    assert [r.get("is_error") for r in results] == [True] * 5
    assert "no file '../../../etc/passwd'" in results[0]["content"]
    assert "has 14 lines" in results[1]["content"]
    assert "positive integer" in results[2]["content"]
    assert "bad regular expression" in results[3]["content"]
    assert "no tool 'rm'" in results[4]["content"]


def test_the_last_turn_switches_tools_off(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(message(tool_use("list_files")), message(text(EDIT)))
    assert Harness(fake, max_turns=2).propose(request(crate)).source == EDITED
    assert fake.requests[0].body["tool_choice"] == {"type": "auto"}
    assert fake.requests[1].body["tool_choice"] == {"type": "none"}
    assert "last" in fake.requests[1].last_user_text()


def test_a_model_that_never_answers_fails(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(message(tool_use("list_files")), message(tool_use("list_files")))
    with pytest.raises(ProposalFailed, match=r"no edit after 2 turns"):
        Harness(fake, max_turns=2).propose(request(crate))


def test_rate_limit_and_overload_are_retried_with_backoff(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(error(429, "rate_limit_error"), error(529, "overloaded_error"), error(500, "api_error"), message(text(EDIT)))
    h = Harness(fake)
    assert h.propose(request(crate)).source == EDITED
    assert h.sleeps == [2.0, 4.0, 8.0]
    assert len(fake.requests) == 4
    retries = [line for line in h.logs if "retrying" in line]
    assert len(retries) == 3 and "429 rate_limit_error" in retries[0] and "529 overloaded_error" in retries[1] and "500 api_error" in retries[2]
    assert h.budget.spent()["calls"] == 1


def test_retry_after_is_honoured(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(error(429, "rate_limit_error", headers={"retry-after": "7"}), message(text(EDIT)))
    h = Harness(fake)
    h.propose(request(crate))
    assert h.sleeps == [7.0]


def test_retries_run_out(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(*[error(529, "overloaded_error")] * 3)
    h = Harness(fake, max_retries=2)
    with pytest.raises(ProposalFailed, match=r"still failing after 3 attempts \(529 overloaded_error"):
        h.propose(request(crate))
    assert h.sleeps == [2.0, 4.0]


def test_a_bad_request_is_not_retried(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(error(400, "invalid_request_error", "max_tokens: too large"))
    h = Harness(fake)
    with pytest.raises(ProposalFailed, match=r"refused the request \(400 invalid_request_error: max_tokens: too large\)"):
        h.propose(request(crate))
    assert h.sleeps == [] and len(fake.requests) == 1


def test_a_spent_budget_stops_before_any_call(fake: FakeAnthropic, crate: Path) -> None:
    budget = Budget(max_tokens=1000)
    budget.charge(900, 100, 0.0)
    with pytest.raises(BudgetExhausted, match=r"tokens budget exhausted") as e:
        Harness(fake, budget=budget).propose(request(crate))
    assert e.value.limit == "tokens" and isinstance(e.value, ProposalFailed)
    assert fake.requests == []


def test_token_budget_runs_out_between_calls(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(message(tool_use("list_files"), input_tokens=900, output_tokens=150), message(text(EDIT)))
    h = Harness(fake, budget=Budget(max_tokens=1000))
    with pytest.raises(BudgetExhausted, match=r"1050 of 1000 tokens"):
        h.propose(request(crate))
    assert len(fake.requests) == 1 and fake.pending == 1


def test_usd_budget_of_a_tenant_and_of_the_run(fake: FakeAnthropic, crate: Path) -> None:
    run = Budget(max_usd=0.05)
    tenant = run.child("org1042", max_usd=1.0)
    # Sonnet 4.6 at $3 / $15 per Mtok: $0.039, then $0.012; the run's $0.05 is reached after the second call.
    fake.push(message(tool_use("list_files"), input_tokens=10_000, output_tokens=600), message(tool_use("list_files"), input_tokens=3_000, output_tokens=200))
    fake.push(message(text(EDIT)))
    with pytest.raises(BudgetExhausted, match=r"usd budget exhausted: run: \$0\.0510 of \$0\.0500") as e:
        Harness(fake, budget=tenant).propose(request(crate))
    assert e.value.limit == "usd"
    assert len(fake.requests) == 2
    assert tenant.usd == pytest.approx(run.usd) and run.calls == tenant.calls == 2


def test_time_budget(fake: FakeAnthropic, crate: Path) -> None:
    now = [0.0]
    budget = Budget(max_seconds=60, clock=lambda: now[0])
    now[0] = 61.0
    with pytest.raises(BudgetExhausted, match=r"seconds budget exhausted"):
        Harness(fake, budget=budget).propose(request(crate))
    assert fake.requests == []


def test_thinking_blocks_go_back_unchanged(fake: FakeAnthropic, crate: Path) -> None:
    thinking = {"type": "thinking", "thinking": "The fold is the hot loop.", "signature": "c2lnbmF0dXJl"}
    redacted = {"type": "redacted_thinking", "data": "b3BhcXVl"}
    fake.push(message(thinking, redacted, text(""), tool_use("list_files")), message(text(EDIT)))
    Harness(fake).propose(request(crate))
    back = fake.requests[1].body["messages"][1]
    assert back["role"] == "assistant"
    assert back["content"][:2] == [thinking, redacted]
    assert [b["type"] for b in back["content"]] == ["thinking", "redacted_thinking", "tool_use"]


def test_prompt_caching_is_asked_for_and_priced(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(
        message(tool_use("list_files"), input_tokens=50, cache_write=8_000, output_tokens=100),
        message(text(EDIT), input_tokens=60, cache_read=9_000, output_tokens=300),
    )
    p = Harness(fake).propose(request(crate))
    assert all(r.body["cache_control"] == {"type": "ephemeral"} for r in fake.requests)
    assert (p.tokens_in, p.tokens_out) == (50 + 8_000 + 60 + 9_000, 400)
    pin, pout = PRICES[MODEL]
    assert p.cost_usd == pytest.approx((110 * pin + 8_000 * pin * 1.25 + 9_000 * pin * 0.1 + 400 * pout) / 1e6)
    fake.push(message(text(EDIT)))
    Harness(fake, cache=False).propose(request(crate))
    assert "cache_control" not in fake.requests[-1].body


def test_unknown_model_costs_nothing_with_a_note(fake: FakeAnthropic, crate: Path) -> None:
    fake.models = (*fake.models, "claude-future-9")
    fake.push(message(text(EDIT), input_tokens=500, output_tokens=40))
    p = Harness(fake, model="claude-future-9").propose(request(crate))
    assert (p.tokens_in, p.tokens_out, p.cost_usd) == (500, 40, 0.0)
    assert "no price for model 'claude-future-9'" in p.notes
    assert model_price("claude-haiku-4-5-20251001") == PRICES["claude-haiku-4-5"] and model_price("claude-future-9") is None


def test_full_rewrite_when_allowed(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(message(text(f"Whole file:\n```rust\n{EDITED}```\n")))
    p = Harness(fake).propose(request(crate, full_rewrite=True))
    assert p.source == EDITED and p.patch.startswith("--- a/src/kernel.rs")
    assert "single ```rust block" in fake.requests[0].body["system"]


def test_no_api_key(monkeypatch: pytest.MonkeyPatch, crate: Path) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    proposer = AnthropicProposer(MODEL, base_url="http://127.0.0.1:9", budget=Budget())
    with pytest.raises(ProposalFailed, match=r"no Anthropic API key"):
        proposer.propose(request(crate), random.Random(0))


def test_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch, fake: FakeAnthropic, crate: Path) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    fake.push(message(text(EDIT)))
    proposer = AnthropicProposer(MODEL, base_url=fake.base_url, budget=Budget())
    assert "env-key" not in pickle.dumps(proposer).decode("latin-1")
    proposer.propose(request(crate), random.Random(0))
    assert "env-key" in (fake.requests[0].headers.get("Authorization", "") + fake.requests[0].headers.get("X-Api-Key", ""))


def test_inspiration_ids_that_collide_stay_apart(fake: FakeAnthropic, crate: Path) -> None:
    insp: tuple[tuple[str, str, dict[str, Any]], ...] = (("c/1", "// one\n", {}), ("c:1", "// two\n", {}))
    fake.push(message(tool_use("read_file", path="inspirations/c_1.rs"), tool_use("read_file", path="inspirations/c_1-1.rs")), message(text(EDIT)))
    Harness(fake).propose(request(crate, inspirations=insp))
    assert [r["content"] for r in fake.requests[1].tool_results()] == ["    1\t// one", "    1\t// two"]


def test_proposer_and_budget_pickle(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(message(text(EDIT)))
    proposer = AnthropicProposer(MODEL, api_key="k", base_url=fake.base_url, budget=Budget(max_usd=1.0))
    proposer.propose(request(crate), random.Random(0))
    copy = pickle.loads(pickle.dumps(proposer))
    assert copy.budget.calls == 1 and copy.client() is not proposer.client()


def test_the_fake_refuses_unanswered_tool_calls(fake: FakeAnthropic) -> None:
    import anthropic

    client = anthropic.Anthropic(api_key="k", base_url=fake.base_url, max_retries=0)
    turns: list[Any] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "list_files", "input": {}}]},
        {"role": "user", "content": "no result"},
    ]
    with pytest.raises(anthropic.BadRequestError, match="without tool_result"):
        client.messages.create(model=MODEL, max_tokens=10, messages=turns)
    assert isinstance(Reply(200, {}), Reply)


def test_a_reply_cut_at_max_tokens_is_never_applied(fake: FakeAnthropic, crate: Path) -> None:
    # The cut reply parses as a complete edit; it is refused all the same, and the model is told.
    fake.push(message(text(EDIT), stop_reason="max_tokens"), message(text(EDIT)))
    p = Harness(fake).propose(request(crate))
    assert p.source == EDITED and len(fake.requests) == 2
    assert "cut off at max_tokens" in fake.requests[1].last_user_text() and "not applied" in fake.requests[1].last_user_text()
    fake.push(message(text(EDIT), stop_reason="max_tokens"), message(text(EDIT), stop_reason="max_tokens"))
    with pytest.raises(EditRejected, match="cut off at max_tokens"):
        Harness(fake).propose(request(crate))


def test_a_failed_proposal_carries_what_it_spent(fake: FakeAnthropic, crate: Path) -> None:
    fake.push(message(text(BAD_EDIT), input_tokens=700, output_tokens=50), message(text(BAD_EDIT), input_tokens=800, output_tokens=60))
    with pytest.raises(EditRejected) as e:
        Harness(fake).propose(request(crate))
    pin, pout = PRICES[MODEL]
    assert (e.value.tokens_in, e.value.tokens_out, e.value.model) == (1500, 110, MODEL)
    assert e.value.cost_usd == pytest.approx((1500 * pin + 110 * pout) / 1e6)
    again = pickle.loads(pickle.dumps(e.value))  # it crosses Ray with its spend
    assert type(again) is EditRejected and again.tokens_in == 1500 and str(again) == str(e.value)


def test_a_model_the_api_does_not_offer_fails_before_any_message_naming_those_it_does(fake: FakeAnthropic, crate: Path) -> None:
    with pytest.raises(ProposalFailed, match=r"'claude-nonexistent-1' is not offered by this API; available: .*claude-sonnet-4-6") as e:
        Harness(fake, model="claude-nonexistent-1").propose(request(crate))
    assert fake.requests == [] and fake.model_lists == 1 and e.value.tokens_in == 0
    # A dated id answers for its alias; the list is asked for once per proposer.
    fake.models = ("claude-sonnet-4-5-20250929",)
    h = Harness(fake, model="claude-sonnet-4-5")
    fake.push(message(text(EDIT)), message(text(EDIT)))
    h.propose(request(crate))
    h.propose(request(crate))
    assert fake.model_lists == 2


def test_the_first_message_carries_traffic_statistics_and_the_failed_child(fake: FakeAnthropic, crate: Path) -> None:
    failed = KERNEL.replace("acc + v", "acc - v")
    workload = {"tagset_repeat": 0.82, "run_length": 9.5, "gene_weights": {"decode": 1.0}}
    fake.push(message(text(EDIT)))
    Harness(fake).propose(request(crate, workload=workload, failed_source=failed))
    first = fake.requests[0].body["messages"][0]["content"]
    assert '"tagset_repeat": 0.82' in first and "gene_weights" not in first
    assert "-    acc + v" in first and "+    acc - v" in first
