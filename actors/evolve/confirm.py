"""Confirming the winners. A search keeps the candidate whose one noisy measurement came
out highest, so its recorded fitness is biased upwards (the winner's curse: on W1 a
"×2.79" winner measured the same as its parent when measured again). At the end of a run
the few best are measured again, side by side with the generic kernel and each other in
interleaved rounds, and the best of *that* measurement is the run's result.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

from actors.evolve.record import CandidateRecord
from actors.kernel.build import build
from actors.kernel.host import KernelHost
from actors.replay import replay
from actors.specialize import materialize, package_name
from actors.verify.stages import Context


def confirm(candidates: Sequence[CandidateRecord], ctx: Context, rounds: int = 5) -> dict[str, float]:
    """Each candidate's msg/s ratio to the generic kernel (medians of interleaved rounds on
    the training messages, 64 per call); the candidates were verified, so builds are cached."""
    wasms: list[tuple[str, bytes]] = [("generic", ctx.baseline)]
    for c in candidates:
        with tempfile.TemporaryDirectory(prefix="evoagg-confirm-") as tmp:
            wasms.append((c.id, build(materialize(ctx.config, Path(tmp), c.source), package_name(ctx.config)).wasm))
    speeds: dict[str, list[float]] = {name: [] for name, _ in wasms}
    for _ in range(rounds):
        for name, wasm in wasms:
            speeds[name].append(replay(KernelHost(wasm, ctx.config, ctx.sandbox, name=name), ctx.training, batch_size=64).msg_per_s)
    generic = statistics.median(speeds["generic"])
    return {name: round(statistics.median(v) / generic, 4) for name, v in speeds.items() if name != "generic"}
