"""The generalisation suite: one offline evolution per synthetic tenant shape
(``configs/workloads/suite/``), each measured in the service regime against the generic
and the specialized kernel, in one table. It shows that what evolution finds is not
W1's and W2's alone: every shape should end at least ``bar`` × its specialized kernel.

A shape is an ordinary workload file (tenant inline, traffic shape); training and
held-back traffic come from it with different seeds, as ``evoagg evolve --workload``
does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from actors.config import SandboxConfig
from actors.evolve.settings import EvolutionConfig
from actors.loading import load_workload
from actors.payload import encode
from actors.workload import Workload, generate

BAR = 1.3
"""Evolved over specialized that every shape should reach."""


def traffic(wl: Workload, training: int, held_back: int) -> tuple[list[bytes], list[bytes]]:
    """A workload's training and held-back samples (different seeds, never the same messages)."""
    train = [encode(m) for m in generate(wl, training, seed=wl.traffic.seed + 1)]
    held = [encode(m) for m in generate(wl, held_back, seed=wl.traffic.seed + 1_000_003)]
    return train, held


def shapes(directory: Path) -> list[Path]:
    """The suite's workload files, in name order."""
    found = sorted(directory.glob("*.yaml"))
    if not found:
        raise FileNotFoundError(f"{directory}: no workload YAML files")
    return found


def run_suite(
    paths: Sequence[Path],
    evo: EvolutionConfig,
    workdir: Path,
    generic: bytes,
    sandbox: SandboxConfig,
    lateness: int = 60,
    training: int = 200,
    held_back: int = 200,
    log: Callable[[str], None] = lambda m: None,
) -> dict[str, Any]:
    """Evolves each shape in turn (Ray must be up); returns one row per shape and whether
    every shape reached :data:`BAR`."""
    from actors.evolve.engine import run_evolution
    from actors.verify.stages import Context

    rows: list[dict[str, Any]] = []
    for path in paths:
        wl = load_workload(path)
        train, held = traffic(wl, training, held_back)
        ctx = Context(wl.tenant, sandbox, generic, generic, tuple(held), tuple(train), regime=evo.regime(lateness))
        t0 = time.monotonic()
        log(f"{wl.name} (org {wl.tenant.org}, {len(wl.tenant.queries)} queries): evolving")
        name = wl.name

        def shape_log(m: str, name: str = name) -> None:
            log(f"{name}: {m}")

        summary = run_evolution(wl.tenant, evo, ctx, workdir / name, log=shape_log)
        best = summary["best"]
        rows.append(
            {
                "shape": wl.name,
                "org": wl.tenant.org,
                "queries": len(wl.tenant.queries),
                "specialized_to_generic": summary.get("specialized_ratio_to_generic"),
                "evolved_to_generic": best.get("ratio_to_generic"),
                "evolved_to_specialized": best.get("ratio_to_specialized"),
                "evolved_to_specialized_ci95": best.get("ratio_to_specialized_ci95"),
                "genome": best.get("genome"),
                "candidates": summary.get("candidates"),
                "rejections_by_stage": summary.get("rejections_by_stage"),
                "seconds": round(time.monotonic() - t0, 1),
                "workdir": str(workdir / wl.name),
            }
        )
    ok = all((r["evolved_to_specialized"] or 0) >= BAR for r in rows)
    return {"bar": BAR, "all_reach_bar": ok, "generations": evo.generations, "islands": evo.islands, "shapes": rows}


def table(result: dict[str, Any]) -> str:
    """The suite as a text table."""
    head = f"{'shape':<12} {'queries':>7} {'spec/gen':>9} {'evo/gen':>8} {'evo/spec':>9}  95% CI        genome"
    lines = [head, "-" * len(head)]

    def f(v: Any) -> str:
        return f"{v:.2f}x" if isinstance(v, (int, float)) else "-"

    for r in result["shapes"]:
        ci = r["evolved_to_specialized_ci95"]
        ci_s = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-"
        g = r["genome"] or {}
        on = ", ".join(f"{k}={v}" if v is not True else k for k, v in sorted(g.items()) if v not in (False, 0, 8, "shared"))
        ratios = f"{f(r['specialized_to_generic']):>9} {f(r['evolved_to_generic']):>8} {f(r['evolved_to_specialized']):>9}"
        lines.append(f"{r['shape']:<12} {r['queries']:>7} {ratios}  {ci_s:<13} {on or 'template'}")
    lines.append(f"every shape at least {result['bar']}x its specialized kernel: {'yes' if result['all_reach_bar'] else 'no'}")
    return "\n".join(lines)
