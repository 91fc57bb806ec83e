"""``evoagg demo``: the main job on embedded defaults, with no network and no API key.

A local Ray; the control plane; two tenants (W1 and W2 from ``configs/``) served by the
generic kernel while traffic sources feed them continuously; then the system improves
each tenant's kernel by itself (verify the specialized kernel, evolve with the offline
proposer on the shard's own training sample, shadow-evaluate on its held-back sample,
sign, push, check, swap) while traffic keeps flowing. The terminal shows a live view;
the run ends once both tenants have been through specialization and the set number of
evolution generations (or at a cap in seconds), with a summary table (or JSON) and a
chart of msg/s over time per tenant with the swaps marked.

Two rates are shown per tenant. *Offered* is the traffic the source sends (paced).
*Capacity* is what the shard's serving module processes per CPU second of its own work
(its process and flush calls, in the shard thread's CPU time): it is what a swap changes,
it does not move when the machine is busy with builds, and it is the figure the summary's
before/after compares (the wall-clock figure is reported beside it).
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORKLOADS = ("configs/workloads/w1.yaml", "configs/workloads/w2.yaml")
RATE_WINDOW_S = 10.0
"""The shards' capacity window (``ShardSettings.rate_window_s``), as the demo sets it."""


_IMPROVEMENT_KEYS = (
    *("stage", "generation", "best_ratio", "built", "summary", "verify_seconds", "specialized_stages"),
    *("specialized", "evolved", "confirmed", "regime", "timeline"),
)


def summarize(
    samples: list[dict[str, Any]], final: dict[str, Any], sent: dict[int, int], chart: str | None, before_until: float, after_from: float | None = None
) -> dict[str, Any]:
    """The run's summary from its samples and the final status (a pure function).
    "Before" is the generic kernel's capacity in the second half of the warm-up; "after"
    the final module's over the samples from ``after_from`` on (when every improvement had
    ended and every module had settled, with nothing else changing on the machine), or
    its last five samples off probation when the run ended at its cap. Both are medians
    of samples a second apart. Capacity is messages per CPU second of the serving
    module's work in the shard; the wall figures beside it move with the load."""
    tenants = []
    reasons: dict[str, int] = {}

    def median(xs: list[float]) -> float | None:
        return round(statistics.median(xs), 1) if xs else None

    for org, st in sorted(final["tenants"].items()):
        mine = [s for s in samples if s["org"] == org and s["capacity"] is not None]
        before = [s for s in mine if s["version"] == 1 and before_until / 2 <= s["t"] <= before_until]
        last_version = st["module"]["version"]
        settled = [s for s in mine if s["version"] == last_version and s["probation"] is None]
        after = [s for s in settled if s["t"] >= after_from] if after_from is not None else settled[-5:]
        tenants.append(
            {
                "org": org,
                "msg_per_s_before": median([s["capacity"] for s in before]),
                "msg_per_s_after": median([s["capacity"] for s in after]),
                "msg_per_s_wall_before": median([s["capacity_wall"] for s in before if s.get("capacity_wall")]),
                "msg_per_s_wall_after": median([s["capacity_wall"] for s in after if s.get("capacity_wall")]),
                "offered_msg_per_s": round(statistics.median([s["offered"] for s in samples if s["org"] == org] or [0.0]), 1),
                "swaps": st["swaps"],
                "rollbacks": st["rollbacks"],
                "final_module": {"version": last_version, "origin": st["module"]["origin"]},
                "messages_in": sent.get(org, 0),
                "messages_accounted": st["messages_accepted"] + sum(st["rejected"].values()),
                "messages_received": st["messages_received"],
                "points_in": st["points_in"],
                "points_late": st["points_late"],
                "points_nonfinite": st["points_nonfinite"],
                "improvement": {k: v for k, v in (st.get("improvement") or {}).items() if k in _IMPROVEMENT_KEYS},
            }
        )
        for k, v in st["rejected"].items():
            reasons[f"message:{k}"] = reasons.get(f"message:{k}", 0) + v
        for k, v in st["swap_rejections"].items():
            reasons[f"module:{k}"] = reasons.get(f"module:{k}", 0) + v
        for k, v in ((st.get("improvement") or {}).get("rejected") or {}).items():
            reasons[f"candidate:{k}"] = reasons.get(f"candidate:{k}", 0) + v
    return {"tenants": tenants, "rejections_by_reason": dict(sorted(reasons.items())), "chart": chart}


