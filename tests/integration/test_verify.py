"""The verification pipeline, in-process (the Ray pool runs the same stage functions; see
test_verify_pool.py): what it accepts, what it rejects, at which stage and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.cli import main
from actors.config import SandboxConfig
from actors.loading import load_tenant
from actors.payload import write_stream
from actors.specialize import materialize, template_kernel
from actors.verify.stages import STAGES, Candidate, Context, Report, verify
from actors.verify.traffic import config_traffic, edge_messages
from tests.modules import abi_module
from tests.support.quick import QUICK_REGIME

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CFG = load_tenant(REPO / "configs/tenants/2077.yaml")
FAST = SandboxConfig(memory_limit_bytes=256 * 2**20, call_deadline_ms=2000, epoch_tick_ms=10)


@pytest.fixture(scope="module")
def ctx(generic_wasm: bytes) -> Context:
    return Context(CFG, FAST, generic_wasm, generic_wasm, tuple(config_traffic(CFG, 11, 30)), tuple(config_traffic(CFG, 12, 30)), regime=QUICK_REGIME)


def statuses(rep: Report) -> dict[str, str]:
    return {s.name: s.status for s in rep.stages}


def failed(rep: Report) -> tuple[str, str]:
    f = rep.failed_stage()
    assert f is not None, statuses(rep)
    assert not rep.accepted
    # A failed stage stops the pipeline: everything after it did not run, and says why.
    after = [s for s in rep.stages[[s.name for s in rep.stages].index(f.name) + 1 :]]
    assert all(s.status == "not-run" and s.reason == f"stopped: {f.name} failed" for s in after)
    return f.name, f.reason


def test_the_specialized_kernel_is_accepted(ctx: Context) -> None:
    rep = verify(Candidate("spec", CFG, kernel_src=template_kernel()), ctx)
    st = statuses(rep)
    assert rep.accepted, rep.to_json()
    assert list(st) == list(STAGES)
    assert st["build"] == st["validate"] == st["differential"] == st["shadow"] == st["bench"] == "passed"
    # Verus is not installed here: the stage says so instead of passing.
    assert st["proofs"] in ("passed", "not-run")
    proofs = rep.stages[2]
    if proofs.status == "not-run":
        assert "Verus did not run" in proofs.reason
    assert rep.ratio is not None and rep.msg_per_s is not None and rep.ratio > 0
    assert rep.stages[0].tools["rustc"].startswith("rustc")
    json.dumps(rep.to_json())


def test_a_bare_module_passes_all_but_proofs_which_do_not_run(ctx: Context, generic_wasm: bytes) -> None:
    rep = verify(Candidate("generic.wasm", CFG, wasm=generic_wasm), ctx)
    st = statuses(rep)
    assert rep.accepted
    assert st["proofs"] == "not-run" and "no source" in rep.stages[2].reason
    assert st["build"] == "not-run"
    assert all(st[s] == "passed" for s in ("validate", "differential", "shadow", "bench"))


@pytest.mark.parametrize(
    ("module", "stage", "reason"),
    [
        (abi_module("i64.const 0", imports='(import "env" "log" (func (param i32)))'), "validate", "import"),
        (abi_module("i64.const 0").replace(b"evoagg_flush", b"evoagg_flusH"), "validate", "evoagg_flush"),
        (abi_module("(loop (br 0)) i64.const 0"), "differential", "KernelTimeout"),
        (
            abi_module("(block (loop (br_if 1 (i32.eq (memory.grow (i32.const 1)) (i32.const -1))) (br 0))) unreachable"),
            "differential",
            "KernelOutOfMemory",
        ),
        (abi_module("unreachable"), "differential", "KernelTrap"),
    ],
    ids=["forbidden-import", "wrong-exports", "loops-forever", "grows-memory", "traps"],
)
def test_hostile_and_broken_modules_are_rejected(ctx: Context, module: bytes, stage: str, reason: str) -> None:
    rep = verify(Candidate("evil.wasm", CFG, wasm=module), ctx)
    name, why = failed(rep)
    assert (name, reason in why) == (stage, True), why


BOUNDARY = ("t >= cur_start + interval", "t > cur_start + interval")
LAST_SERIES = (
    "if m == NONE16 || points.is_empty() {",
    "if m == NONE16 || points.is_empty() || (series.len() > 1 && core::ptr::eq(s, &series[series.len() - 1])) {",
)
ONLY_SUM = ("Agg::Min => fold(buckets, points, |a, v| {\n            if v < a.min {", "Agg::Min => fold(buckets, points, |a, v| {\n            if v <= a.min {")


@pytest.mark.parametrize("mutation", [BOUNDARY, LAST_SERIES, ONLY_SUM], ids=["off-by-one-at-bucket-boundary", "drops-last-series", "min-keeps-last-equal"])
def test_subtly_wrong_kernels_are_rejected_by_the_differential_stage(ctx: Context, mutation: tuple[str, str]) -> None:
    src = template_kernel()
    assert mutation[0] in src
    rep = verify(Candidate("subtle", CFG, kernel_src=src.replace(mutation[0], mutation[1], 1)), ctx)
    name, why = failed(rep)
    assert name == "differential", why
    assert statuses(rep)["build"] == statuses(rep)["validate"] == "passed"


def test_compiler_errors_are_kept_verbatim(ctx: Context) -> None:
    rep = verify(Candidate("typo", CFG, kernel_src=template_kernel().replace("stats.late += 1;", "stats.late += 1")), ctx)
    name, why = failed(rep)
    assert name == "build"
    assert "error" in why
    assert "stats.late += 1" in rep.stages[0].details["output"]


def test_cli_verify_exit_codes_and_report(tmp_path: Path, generic_wasm: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(REPO / "configs/tenants/2077.yaml")
    crate = materialize(CFG, tmp_path / "crate")
    held = tmp_path / "held.bin"
    write_stream(held, edge_messages(CFG, 99, 30))
    assert main(["verify", "--config", cfg, "--source", str(crate), "--messages", str(held), "--in-process", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accepted"] is True
    assert [s["name"] for s in out["stages"]] == list(STAGES)
    assert all({"name", "status", "reason", "seconds"} <= set(s) for s in out["stages"])
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(abi_module("unreachable"))
    assert main(["verify", "--config", cfg, "--module", str(bad), "--messages", str(held), "--in-process", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["accepted"] is False
    assert main(["verify", "--config", cfg, "--in-process"]) == 2
    assert main(["verify", "--config", cfg, "--module", str(held), "--in-process"]) == 2
