"""The verification pipeline: what a candidate kernel must pass before it may serve.

    build → validate → proofs → differential → shadow → bench

Each stage is a function of (candidate, context, progress so far) returning the
progress with its :class:`StageResult` appended; ``actors/verify/tasks.py`` runs each
as a Ray task, :func:`verify` runs them in-process. A stage's status is ``passed``,
``failed`` (with the reason) or ``not-run`` (with why: a stage is never reported as
passed when it did not run). A failed stage stops the pipeline: the stages after it
are ``not-run`` ("stopped: <stage> failed"). A candidate is accepted when no stage
failed; ``not-run`` is allowed only for ``build`` (a module given as bare wasm has
nothing to compile) and ``proofs`` (Verus absent, or no source to prove).

No Ray here: the pool is a thin shell over these functions.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from actors.config import SandboxConfig, TenantConfig
from actors.errors import BuildFailed, KernelError, ModuleRejected
from actors.kernel.build import GUEST_WORKSPACE, build
from actors.kernel.host import KernelHost, engine_for
from actors.kernel.measure import Regime, fuel_per_message, race
from actors.kernel.validate import validate_module
from actors.output import Row
from actors.replay import ReplayReport, replay
from actors.specialize import materialize, package_name
from actors.verify.traffic import edge_payloads, fuzzed_payloads

_WASMTIME = importlib.metadata.version("wasmtime")
STAGES = ("build", "validate", "proofs", "differential", "shadow", "bench")
MAY_NOT_RUN = frozenset({"build", "proofs"})


@dataclass(frozen=True)
class Candidate:
    """What is verified: exactly one of a kernel source (the evolvable file, built into the
    tenant's specialized crate), a whole crate's files, or bare module bytes."""

    name: str
    config: TenantConfig
    kernel_src: str | None = None
    files: dict[str, str] | None = None
    """A crate as {relative path: text} (``evoagg verify --source DIR``)."""
    wasm: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.kernel_src, self.files, self.wasm)) != 1:
            raise ValueError("a candidate is exactly one of kernel_src, files, wasm")

    @staticmethod
    def from_dir(name: str, config: TenantConfig, crate: Path) -> Candidate:
        """The crate's sources: its ``Cargo.toml`` and ``src/`` (not build outputs)."""
        paths = [crate / "Cargo.toml", *sorted((crate / "src").rglob("*"))]
        return Candidate(name, config, files={str(p.relative_to(crate)): p.read_text() for p in paths if p.is_file()})


@dataclass(frozen=True)
class Context:
    """What every stage compares against. Held-back messages reach only the shadow stage."""

    config: TenantConfig
    sandbox: SandboxConfig
    baseline: bytes = field(repr=False)
    """The reference module (the tenant's generic kernel): differential and shadow compare to it."""
    current: bytes = field(repr=False)
    """The module serving now: the bench stage measures the candidate against it."""
    held_back: tuple[bytes, ...] = field(repr=False)
    training: tuple[bytes, ...] = field(repr=False)
    edge_seed: int = 0
    regime: Regime = field(default_factory=Regime)
    """How the bench stage measures: the shard's batch, flush schedule, lateness and pace
    (``actors.kernel.measure``)."""
    bar: float | None = None
    """Racing: the ratio over ``current`` a candidate must be able to reach to get more
    than the screen's rounds (None: every candidate gets them)."""
    build_timeout_s: float = 600.0


@dataclass(frozen=True)
class StageResult:
    name: str
    status: str
    """``passed`` | ``failed`` | ``not-run``."""
    reason: str
    seconds: float
    tools: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    """The pipeline so far: what each stage hands the next."""

    stages: tuple[StageResult, ...] = ()
    wasm: bytes | None = field(default=None, repr=False)
    source_hash: str | None = None

    @property
    def stopped_by(self) -> str | None:
        return next((s.name for s in self.stages if s.status == "failed"), None)

    def add(self, result: StageResult, **changes: Any) -> Progress:
        return replace(self, stages=(*self.stages, result), **changes)


@dataclass(frozen=True)
class Report:
    candidate: str
    org: int
    accepted: bool
    stages: tuple[StageResult, ...]
    module_sha256: str | None
    source_hash: str | None
    msg_per_s: float | None
    current_msg_per_s: float | None
    ratio: float | None
    """Candidate msg/s over the current module's, measured side by side in the shard's
    regime (bench stage): CPU seconds per message of the current module over the candidate's."""
    ratio_ci95: tuple[float, float] | None = None
    """The ratio's 95% confidence interval."""
    fuel_per_message: float | None = None
    """Wasmtime fuel (instructions) per message of the candidate, in the same regime."""
    current_fuel_per_message: float | None = None
    """The same for the current module."""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = [asdict(s) for s in self.stages]
        return d

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True, default=str).encode()).hexdigest()

    def failed_stage(self) -> StageResult | None:
        return next((s for s in self.stages if s.status == "failed"), None)