def plot(samples: list[dict[str, Any]], swaps: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    orgs = sorted({s["org"] for s in samples})
    fig, axes = plt.subplots(len(orgs), 1, figsize=(10, 3.2 * len(orgs)), squeeze=False)
    for ax, org in zip(axes[:, 0], orgs, strict=False):
        mine = [s for s in samples if s["org"] == org]
        ax.plot([s["t"] for s in mine], [s["capacity"] or float("nan") for s in mine], label="capacity (msg per CPU second of the module)", color="tab:blue")
        ax.plot([s["t"] for s in mine], [s["offered"] for s in mine], label="offered msg/s", color="tab:gray", linestyle="--")
        for sw in (x for x in swaps if x["org"] == org):
            color = "tab:red" if sw["event"] == "RolledBack" else "tab:green"
            ax.axvline(sw["t"], color=color, linestyle=":")
            ax.annotate(sw["label"], (sw["t"], ax.get_ylim()[1] * 0.92), rotation=90, fontsize=7, ha="right", va="top")
        ax.set_title(f"org {org}")
        ax.set_xlabel("seconds")
        ax.set_ylabel("msg/s")
        ax.set_yscale("log")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class _View:
    """The live view: a rich table on a terminal, a line every few seconds otherwise."""

    def __init__(self, live: bool) -> None:
        self.live = None
        self.last_line = 0.0
        if live and sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(stderr=True), refresh_per_second=2)
            self.live.start()

    def show(self, t: float, status: dict[str, Any], events: list[str]) -> None:
        if self.live is not None:
            from rich.console import Group
            from rich.table import Table

            table = Table(title=f"evoagg demo — {t:.0f} s")
            for col in ("org", "offered msg/s", "capacity msg/CPU-s", "(wall)", "points in", "late", "module", "improvement", "best ×", "built", "rejected"):
                table.add_column(col)
            for org, st in sorted(status["tenants"].items()):
                imp = st.get("improvement") or {}
                table.add_row(
                    str(org),
                    f"{st['msg_per_s']:.0f}",
                    f"{st['capacity_msg_per_s'] or 0:,.0f}",
                    f"{st.get('capacity_wall_msg_per_s') or 0:,.0f}",
                    f"{st['points_in']:,}",
                    f"{st['points_late']:,}",
                    f"v{st['module']['version']} {st['module']['origin']}" + (" (probation)" if st["probation"] else ""),
                    str(imp.get("stage", "")),
                    f"{imp['best_ratio']:.2f}" if imp.get("best_ratio") else "",
                    str(imp.get("built", 0)),
                    str(sum((imp.get("rejected") or {}).values()) + sum(st["swap_rejections"].values())),
                )
            self.live.update(Group(table, *events[-8:]))
        elif t - self.last_line >= 10 or events:
            self.last_line = t
            for e in events:
                print(e, file=sys.stderr, flush=True)
            parts = [
                f"org {org}: {st['msg_per_s']:.0f} offered, {st['capacity_msg_per_s'] or 0:,.0f} msg/CPU-s capacity, "
                f"{st['points_late']:,} of {st['points_in']:,} points late, "
                f"v{st['module']['version']} {st['module']['origin']}, {(st.get('improvement') or {}).get('stage', '')}"
                for org, st in sorted(status["tenants"].items())
            ]
            print(f"[{t:5.0f} s] " + " | ".join(parts), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def _reachable(status: dict[str, Any]) -> dict[str, Any]:
    """The status with only the tenants whose shard answered (a restarting shard is
    skipped for a sample, not an error)."""
    return {**status, "tenants": {org: st for org, st in status["tenants"].items() if st.get("reachable", True)}}


def _final_status(ctl: Any, wait_s: float = 60.0) -> dict[str, Any]:
    """The final status, every tenant's shard answering (each is waited for, at most
    ``wait_s``): the summary must account for every tenant."""
    deadline = time.monotonic() + wait_s
    while True:
        status = ctl.status()
        missing = sorted(org for org, st in status["tenants"].items() if not st.get("reachable", True))
        if not missing:
            return status  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise RuntimeError(f"the shards of orgs {missing} did not answer for {wait_s:.0f} s: {status['shards']}")
        time.sleep(1.0)


def _finished(status: dict[str, Any]) -> bool:
    """Every tenant's improvement has ended, no module is on probation, and every shard
    serves the registry's latest version (nothing published is still on its way)."""
    return status["registry"]["reachable"] and all(
        str((st.get("improvement") or {}).get("stage", "")).startswith(("done", "failed"))
        and not st["probation"]
        and (st.get("latest_version") or 0) <= st["module"]["version"]
        for st in status["tenants"].values()
    )


def run_demo(
    out: Path,
    max_seconds: float = 900.0,
    generations: int = 3,
    islands: int = 2,
    live: bool = True,
    workloads: tuple[str, ...] = WORKLOADS,
    offered_msg_per_s: float = 120.0,
    warmup_s: float = 30.0,
    settle_s: float = 30.0,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Runs the demo in ``out`` (its state from an earlier run is replaced: each run tells
    the whole story, generic to evolved). It ends once every tenant's improvement has
    ended and its final module has served one capacity window and ``settle_s`` seconds more (the
    "after" samples), or at ``max_seconds``
    (then no generation starts in the last ``reserve`` of it, so a running one can land)."""
    import ray

    from actors.control import connect
    from actors.evolve.settings import EvolutionConfig
    from actors.kernel.prebuild import prebuild
    from actors.loading import load_workload
    from actors.shard.settings import ShardSettings

    out.mkdir(parents=True, exist_ok=True)
    wls = [load_workload(Path(w)) for w in workloads]
    # The toolchain's first compiles (core and alloc per build slot, the kernels, the
    # proofs' first run) happen here, before the clock: the clock is the system's.
    prebuild([wl.tenant for wl in wls], log)
    state = out / "state"
    if state.exists():
        shutil.rmtree(state)
    ray.init(num_cpus=2, namespace="evoagg", include_dashboard=False, log_to_driver=False)
    ctl = connect(
        root=state,
        detached=False,
        # A shard per tenant: a lane's kernel does not share its process (and its caches)
        # with the other tenant's, whose module and memory change during the run.
        shards=len(wls),
        shard_settings=ShardSettings(allowed_lateness_s=60, probation_batches=4, rate_window_s=RATE_WINDOW_S),
        evolution=EvolutionConfig(generations=generations, islands=islands),
    )
    view = _View(live)
    samples: list[dict[str, Any]] = []
    swaps: list[dict[str, Any]] = []
    seen_events: set[tuple[Any, ...]] = set()
    reserve = min(150.0, max_seconds / 3)
    try:
        for wl in wls:
            ctl.add_tenant(wl.tenant)
            # Paced: on two cores, unpaced sources would take the cores the builds and
            # benchmarks the demo is about need.
            ctl.start_traffic(wl.tenant.org, wl, max_msg_per_s=offered_msg_per_s)
        t0 = time.monotonic()
        started = False
        settle_until: float | None = None
        after_from: float | None = None
        last_swap = 0.0
        while (t := time.monotonic() - t0) < max_seconds:
            if not started and t >= warmup_s:
                for wl in wls:
                    ctl.evolve(wl.tenant.org, within_s=max(5.0, max_seconds - warmup_s - reserve))
                started = True
            status = _reachable(ctl.status())
            lines = []
            for org, st in status["tenants"].items():
                samples.append(
                    {
                        "t": round(t, 2),
                        "org": org,
                        "offered": st["msg_per_s"],
                        "capacity": st["capacity_msg_per_s"],
                        "capacity_wall": st.get("capacity_wall_msg_per_s"),
                        "version": st["module"]["version"],
                        "origin": st["module"]["origin"],
                        "probation": st["probation"],
                    }
                )
                for h in st["history"]:
                    key = (org, h["event"], h.get("at"), h.get("to_version") or h.get("version"))
                    if key in seen_events or h["event"] not in ("Swapped", "RolledBack", "SwapRejected"):
                        continue
                    seen_events.add(key)
                    if h["event"] == "Swapped":
                        label = f"v{h['to_version']} {h['origin']}"
                    elif h["event"] == "RolledBack":
                        label = f"rolled back v{h['bad_version']}"
                    else:
                        label = f"rejected v{h['version']}: {h['reason']}"
                    swaps.append({"t": round(t, 2), "org": org, "event": h["event"], "label": label})
                    lines.append(f"[{t:5.0f} s] org {org}: {label}")
            view.show(t, status, lines)
            if lines:
                last_swap = t
            if started and settle_until is None and _finished(status):
                # "After" is measured from one capacity window (10 s) past the last change,
                # so its samples hold the final modules only, on a machine doing nothing else.
                after_from = max(t, last_swap) + RATE_WINDOW_S
                settle_until = after_from + settle_s
            if settle_until is not None and t >= settle_until:
                break
            time.sleep(1.0)
        summary_end = time.monotonic() - t0
        sent = {}
        for wl in wls:
            sent[wl.tenant.org] = ctl.stop_traffic(wl.tenant.org)["sent"]
            ctl.drain(wl.tenant.org)
        final = _final_status(ctl)
    finally:
        view.close()
        try:
            ctl.shutdown()
        finally:
            ray.shutdown()
    chart = out / "demo.png"
    plot(samples, swaps, chart)
    summary = summarize(samples, final, sent, str(chart), before_until=warmup_s, after_from=after_from)
    summary["max_seconds"] = max_seconds
    summary["generations"] = generations
    summary["ended_after_s"] = round(summary_end, 1)
    summary["finished"] = settle_until is not None
    summary["swaps"] = swaps
    summary["samples"] = samples  # the chart's data: capacity and offered msg/s per tenant, once a second
    (out / "demo.json").write_text(json.dumps(summary, indent=1))
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="evoagg demo: summary (capacity = messages per CPU second of the serving module's work in the shard)")
    for col in ("org", "before", "after", "×", "wall ×", "side by side ×", "swaps", "final module", "messages in", "accounted", "points late"):
        table.add_column(col)
    for t in summary["tenants"]:
        ratio = t["msg_per_s_after"] / t["msg_per_s_before"] if t["msg_per_s_before"] and t["msg_per_s_after"] else None
        wall = t["msg_per_s_wall_after"] / t["msg_per_s_wall_before"] if t["msg_per_s_wall_before"] and t["msg_per_s_wall_after"] else None
        # The final module against the generic one in interleaved rounds (the confirmation):
        # immune to the machine's drift between "before" and "after".
        side = (t["improvement"].get("confirmed") or {}).get("ratio_to_generic") if t["final_module"]["origin"].startswith("evolved") else None
        table.add_row(
            str(t["org"]),
            f"{t['msg_per_s_before'] or 0:,.0f}",
            f"{t['msg_per_s_after'] or 0:,.0f}",
            f"{ratio:.2f}" if ratio else "",
            f"{wall:.2f}" if wall else "",
            f"{side:.2f}" if side else "",
            str(t["swaps"]),
            f"v{t['final_module']['version']} {t['final_module']['origin']}",
            str(t["messages_in"]),
            str(t["messages_accounted"]),
            f"{t['points_late']:,} of {t['points_in']:,}",
        )
    # Not a terminal (a log, a pipe): wide enough for the table, not rich's 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    console.print(f"rejections by reason: {summary['rejections_by_reason'] or 'none'}")
    how = "every improvement finished" if summary["finished"] else "at the cap"
    console.print(f"ended after {summary['ended_after_s']:.0f} s ({how}); chart: {summary['chart']}")
