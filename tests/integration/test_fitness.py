"""Fitness is what the shard runs: the bench stage measures a module with the shard's
batch, its watermark flushes (timed) and the thread's CPU time. A kernel that does extra
work in every flush is rated below the one without it (a process-only measure rated them
alike), and a kernel measured against itself stays within the publish margin while other
processes load every core."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from actors.config import SandboxConfig
from actors.control_state import publish_decision
from actors.kernel.build import build
from actors.kernel.measure import Regime, compare, measure
from actors.loading import load_workload
from actors.payload import encode
from actors.specialize import materialize, package_name, template_kernel
from actors.verify.stages import Candidate, Context, Progress, stage_bench
from actors.workload import generate

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
W1 = load_workload(REPO / "configs" / "workloads" / "w1.yaml")
FLUSH = "    fn flush(&mut self, watermark: i64, out: &mut RowWriter) {\n"
# A fixed cost in every flush: work a process-only measure never sees.
SLOW_FLUSH = FLUSH + (
    "        let mut x = 0u64;\n"
    "        for i in 0..3_000_000u64 {\n"
    "            x = core::hint::black_box(x.wrapping_mul(31).wrapping_add(i));\n"
    "        }\n"
    "        core::hint::black_box(x);\n"
)


def _build(src: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return build(materialize(W1.tenant, Path(tmp), src), package_name(W1.tenant)).wasm


@pytest.fixture(scope="module")
def kernels() -> dict[str, bytes]:
    src = template_kernel()
    assert FLUSH in src
    return {"specialized": _build(src), "slow_flush": _build(src.replace(FLUSH, SLOW_FLUSH, 1))}


@pytest.fixture(scope="module")
def training() -> tuple[bytes, ...]:
    return tuple(encode(m) for m in generate(W1, 256, seed=21))


def test_a_fixed_cost_in_every_flush_is_rated_below_the_kernel_without_it(kernels: dict[str, bytes], training: tuple[bytes, ...]) -> None:
    # Eight rounds: an interval from four is too wide on a shared machine to exclude 1.
    ctx = Context(W1.tenant, SandboxConfig(), kernels["specialized"], kernels["specialized"], training, training, regime=Regime(rounds=8, screen_rounds=3))
    p = stage_bench(Candidate("slow_flush", W1.tenant, wasm=kernels["slow_flush"]), ctx, Progress(wasm=kernels["slow_flush"]))
    bench = p.stages[-1]
    assert bench.status == "passed", bench.reason
    low, high = bench.details["ci95"]
    assert high < 1.0, bench.details
    # Its process calls alone are as fast as the other's: only the flushes tell them apart.
    mine, cur = bench.details["candidate"], bench.details["current"]
    assert mine["flush_share"] > 2 * cur["flush_share"]
    # Fuel counts the flush's extra instructions too, whatever the machine does.
    assert bench.details["fuel_per_message"] > bench.details["current_fuel_per_message"]
    assert not publish_decision(bench.details["ratio"], (low, high), 0.05, "slow_flush").publish


@pytest.fixture
def loaded_machine() -> Iterator[None]:
    """Every core busy with another process for the duration of a test."""
    import os

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        yield
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def test_a_kernel_against_itself_stays_within_the_margin_on_a_loaded_machine(
    kernels: dict[str, bytes], training: tuple[bytes, ...], loaded_machine: None
) -> None:
    same = kernels["specialized"]
    res = measure([("a", same), ("b", same)], W1.tenant, training, replace(Regime(), rounds=8))
    r = compare(res["a"], res["b"])
    assert 0.95 <= r.value <= 1.05, r
    assert not publish_decision(r.value, (r.low, r.high), 0.05, "itself").publish
