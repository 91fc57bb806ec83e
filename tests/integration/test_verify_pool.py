"""The verifier pool on real Ray: stages as tasks, candidates of several tenants verified
at once, each report as the in-process pipeline would give it."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from actors.config import SandboxConfig
from actors.loading import load_tenant
from actors.specialize import template_kernel
from actors.verify.stages import STAGES, Candidate, Context
from actors.verify.tasks import VerifierPool
from actors.verify.traffic import config_traffic
from tests.modules import abi_module
from tests.support.quick import QUICK_REGIME

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]
REPO = Path(__file__).resolve().parents[2]
W1 = load_tenant(REPO / "configs/tenants/1042.yaml")
W2 = load_tenant(REPO / "configs/tenants/2077.yaml")
SANDBOX = SandboxConfig(memory_limit_bytes=256 * 2**20, call_deadline_ms=2000, epoch_tick_ms=10)


def pool(cfg_org: int, generic_wasm: bytes) -> VerifierPool:
    cfg = W1 if cfg_org == 1042 else W2
    return VerifierPool(
        Context(cfg, SANDBOX, generic_wasm, generic_wasm, tuple(config_traffic(cfg, 21, 30)), tuple(config_traffic(cfg, 22, 30)), regime=QUICK_REGIME)
    )


def test_candidates_of_two_tenants_verify_in_parallel(generic_wasm: bytes) -> None:
    p1, p2 = pool(1042, generic_wasm), pool(2077, generic_wasm)
    wrong = template_kernel().replace("t >= cur_start + interval", "t > cur_start + interval", 1)
    refs = [
        p1.submit(Candidate("w1-spec", W1, kernel_src=template_kernel())),
        p2.submit(Candidate("w2-spec", W2, kernel_src=template_kernel())),
        p2.submit(Candidate("w2-boundary-bug", W2, kernel_src=wrong)),
        p1.submit(Candidate("w1-import", W1, wasm=abi_module("i64.const 0", imports='(import "env" "f" (func))'))),
    ]
    reports = {r.candidate: r for r in ray.get(refs, timeout=600)}
    for name in ("w1-spec", "w2-spec"):
        rep = reports[name]
        assert rep.accepted, rep.to_json()
        assert [s.name for s in rep.stages] == list(STAGES)
        assert rep.ratio is not None
    assert reports["w1-spec"].org == 1042 and reports["w2-spec"].org == 2077
    bug = reports["w2-boundary-bug"]
    assert not bug.accepted and bug.failed_stage() is not None and bug.failed_stage().name == "differential"  # type: ignore[union-attr]
    imp = reports["w1-import"]
    assert not imp.accepted and imp.failed_stage().name == "validate"  # type: ignore[union-attr]
    assert [s.status for s in imp.stages[2:]] == ["not-run"] * 4
