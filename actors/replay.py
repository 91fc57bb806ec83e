"""Running a stream of payloads through a kernel: what ``evoagg replay`` does.

A pure function of its inputs (no Ray): payloads are cut into batches, each batch is
one call into the kernel, flushes follow the watermark as in a shard (with a flush lag),
every bucket is flushed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from actors.errors import PayloadError
from actors.kernel.abi import watermark
from actors.kernel.host import KernelHost
from actors.oracle import OracleResult
from actors.output import Row, canonical, output_hash


@dataclass
class ReplayReport:
    messages: int = 0
    """Every message read, including those the reader refused before the kernel."""
    kernel_messages: int = 0
    """Messages handed to the kernel: what msg/s counts."""
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    points: int = 0
    nonfinite: int = 0
    late: int = 0
    max_ts: int | None = None
    process_seconds: float = 0.0
    """CPU seconds inside ``process`` calls."""
    flush_seconds: float = 0.0
    """CPU seconds inside the flushes after batches (``flush_lag``): part of serving."""
    final_flush_seconds: float = 0.0
    """CPU seconds of the flush of every bucket at the end (reported apart: a shard never does it)."""
    rows: list[Row] = field(default_factory=list)
    refusals: list[tuple[int, str, int]] = field(default_factory=list)
    """Every message the kernel refused: (index in the stream, reason, byte offset)."""

    @property
    def kernel_seconds(self) -> float:
        """What serving the messages cost: process calls and the flushes after batches."""
        return self.process_seconds + self.flush_seconds

    @property
    def msg_per_s(self) -> float:
        return self.kernel_messages / self.kernel_seconds if self.kernel_seconds else 0.0

    @property
    def points_per_s(self) -> float:
        return self.points / self.kernel_seconds if self.kernel_seconds else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "points": self.points,
            "nonfinite_points": self.nonfinite,
            "late_points": self.late,
            "rows": len(self.rows),
            "kernel_seconds": round(self.kernel_seconds, 6),
            "process_seconds": round(self.process_seconds, 6),
            "flush_seconds": round(self.flush_seconds, 6),
            "final_flush_seconds": round(self.final_flush_seconds, 6),
            "msg_per_s": round(self.msg_per_s, 1),
            "points_per_s": round(self.points_per_s, 1),
            "time": "thread CPU seconds of process calls and flushes after batches",
            "output_hash": output_hash(self.rows),
        }


def replay(
    host: KernelHost,
    items: Iterable[bytes | PayloadError],
    batch_size: int = 64,
    flush_lag: int | None = None,
    clock: Callable[[], float] = time.thread_time,
) -> ReplayReport:
    """Feeds ``items`` (payloads, or errors the reader already found) through ``host``.

    Without ``flush_lag`` every bucket stays open until the end. With it, the flushes a
    shard with that lateness makes: after a batch, when the watermark (largest timestamp
    seen - ``flush_lag``, down to a bucket boundary) has passed a new boundary, every
    bucket ending at or before it is flushed, which bounds memory on long streams; points
    arriving later for a flushed bucket are counted as late and dropped
    (``oracle.aggregate`` models the same).

    Throughput counts the CPU time (``clock``, the thread's) inside ``process`` calls and
    those flushes: what serving the stream costs. The final flush of every bucket, which
    a shard never makes, is reported apart.
    """
    rep = ReplayReport()
    batch: list[bytes] = []
    nbatch = 0
    flushed_to: int | None = None

    def run() -> None:
        nonlocal nbatch, flushed_to
        t0 = clock()
        res = host.process(batch, batch=f"#{nbatch} (messages {rep.messages}..{rep.messages + len(batch) - 1})")
        rep.process_seconds += clock() - t0
        rep.messages += len(batch)
        rep.kernel_messages += len(batch)
        rep.accepted += res.accepted
        rep.points += res.points
        rep.nonfinite += res.nonfinite
        rep.late += res.late
        if res.max_ts is not None:
            rep.max_ts = res.max_ts if rep.max_ts is None else max(rep.max_ts, res.max_ts)
        for r in res.rejections:
            rep.rejected[r.reason] = rep.rejected.get(r.reason, 0) + 1
            rep.refusals.append((rep.messages - len(batch) + r.index, r.reason, r.offset))
        batch.clear()
        nbatch += 1
        if flush_lag is not None and rep.max_ts is not None:
            wm = watermark(rep.max_ts, flush_lag, host.config.interval_s)
            if flushed_to is None or wm > flushed_to:
                t1 = clock()
                rep.rows += host.flush(wm, batch=f"flush after #{nbatch - 1}")
                rep.flush_seconds += clock() - t1
                flushed_to = wm

    for item in items:
        if isinstance(item, PayloadError):
            rep.messages += 1
            rep.rejected[item.reason] = rep.rejected.get(item.reason, 0) + 1
            continue
        batch.append(item)
        if len(batch) >= batch_size:
            run()
    if batch:
        run()
    t0 = clock()
    rep.rows += host.flush()
    rep.final_flush_seconds += clock() - t0
    return rep


def disagreements(rep: ReplayReport, ref: OracleResult, same_rows: bool | None = None) -> list[dict[str, object]]:
    """Where a replay differs from the oracle: counts, and the first differing row.

    ``same_rows`` is whether the two output hashes are equal, when the caller has them
    already (hashing sorts every row; on large outputs that is not free).
    """
    found: list[dict[str, object]] = []
    if same_rows is None:
        same_rows = output_hash(rep.rows) == output_hash(ref.rows)
    if not same_rows:
        mine, theirs = canonical(rep.rows), canonical(ref.rows)
        first = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), min(len(mine), len(theirs)))
        found.append(
            {
                "what": "rows",
                "kernel_rows": len(mine),
                "oracle_rows": len(theirs),
                "first_difference": {
                    "kernel": list(mine[first]) if first < len(mine) else None,
                    "oracle": list(theirs[first]) if first < len(theirs) else None,
                },
            }
        )
    for what, got, want in (
        ("accepted", rep.accepted, ref.accepted),
        ("rejected", rep.rejected, ref.rejected),
        ("points", rep.points, ref.points),
        ("nonfinite_points", rep.nonfinite, ref.nonfinite),
        ("late_points", rep.late, ref.late),
    ):
        if got != want:
            found.append({"what": what, "kernel": got, "oracle": want})
    return found