def _timed(name: str, fn: Callable[[], tuple[str, str, dict[str, str], dict[str, Any]]]) -> StageResult:
    t0 = time.perf_counter()
    status, reason, tools, details = fn()
    return StageResult(name, status, reason, round(time.perf_counter() - t0, 3), tools, details)


def _first_error(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("error"):
            return line.strip()
    return output.strip().splitlines()[-1] if output.strip() else ""


def stage_build(c: Candidate, ctx: Context, p: Progress) -> Progress:
    if c.wasm is not None:
        r = StageResult("build", "not-run", "given as a wasm module: nothing to compile", 0.0)
        return p.add(r, wasm=c.wasm)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="evoagg-cand-") as tmp:
        crate = Path(tmp)
        try:
            if c.kernel_src is not None:
                materialize(c.config, crate, c.kernel_src)
                package = package_name(c.config)
            else:
                assert c.files is not None
                for rel, text in c.files.items():
                    (crate / rel).parent.mkdir(parents=True, exist_ok=True)
                    (crate / rel).write_text(text)
                m = re.search(r'^name\s*=\s*"([^"]+)"', c.files.get("Cargo.toml", ""), re.M)
                if not m:
                    raise BuildFailed("the crate has no Cargo.toml with a package name")
                package = m.group(1)
            res = build(crate, package, timeout_s=ctx.build_timeout_s)
        except BuildFailed as e:
            detail = {"output": e.output}
            reason = f"{str(e).splitlines()[0]}: {_first_error(e.output)}".rstrip(": ")
            return p.add(StageResult("build", "failed", reason, round(time.perf_counter() - t0, 3), {}, detail))
    tools = {"rustc": res.toolchain.version, "mode": res.toolchain.mode}
    r = StageResult("build", "passed", "cached" if res.cached else "compiled", round(time.perf_counter() - t0, 3), tools, {"wasm_bytes": len(res.wasm)})
    return p.add(r, wasm=res.wasm, source_hash=res.source_hash)


def stage_validate(c: Candidate, ctx: Context, p: Progress) -> Progress:
    def run() -> tuple[str, str, dict[str, str], dict[str, Any]]:
        assert p.wasm is not None
        tools = {"wasmtime-py": _WASMTIME}
        try:
            _, info = validate_module(engine_for(ctx.sandbox), p.wasm, ctx.sandbox)
            # It must also start: instantiate and init with the tenant's configuration.
            KernelHost(p.wasm, ctx.config, ctx.sandbox, name=c.name)
        except ModuleRejected as e:
            return "failed", str(e), tools, {}
        return "passed", "no imports; ABI exports and limits as required; initialised", tools, {"exports": sorted(info.exports)}

    return p.add(_timed("validate", run))


def _uses_shared_codec(c: Candidate) -> bool:
    if c.kernel_src is not None:
        return True
    manifest = (c.files or {}).get("Cargo.toml", "")
    m = re.search(r'^codec\s*=\s*\{[^}]*path\s*=\s*"([^"]+)"', manifest, re.M)
    return m is not None and Path(m.group(1)).resolve() == (GUEST_WORKSPACE / "codec").resolve()


def decoder_of(c: Candidate) -> str:
    """Which decoder the candidate's messages go through, as the proofs stage reports it."""
    src = c.kernel_src if c.kernel_src is not None else "\n".join((c.files or {}).values())
    if "Decoded" in src or "PayloadReader" in src:
        return "shared reader (codec::PayloadReader)"
    return "own walk over the shared codec's primitives (varint, zigzag, StreamVByte); the walk is fuzzed by the differential stage, not proved"


def stage_proofs(c: Candidate, ctx: Context, p: Progress) -> Progress:
    from actors.verify.proofs import run_codec_checks

    if c.wasm is not None:
        return p.add(StageResult("proofs", "not-run", "given as a wasm module: no source to tie to the proved codec", 0.0))
    if not _uses_shared_codec(c):
        return p.add(StageResult("proofs", "not-run", "the crate does not decode with the shared, proved guest-rust/codec", 0.0))
    t0 = time.perf_counter()
    checks = run_codec_checks()
    decoder = decoder_of(c)
    details = {"decoder": decoder, "checks": [asdict(k) for k in checks]}
    tools = {k.kind: k.tool for k in checks}
    failed = [k for k in checks if k.status == "failed"]
    verus = [k for k in checks if k.kind == "verus"]
    ran = [k for k in checks if k.status == "passed"]
    secs = round(time.perf_counter() - t0, 3)
    if failed:
        return p.add(StageResult("proofs", "failed", "; ".join(f"{k.name}: {k.reason}" for k in failed), secs, tools, details))
    if verus and all(k.status == "passed" for k in verus):
        return p.add(StageResult("proofs", "passed", f"Verus proofs of the shared codec passed ({len(ran)} checks); decoder: {decoder}", secs, tools, details))
    why = "; ".join(sorted({k.reason for k in verus if k.status == "not-run"})) or "no Verus check"
    return p.add(
        StageResult(
            "proofs",
            "not-run",
            f"Verus did not run ({why}); {len(ran)} model/exhaustive checks of the shared codec passed, listed in details; decoder: {decoder}",
            secs,
            tools,
            details,
        )
    )


