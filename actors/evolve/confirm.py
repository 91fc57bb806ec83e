"""Confirming the winners. A search keeps the candidate whose one noisy measurement came
out highest, so its recorded fitness is biased upwards (the winner's curse: on W1 a
"×2.79" winner measured the same as its parent when measured again). At the end of a run
the few best are measured again, side by side with the generic kernel, the specialized
kernel (the seed) and each other, in the shard's regime (``actors.kernel.measure``), and
the best of *that* measurement is the run's result.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from actors.evolve.record import CandidateRecord
from actors.kernel.build import build
from actors.kernel.measure import compare, measure
from actors.specialize import materialize, package_name
from actors.verify.stages import Context


def confirm(candidates: Sequence[CandidateRecord], ctx: Context, rounds: int = 8, seed_id: str | None = None) -> dict[str, dict[str, Any]]:
    """Per candidate: its ratio to the generic kernel (``ratio``, with ``ci95``) and, when
    ``seed_id`` names one of them, to that candidate (``to_seed``, with its interval),
    from ``rounds`` interleaved rounds on the training messages in the context's regime.
    The candidates were verified, so their builds are cached."""
    wasms: list[tuple[str, bytes]] = [("generic", ctx.baseline)]
    for c in candidates:
        with tempfile.TemporaryDirectory(prefix="evoagg-confirm-") as tmp:
            wasms.append((c.id, build(materialize(ctx.config, Path(tmp), c.source), package_name(ctx.config)).wasm))
    res = measure(wasms, ctx.config, ctx.training, replace(ctx.regime, rounds=max(rounds, ctx.regime.screen_rounds)), ctx.sandbox)
    out: dict[str, dict[str, Any]] = {}
    for name, _ in wasms[1:]:
        if res[name].error or not res[name].served:
            continue
        to_generic = compare(res[name], res["generic"])
        entry: dict[str, Any] = {**to_generic.to_json(), "msg_per_s": round(res[name].msg_per_s, 1)}
        if seed_id is not None and seed_id in res and res[seed_id].served:
            entry["to_seed"] = compare(res[name], res[seed_id]).to_json()
        out[name] = entry
    return out
