"""The verifier pool: each stage of ``actors/verify/stages.py`` as a Ray task.

A candidate's stages are chained by object reference (stage n+1 starts when stage n's
result exists), so ``submit`` returns at once and many candidates, of many tenants,
verify in parallel across the cluster. Every stage task takes one CPU: on two cores at
most two compile or measure at once (builds additionally take a build slot, see
``actors/kernel/build.py``), so a bench is never run beside two other busy stages.
The context (baseline module, held-back and training messages) is put in the object
store once per tenant and shared by reference.
"""

from __future__ import annotations

from typing import Any

import ray

from actors import placement
from actors.verify.stages import STAGES, Candidate, Context, Progress, Report, report, run_stage

_stage = ray.remote(num_cpus=1, max_retries=1)(run_stage)
_report = ray.remote(num_cpus=0)(report)


class VerifierPool:
    """A handle on the pool: submit candidates, get reports. Callers never see Ray's tasks."""

    def __init__(self, ctx: Context | ray.ObjectRef) -> None:  # type: ignore[type-arg]
        """``ctx`` or a reference to it (put once, shared by every pool of a run)."""
        self._ctx_ref = ctx if isinstance(ctx, ray.ObjectRef) else ray.put(ctx)

    def submit(self, candidate: Candidate) -> Any:
        """Starts the pipeline; returns an object reference to the :class:`Report`."""
        p: Any = Progress()
        for name in STAGES:
            # Builds go to the nodes that offer build cores (when the cluster declares them).
            stage = _stage.options(resources=placement.resources("build")) if name == "build" else _stage
            p = stage.remote(name, candidate, self._ctx_ref, p)
        return _report.remote(candidate, p)

    def verify(self, candidates: list[Candidate], timeout_s: float | None = None) -> list[Report]:
        refs = [self.submit(c) for c in candidates]
        return list(ray.get(refs, timeout=timeout_s))