def _replay(wasm: bytes, ctx: Context, payloads: Sequence[bytes], batch: int, flush_lag: int | None, name: str) -> ReplayReport:
    return replay(KernelHost(wasm, ctx.config, ctx.sandbox, name=name), payloads, batch_size=batch, flush_lag=flush_lag)


@dataclass(frozen=True)
class _Run:
    """A replay's outcome as the comparison needs it (the summary hashes the rows once)."""

    summary: dict[str, Any]
    rows: frozenset[Row]
    refusals: tuple[tuple[int, str, int], ...]


def _run(wasm: bytes, ctx: Context, payloads: tuple[bytes, ...], batch: int, flush_lag: int | None, name: str) -> _Run:
    rep = _replay(wasm, ctx, payloads, batch, flush_lag, name)
    return _Run(rep.summary(), frozenset(rep.rows), tuple(rep.refusals))


# The baseline's outcome on the same traffic is the same for every candidate: computed once
# per process (a verifier worker serves many candidates of a tenant).
_baseline_run = functools.lru_cache(maxsize=32)(_run)

_COMPARED = ("accepted", "rejected", "points", "nonfinite_points", "late_points", "rows", "output_hash")


def _compare(mine: _Run, ref: _Run) -> str | None:
    # Every refusal the same: which message, why and where (the first difference).
    for x, y in zip(mine.refusals, ref.refusals, strict=False):
        if x != y:
            return f"refusals differ: candidate {x}, baseline {y} (message, reason, offset)"
    a, b = mine.summary, ref.summary
    for k in _COMPARED:
        if a[k] != b[k]:
            if k == "output_hash":
                missing = sorted(ref.rows - mine.rows)[:1]
                extra = sorted(mine.rows - ref.rows)[:1]
                return f"output differs: e.g. baseline row {list(missing[0]) if missing else None}, candidate row {list(extra[0]) if extra else None}"
            return f"{k}: candidate {a[k]}, baseline {b[k]}"
    return None


def _against_baseline(
    c: Candidate, ctx: Context, p: Progress, payloads: tuple[bytes, ...], modes: Sequence[tuple[int, int | None]]
) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    assert p.wasm is not None
    details: dict[str, Any] = {"messages": len(payloads), "runs": []}
    for batch, lag in modes:
        try:
            mine = _run(p.wasm, ctx, payloads, batch, lag, c.name)
        except (KernelError, ModuleRejected) as e:
            return "failed", f"{type(e).__name__}: {e}", {}, details
        ref = _baseline_run(ctx.baseline, ctx, payloads, batch, lag, "baseline")
        details["runs"].append({"batch": batch, "flush_lag": lag, "output_hash": mine.summary["output_hash"], "rows": mine.summary["rows"]})
        diff = _compare(mine, ref)
        if diff:
            return "failed", f"batch {batch}, flush lag {lag}: {diff}", {}, details
    return "passed", f"hash-equal to the baseline on {len(payloads)} messages in {len(modes)} runs", {}, details


def stage_differential(c: Candidate, ctx: Context, p: Progress) -> Progress:
    """Edge cases in three batchings, then decoder fuzzing: mutated and truncated payloads
    refused exactly as the baseline (shared reader) refuses them, and nothing else changed."""
    payloads = tuple(edge_payloads(ctx.config, ctx.edge_seed))
    modes = [(1, None), (7, 2 * ctx.config.interval_s), (64, 0)]
    fuzzed = tuple(fuzzed_payloads(ctx.config, ctx.edge_seed))

    def run() -> tuple[str, str, dict[str, str], dict[str, Any]]:
        status, reason, tools, details = _against_baseline(c, ctx, p, payloads, modes)
        if status != "passed":
            return status, reason, tools, details
        f_status, f_reason, _, f_details = _against_baseline(c, ctx, p, fuzzed, [(16, None)])
        details["fuzz"] = {"messages": len(fuzzed), **{k: v for k, v in f_details.items() if k != "messages"}}
        if f_status != "passed":
            return f_status, f"decoder fuzzing: {f_reason}", tools, details
        refused = sum(1 for _ in _baseline_run(ctx.baseline, ctx, fuzzed, 16, None, "baseline").refusals)
        return "passed", f"{reason}; {len(fuzzed)} fuzzed payloads ({refused} refused) refused and aggregated as the baseline does", tools, details

    return p.add(_timed("differential", run))


