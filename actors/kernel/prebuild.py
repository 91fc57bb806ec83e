"""Paying for the toolchain's first compiles up front: :func:`prebuild`.

From an empty cache, the first builds are slow: with ``-Zbuild-std`` every build slot
compiles core and alloc (20-80 s each), and the generic kernel, each tenant's
specialized kernel and the codec proof checks (which build codec-probe and run z3) take
their first turn. ``evoagg prebuild`` does all of it before a timed job (the demo, the
tests), so their clocks cover the system's work, not the toolchain's. Every step is
cached; a warm step costs a file check or a cache lookup.

Which core and alloc: cargo compiles them once per profile in effect, and a crate that
is also an ``rlib`` (kernel-generic) gets other ones than a ``cdylib``-only crate (the
specialized kernels, codec-probe). The slots are warmed for the latter, which evolution
builds again and again, by building a specialized kernel in each; the generic kernel's
own core and alloc compile once, in the slot that its one build takes.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from actors.config import TenantConfig
from actors.kernel.build import GUEST_WORKSPACE, TARGET, Toolchain, build, build_slots, target_dir, toolchain
from actors.specialize import materialize, package_name
from actors.verify.proofs import run_codec_checks

WARM_MARK = "evoagg-warm.json"
"""In a slot's target dir: the toolchain that warmed it and the core rlibs present then."""

Log = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    step: str
    already_done: bool
    seconds: float
    detail: str = ""


def _core_rlibs(slot: int) -> list[str]:
    return sorted(p.name for p in (target_dir(slot) / TARGET / "release" / "deps").glob("libcore-*.rlib"))


def slot_is_warm(slot: int, tc: Toolchain) -> bool:
    """Whether slot ``slot`` has compiled the core and alloc that specialized kernels use.

    Any ``libcore-*.rlib`` is not enough: the generic kernel's build leaves one that the
    specialized kernels do not use (see the module docstring). So a warmed slot carries
    a mark, valid while its toolchain is the current one and its rlibs are still there.
    """
    if tc.mode != "build-std":
        return True
    try:
        mark = json.loads((target_dir(slot) / WARM_MARK).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(mark, dict) or mark.get("toolchain") != tc.version or not isinstance(mark.get("core"), list):
        return False
    return bool(mark["core"]) and set(mark["core"]) <= set(_core_rlibs(slot))


def _done(log: Log, name: str, t0: float, detail: str = "") -> Step:
    seconds = round(time.monotonic() - t0, 2)
    log(f"prebuild: {name}: done in {seconds:.1f} s" + (f" ({detail})" if detail else ""))
    return Step(name, False, seconds, detail)


def _already(log: Log, name: str, t0: float, detail: str) -> Step:
    log(f"prebuild: {name}: already {detail}")
    return Step(name, True, round(time.monotonic() - t0, 2), detail)


def _warm_slot(slot: int, crate: Path, package: str, tc: Toolchain, log: Log) -> Step:
    name = f"core and alloc for build slot {slot}"
    t0 = time.monotonic()
    if tc.mode != "build-std":
        return _already(log, name, t0, "there (the wasm32 standard library is installed)")
    if slot_is_warm(slot, tc):
        return _already(log, name, t0, "compiled")
    log(f"prebuild: {name} (first time: about a minute)")
    # Forced: the crate's wasm may be cached already, and only cargo fills the slot.
    build(crate, package, slot=slot, force=True)
    (target_dir(slot) / WARM_MARK).write_text(json.dumps({"toolchain": tc.version, "core": _core_rlibs(slot)}))
    return _done(log, name, t0)


def _kernel(name: str, crate: Path, package: str, first_time: str, log: Log) -> Step:
    t0 = time.monotonic()
    res = build(crate, package, on_compile=lambda _msg: log(f"prebuild: {name} (first time: {first_time})"))
    return _already(log, name, t0, "built") if res.cached else _done(log, name, t0)


def _proofs(log: Log) -> Step:
    name = "codec proof checks"
    t0 = time.monotonic()
    checks = run_codec_checks()
    counts = Counter(c.status for c in checks)
    detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    # A result served from the proofs cache says so in its reason (actors.verify.proofs.cache).
    if checks and all("[cached " in c.reason for c in checks):
        return _already(log, name, t0, f"run ({detail})")
    return _done(log, name, t0, detail)


def prebuild(tenants: list[TenantConfig], log: Log) -> dict[str, Any]:
    """Compiles core and alloc in every build slot, builds the generic kernel and each
    tenant's specialized kernel, and runs the codec proof checks once, so that later
    builds and checks are cache hits or quick. Returns the steps and their seconds;
    :class:`~actors.errors.BuildFailed` when a build fails."""
    t0 = time.monotonic()
    tc = toolchain()  # detected here once, before the threads share it
    slots = build_slots()
    with tempfile.TemporaryDirectory(prefix="evoagg-prebuild-") as tmp:
        crates = [(cfg, materialize(cfg, Path(tmp) / f"org{cfg.org}")) for cfg in tenants]
        # A specialized kernel warms the slots (what evolution builds); codec-probe, a
        # cdylib too, when there is no tenant.
        warm_crate, warm_package = (crates[0][1], package_name(crates[0][0])) if crates else (GUEST_WORKSPACE, "codec-probe")
        # One thread per slot: each takes its own slot, so cold slots compile side by side.
        with ThreadPoolExecutor(max_workers=slots) as pool:
            steps = list(pool.map(lambda i: _warm_slot(i, warm_crate, warm_package, tc, log), range(slots)))
        # The proof checks are mostly z3 (one core): they run beside the kernel builds.
        with ThreadPoolExecutor(max_workers=1) as pool:
            proofs = pool.submit(_proofs, log)
            steps.append(_kernel("generic kernel", GUEST_WORKSPACE, "kernel-generic", "about 30 s, with its own core and alloc", log))
            for cfg, crate in crates:
                steps.append(_kernel(f"{package_name(cfg)} (org {cfg.org})", crate, package_name(cfg), "a few seconds", log))
            steps.append(proofs.result())
    return {
        "toolchain": f"{tc.version} ({tc.mode})",
        "build_slots": slots,
        "seconds": round(time.monotonic() - t0, 2),
        "steps": [asdict(s) for s in steps],
    }
