"""Where a specialized kernel's time goes, by subtraction: the kernel is rebuilt with its
work cut short at successive points, each cut is measured beside the others (interleaved
rounds, medians), and a phase costs the difference between consecutive cuts.

Phases (µs per message): ``host`` (Python call, copying the batch in and the result out,
framing), ``decode`` (payload reader: strings, tags, timestamps), ``classify`` (each
string against the tenant's literals and keys), ``points_filter`` (values, buckets,
late check, filter bitsets), ``group_keys`` (series values, combination → slot),
``accumulate`` (bucket lookup and aggregate update). Differences between builds carry
the noise of both; read them as a picture, not to the microsecond.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actors.config import TenantConfig
from actors.kernel.build import build
from actors.kernel.host import KernelHost
from actors.replay import replay
from actors.specialize import materialize, package_name, template_kernel

# (phase, anchor in kernel.rs, replacement): the build returns right after that phase.
_CUTS: list[tuple[str, str, str]] = [
    (
        "host",
        "    fn process_message(&mut self, payload: &[u8]) -> Result<MessageStats, DecodeError> {\n",
        "    fn process_message(&mut self, payload: &[u8]) -> Result<MessageStats, DecodeError> {\n"
        "        if payload.len() < usize::MAX { return Ok(MessageStats::default()); }\n",
    ),
    (
        "decode",
        "let result = m.decode(payload, spec::ORG).map(|()| self.apply(payload, &m.strings, &m.tags, &m.ts, &m.series));",
        "let result = m.decode(payload, spec::ORG).map(|()| MessageStats::default());",
    ),
    (
        "classify",
        "        let mut stats = MessageStats::default();\n        let mut points",
        "        if payload.len() < usize::MAX { self.s_local = local; self.s_bits = bits; return MessageStats::default(); }\n"
        "        let mut stats = MessageStats::default();\n        let mut points",
    ),
    # black_box: without a use of what passed, the compiler would drop the phase's work
    # too, and its cost would show up in the next phase.
    (
        "points_filter",
        "                if spec::BY[q].is_empty() {",
        "                if q < usize::MAX { core::hint::black_box(q); continue; }\n                if spec::BY[q].is_empty() {",
    ),
    (
        "group_keys",
        "                    aggregate(&mut self.groups.slots[slot].buckets, &points, spec::AGG[q]);",
        "                    if q < usize::MAX { core::hint::black_box(slot); continue; }\n"
        "                    aggregate(&mut self.groups.slots[slot].buckets, &points, spec::AGG[q]);",
    ),
    ("group_keys", "                let agg = spec::AGG[q];", "                if q < usize::MAX { continue; }\n                let agg = spec::AGG[q];"),
]


def variants(src: str) -> list[tuple[str, str]]:
    """(phase, source cut right after that phase); the last is the whole kernel."""
    out: list[tuple[str, str]] = []
    for phase, anchor, repl in _CUTS:
        if anchor not in src:
            raise ValueError(f"profile: the kernel has no anchor for {phase!r}; it is not the template's shape")
        if out and out[-1][0] == phase:  # a phase may need several cuts
            out[-1] = (phase, out[-1][1].replace(anchor, repl, 1))
        else:
            out.append((phase, src.replace(anchor, repl, 1)))
    out.append(("accumulate", src))
    return out


def profile(cfg: TenantConfig, payloads: Sequence[bytes], rounds: int = 3, src: str | None = None) -> dict[str, Any]:
    src = src or template_kernel()
    builds: list[tuple[str, bytes]] = []
    for phase, text in variants(src):
        with tempfile.TemporaryDirectory(prefix="evoagg-prof-") as tmp:
            builds.append((phase, build(materialize(cfg, Path(tmp), text), package_name(cfg)).wasm))
    times: dict[str, list[float]] = {p: [] for p, _ in builds}
    for _ in range(rounds):
        for phase, wasm in builds:
            rep = replay(KernelHost(wasm, cfg, name=f"cut after {phase}"), payloads, batch_size=64)
            times[phase].append(rep.kernel_seconds / len(payloads) * 1e6)
    med = {p: statistics.median(t) for p, t in times.items()}
    phases, prev = {}, 0.0
    for phase, _ in builds:
        phases[phase] = round(med[phase] - prev, 2)
        prev = med[phase]
    return {"org": cfg.org, "messages": len(payloads), "batch": 64, "rounds": rounds, "us_per_message": phases, "total_us": round(prev, 2)}