def stage_shadow(c: Candidate, ctx: Context, p: Progress) -> Progress:
    if not ctx.held_back:
        return p.add(StageResult("shadow", "failed", "no held-back messages to shadow-evaluate on", 0.0))
    return p.add(_timed("shadow", lambda: _against_baseline(c, ctx, p, ctx.held_back, [(64, None)])))


def stage_bench(c: Candidate, ctx: Context, p: Progress) -> Progress:
    def run() -> tuple[str, str, dict[str, str], dict[str, Any]]:
        assert p.wasm is not None
        if not ctx.training:
            return "failed", "no training messages to measure on", {}, {}
        res, ratio, contender = race((c.name, p.wasm), ("current", ctx.current), ctx.config, ctx.training, ctx.regime, ctx.bar, ctx.sandbox)
        mine, cur = res[c.name], res["current"]
        if mine.error:
            return "failed", mine.error, {}, {}
        if cur.error:
            raise RuntimeError(f"the current module cannot be measured: {cur.error}")
        fuel = fuel_per_message(p.wasm, ctx.config, ctx.training, ctx.regime, ctx.sandbox)
        cur_fuel = _current_fuel(ctx.current, ctx)
        details = {
            "msg_per_s": round(mine.msg_per_s, 1),
            "current_msg_per_s": round(cur.msg_per_s, 1),
            **ratio.to_json(),
            "contender": contender,
            "bar": ctx.bar,
            "fuel_per_message": round(fuel, 1),
            "current_fuel_per_message": round(cur_fuel, 1),
            "regime": {"batch": ctx.regime.batch, "lateness_s": ctx.regime.lateness_s, "pace_s": ctx.regime.pace_s, "time": "thread CPU"},
            "candidate": mine.summary(),
            "current": cur.summary(),
            "training_messages": len(ctx.training),
        }
        why = f"{mine.msg_per_s:.0f} msg/CPU-s vs current {cur.msg_per_s:.0f} "
        why += f"(x{ratio.value:.3f}, 95% CI {ratio.low:.3f}..{ratio.high:.3f}, {ratio.rounds} rounds"
        why += f"{'' if contender else ', screened out'}); fuel/msg {fuel:.0f} vs {cur_fuel:.0f}"
        return "passed", why, {}, details

    return p.add(_timed("bench", run))


@functools.lru_cache(maxsize=8)
def _current_fuel(wasm: bytes, ctx: Context) -> float:
    return fuel_per_message(wasm, ctx.config, ctx.training, ctx.regime, ctx.sandbox)


STAGE_FUNCS: dict[str, Callable[[Candidate, Context, Progress], Progress]] = {
    "build": stage_build,
    "validate": stage_validate,
    "proofs": stage_proofs,
    "differential": stage_differential,
    "shadow": stage_shadow,
    "bench": stage_bench,
}


def run_stage(name: str, c: Candidate, ctx: Context, p: Progress) -> Progress:
    """Runs stage ``name`` unless an earlier one failed; never raises for a bad candidate."""
    stopped = p.stopped_by
    if stopped is not None:
        return p.add(StageResult(name, "not-run", f"stopped: {stopped} failed", 0.0))
    try:
        return STAGE_FUNCS[name](c, ctx, p)
    except Exception as e:  # a stage's own bug must not read as a verdict on the candidate
        return p.add(StageResult(name, "failed", f"stage error: {type(e).__name__}: {e}", 0.0))


def report(c: Candidate, p: Progress) -> Report:
    accepted = all(s.status == "passed" or (s.status == "not-run" and s.name in MAY_NOT_RUN) for s in p.stages) and len(p.stages) == len(STAGES)
    bench = next((s for s in p.stages if s.name == "bench" and s.status == "passed"), None)
    d = bench.details if bench else {}
    return Report(
        candidate=c.name,
        org=c.config.org,
        accepted=accepted,
        stages=p.stages,
        module_sha256=hashlib.sha256(p.wasm).hexdigest() if p.wasm else None,
        source_hash=p.source_hash,
        msg_per_s=d.get("msg_per_s"),
        current_msg_per_s=d.get("current_msg_per_s"),
        ratio=d.get("ratio"),
        ratio_ci95=tuple(d["ci95"]) if d.get("ci95") else None,
        fuel_per_message=d.get("fuel_per_message"),
        current_fuel_per_message=d.get("current_fuel_per_message"),
    )


def verify(c: Candidate, ctx: Context) -> Report:
    """The whole pipeline in this process (the pool runs the same stages as Ray tasks)."""
    p = Progress()
    for name in STAGES:
        p = run_stage(name, c, ctx, p)
    return report(c, p)
