"""``evoagg bench``: our kernels against the tools a user would otherwise pick, on the same
messages, in one run, on one core.

Variants (each checked against the oracle before its speed counts; a wrong fast answer
is reported as wrong, and no ratio uses it):

- kernels ``generic``, ``specialized`` (and ``evolved`` when given): mode ``service`` is
  what a shard does (``actors.kernel.measure``): 64 messages per call, a flush each time
  the watermark (largest event time minus the shard's lateness, 60 s) passes a bucket
  boundary, timed in CPU seconds of the process calls and those flushes; its rows are
  checked against the oracle run on the same schedule (late points dropped alike). Mode
  ``per-message`` is one kernel call per message and a final flush with its rows decoded
  into Python, as peers return rows too, checked against the oracle without lateness.
  ``msg_per_s_process_only`` leaves every flush out: the process calls alone;
- peers ``pyarrow``, ``polars``, ``duckdb`` (``actors/peers.py``): ``per-message``
  (each message as it arrives, folded into running state) and ``bulk`` (all at once).
  Timed: the engine's work on pre-decoded Arrow tables (decoding is *not* timed for
  them, which favours them);
- ``oracle``: the literal Python reference, per message, for scale (one round).

Rounds are interleaved (variant A, B, C, A, B, C, ...) and each result is the median,
so that a noisy neighbour slows every variant alike. Ratios divide medians.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.config import SandboxConfig, TenantConfig
from actors.kernel.build import build
from actors.kernel.host import KernelHost
from actors.oracle import aggregate_messages
from actors.output import Row, output_hash
from actors.payload import Message, decode, encode
from actors.replay import replay
from actors.specialize import materialize, package_name
from actors.workload import Workload, generate


@dataclass
class Variant:
    name: str
    mode: str
    run: Callable[[], tuple[list[Row], float | None]]
    """Returns the rows, and the seconds to count when not the whole call (kernels:
    process and flush calls, not instantiation)."""
    rounds: int
    seconds: list[float] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    error: str | None = None
    process_seconds: list[float] = field(default_factory=list)
    """Kernels: the time inside process calls alone (no flush, no rows into Python)."""


def specialized_wasm(cfg: TenantConfig) -> bytes:
    """The tenant's specialized kernel as ``evoagg specialize`` makes it (cached by source)."""
    with tempfile.TemporaryDirectory(prefix="evoagg-spec-") as tmp:
        crate = materialize(cfg, Path(tmp))
        return build(crate, package_name(cfg)).wasm


SERVICE_LATENESS_S = 60
"""The lateness of the ``service`` mode: the shard's default ``allowed_lateness_s``."""


def _kernel_variant(name: str, mode: str, wasm: bytes, cfg: TenantConfig, payloads: Sequence[bytes], rounds: int) -> Variant:
    service = mode == "service"

    def run() -> tuple[list[Row], float | None]:
        host = KernelHost(wasm, cfg, SandboxConfig(), name=name)
        rep = replay(host, payloads, batch_size=64 if service else 1, flush_lag=SERVICE_LATENESS_S if service else None)
        v.process_seconds.append(rep.process_seconds)
        return rep.rows, rep.kernel_seconds if service else rep.kernel_seconds + rep.final_flush_seconds

    v = Variant(name, mode, run, rounds)
    return v


def _verdict(name: str, cfg: TenantConfig, rows: list[Row], reference: list[Row], ref_hash: str) -> tuple[str, str]:
    from actors.peers import compare

    if output_hash(rows) == ref_hash:
        return "exact", ""
    if name in ("generic", "specialized", "evolved"):
        return "wrong", "a kernel must match the oracle bit for bit"
    a = compare(rows, reference, cfg)
    return a.verdict, a.detail


def run_bench(
    workload: Workload,
    n_messages: int,
    rounds: int = 3,
    evolved: bytes | None = None,
    peers: Sequence[str] = ("pyarrow", "polars", "duckdb"),
    log: Callable[[str], None] = lambda s: None,
    with_profile: bool = False,
) -> dict[str, Any]:
    from actors import peers as peer_mod

    cfg = workload.tenant
    messages: list[Message] = list(generate(workload, n_messages))
    payloads = [encode(m) for m in messages]
    npoints = sum(m.npoints for m in messages)
    log(f"building kernels for org {cfg.org}")
    generic = build().wasm
    spec = specialized_wasm(cfg)
    kernels = [("generic", generic), ("specialized", spec)] + ([("evolved", evolved)] if evolved else [])
    variants = [_kernel_variant(n, m, w, cfg, payloads, rounds) for m in ("per-message", "service") for n, w in kernels]
    prepared = peer_mod.prepare(cfg, [decode(p) for p in payloads])

    def peer_run(peer: str, mode: str) -> Callable[[], tuple[list[Row], float | None]]:
        return lambda: (peer_mod.run(peer, mode, cfg, prepared), None)

    variants += [Variant(p, m, peer_run(p, m), rounds) for p in peers for m in peer_mod.MODES]
    variants.append(Variant("oracle", "per-message", lambda: (aggregate_messages(cfg, messages).rows, None), 1))
    for r in range(max(v.rounds for v in variants)):
        for v in variants:
            if r >= v.rounds or v.error:
                continue
            # The collector off while timing: a full collection, over every row the earlier
            # variants keep, would land on whichever variant happened to trigger it.
            gc.collect()
            gc.disable()
            t0 = time.perf_counter()
            try:
                rows, counted = v.run()
            except Exception as e:  # one broken variant must not cost the others' figures
                v.error = f"{type(e).__name__}: {e}"
                log(f"{v.name} {v.mode} failed: {v.error}")
                continue
            finally:
                gc.enable()
            v.seconds.append(time.perf_counter() - t0 if counted is None else counted)
            if r == 0:
                v.rows = rows
            log(f"round {r + 1}: {v.name} {v.mode}: {len(messages) / v.seconds[-1]:.0f} msg/s")
    reference = next(v for v in variants if v.name == "oracle").rows
    ref_hash = output_hash(reference)
    # The service mode drops late points as a shard does: its reference is the oracle on the same schedule.
    from actors.oracle import aggregate

    service_ref = aggregate(cfg, payloads, 64, SERVICE_LATENESS_S).rows
    service_hash = output_hash(service_ref)
    results: list[dict[str, Any]] = []
    for v in variants:
        if v.error or not v.seconds:
            results.append({"name": v.name, "mode": v.mode, "msg_per_s": None, "points_per_s": None, "agrees_with_oracle": "error", "difference": v.error})
            continue
        secs = statistics.median(v.seconds)
        verdict, detail = _verdict(v.name, cfg, v.rows, *((service_ref, service_hash) if v.mode == "service" else (reference, ref_hash)))
        results.append(
            {
                "name": v.name,
                "mode": v.mode,
                "msg_per_s": round(len(messages) / secs, 1),
                "points_per_s": round(npoints / secs, 1),
                "seconds": [round(s, 4) for s in v.seconds],
                **({"msg_per_s_process_only": round(len(messages) / statistics.median(v.process_seconds), 1)} if v.process_seconds else {}),
                "output_hash": output_hash(v.rows),
                "agrees_with_oracle": verdict,
                **({"difference": detail} if detail else {}),
            }
        )
    out: dict[str, Any] = {
        "workload": workload.name,
        "org": cfg.org,
        "messages": len(messages),
        "points": npoints,
        "rounds": rounds,
        "oracle_hash": ref_hash,
        "timing": wl_timing(workload),
        "service_mode": {"batch": 64, "lateness_s": SERVICE_LATENESS_S, "time": "thread CPU seconds of process calls and watermark flushes"},
        "peer_input": "pre-decoded Arrow tables (decoding not timed for peers)",
        "engine_threads": peer_mod.engine_threads() if peers else {},
        "results": results,
        "ratios": ratios(results),
    }
    if with_profile:
        from actors.profile import profile

        log("profiling the specialized kernel (builds cut variants)")
        out["profile_specialized"] = profile(cfg, payloads, rounds)
    return out


def wl_timing(workload: Workload) -> str:
    """How the workload's traffic is timed, as the report labels it."""
    t = workload.traffic
    if t.timing == "history":
        return f"history: batch-like backfill, {t.points_per_series * t.step_s} s per message (not what agents send)"
    return f"live: recent points, {t.live_window_s} s window, jitter {t.jitter_s} s, late share {t.late_share}"


def ratios(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """Ratios between medians, only of results that agree with the oracle."""

    def speed(name: str, mode: str) -> float | None:
        r = next((r for r in results if r["name"] == name and r["mode"] == mode), None)
        return r["msg_per_s"] if r and r["agrees_with_oracle"] in ("exact", "within-tolerance") else None

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    def process(name: str) -> float | None:
        r = next((r for r in results if r["name"] == name and r["mode"] == "service"), None)
        return r.get("msg_per_s_process_only") if r and r["agrees_with_oracle"] == "exact" else None

    peer_pm = [s for p in ("pyarrow", "polars", "duckdb") if (s := speed(p, "per-message"))]
    peer_bulk = [s for p in ("pyarrow", "polars", "duckdb") if (s := speed(p, "bulk"))]
    best_pm = max(peer_pm) if peer_pm else None
    out = {
        "specialized/generic": div(speed("specialized", "per-message"), speed("generic", "per-message")),
        "specialized/generic (service)": div(speed("specialized", "service"), speed("generic", "service")),
        "specialized/generic (service, process calls only)": div(process("specialized"), process("generic")),
        "generic/best_peer_per_message": div(speed("generic", "per-message"), best_pm),
        "specialized/best_peer_per_message": div(speed("specialized", "per-message"), best_pm),
        "generic/best_peer_bulk": div(speed("generic", "per-message"), max(peer_bulk) if peer_bulk else None),
        "generic/oracle": div(speed("generic", "per-message"), speed("oracle", "per-message")),
    }
    if speed("evolved", "per-message"):
        out["evolved/generic"] = div(speed("evolved", "per-message"), speed("generic", "per-message"))
        out["evolved/specialized"] = div(speed("evolved", "per-message"), speed("specialized", "per-message"))
        out["evolved/generic (service)"] = div(speed("evolved", "service"), speed("generic", "service"))
        out["evolved/specialized (service)"] = div(speed("evolved", "service"), speed("specialized", "service"))
        out["evolved/generic (service, process calls only)"] = div(process("evolved"), process("generic"))
    return out


def plot(report: dict[str, Any], path: Path) -> None:
    """A horizontal bar chart of msg/s (log scale), wrong results hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = [r for r in report["results"] if r["msg_per_s"]]  # a variant that failed has no bar
    labels = [f"{r['name']} ({r['mode']})" for r in res]
    colors = ["#2a7" if r["name"] in ("generic", "specialized", "evolved") else "#888" if r["name"] == "oracle" else "#47c" for r in res]
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(res) + 1.5))
    bars = ax.barh(labels, [r["msg_per_s"] for r in res], color=colors)
    for b, r in zip(bars, res, strict=True):
        if r["agrees_with_oracle"] == "wrong":
            b.set_hatch("xx")
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {r['msg_per_s']:,.0f}", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("messages per second (one core, log scale)")
    ax.set_title(f"{report['workload']}: {report['messages']} messages, {report['points']:,} points; median of {report['rounds']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
