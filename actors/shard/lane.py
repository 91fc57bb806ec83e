"""One org on a shard: its serving module, its view's watermark, the batches its open
buckets came from, and how a new module is checked, rebuilt, swapped, watched and
rolled back. No Ray, no files: :mod:`actors.shard.state` drives lanes and journals.

**Where the view lives.** The aggregates of open buckets live inside the serving
module's memory. A lane also keeps, in order, the accepted payloads of every batch
that may still have points in an open bucket (``retained``): a batch is let go once
the watermark has passed the end of the bucket of its latest point. Because a
module's output is a pure function of the payloads it was given in order, a fresh
instance given ``flush(flushed_to)`` and then the retained batches holds *bit for bit*
the same open aggregates as the live one: every point of an open bucket was accepted
live (the watermark only rises) and is accepted again, in the same order; every other
point is late for the fresh instance and changes nothing. That is how a new module
takes over (swap), how a trapped instance is replaced, and how a restarted shard
rebuilds from its checkpoint.

**A swap**, in three steps so that ingest never waits for a compile:

1. ``begin_swap`` (under the shard's lock, cheap): the signature against a trusted
   key, the manifest against the bytes, the tenant, a version newer than any served
   and not marked bad. It snapshots the watermark and retained batches, and from now
   on records every batch and flush it applies (``ops``).
2. ``prepare`` (no lock, off the ingest path): validates and compiles the module
   (import allow-list, exports, limits, in :class:`actors.kernel.host.KernelHost`),
   compares it with the serving module on the org's held-back messages (fresh
   instances of both; counts and output hash must be equal), and rebuilds its view
   from the snapshot.
3. ``commit`` (under the lock: this is the pause): applies the recorded ops, checking
   that every flush gives the rows the serving module emitted, then swaps. Batches in
   flight finished on the old module; the next batch runs on the new one.

**Probation.** After a swap the previous module keeps running beside the new one, on
the same batches, for ``probation_batches`` batches and until at least one flush with
rows was compared. The previous module's results are what is counted and emitted, so
a wrong module never reaches downstream: if the new one traps, or its counts or rows
differ, the lane rolls back to the previous module (whose view is exact) and reports
the version bad. A module that passes becomes the one whose results count.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from actors.accounting import OrgAccount, SlidingRate
from actors.config import TenantConfig
from actors.errors import KernelError, ModuleRejected
from actors.kernel.abi import FLUSH_ALL, BatchResult, Rejection, by_reason, config_hash, watermark
from actors.output import Row, output_hash
from actors.shard.settings import ShardSettings
from actors.signing import SignedManifest, TrustStore, check_module

T = TypeVar("T")


class Kernel(Protocol):
    """What a lane needs of a running module (:class:`actors.kernel.host.KernelHost`)."""

    def process(self, payloads: Sequence[bytes], batch: str = "") -> BatchResult: ...

    def flush(self, watermark: int = FLUSH_ALL, batch: str = "flush") -> list[Row]: ...


KernelFactory = Callable[[bytes, TenantConfig], Kernel]
"""Validates, compiles and starts a module for a tenant; raises ``ModuleRejected``."""


@dataclass(frozen=True)
class ModuleEntry:
    """A module a lane may serve: its signed manifest and its bytes."""

    version: int
    """The registry's version (per org and config)."""
    origin: str
    """Where it came from: ``generic``, ``specialized``, ``evolved gen N``."""
    sha256: str
    """SHA-256 of ``wasm`` (checked against the signed manifest before use)."""
    wasm: bytes
    """The module."""
    signed: SignedManifest | None = None
    """The signed manifest it arrived with."""

    @classmethod
    def of(cls, signed: SignedManifest, wasm: bytes) -> ModuleEntry:
        m = signed.manifest
        return cls(m.version, m.origin, m.module_sha256, wasm, signed)


@dataclass
class Served:
    """A module with a live instance."""

    entry: ModuleEntry
    kernel: Kernel


@dataclass(frozen=True)
class Retained:
    """A batch whose points may still be in open buckets: its accepted payloads, in order."""

    payloads: tuple[bytes, ...]
    max_ts: int


# Events: what happened, for the shell to act on (sink, journal, registry, logs).
@dataclass(frozen=True)
class Flushed:
    org: int
    flush_seq: int
    rows: list[Row]


@dataclass(frozen=True)
class Swapped:
    org: int
    from_version: int
    to_version: int
    origin: str
    shadow_messages: int


@dataclass(frozen=True)
class SwapRejected:
    org: int
    version: int
    reason: str
    detail: str
    report_bad: bool
    """The module is signed but misbehaves: the registry should mark it bad for every shard."""


@dataclass(frozen=True)
class RolledBack:
    org: int
    bad_version: int
    to_version: int
    reason: str


@dataclass(frozen=True)
class Promoted:
    """The module whose results count changed (probation passed, or a revoked one fell back)."""

    org: int
    entry: ModuleEntry


@dataclass(frozen=True)
class MessageTrapped:
    org: int
    version: int
    index: int
    detail: str


Event = Flushed | Swapped | SwapRejected | RolledBack | Promoted | MessageTrapped


@dataclass
class PendingSwap:
    """A swap between ``begin_swap`` and ``commit``: what it was based on and what happened since."""

    entry: ModuleEntry
    against: ModuleEntry
    flushed_to: int | None
    retained: tuple[Retained, ...]
    holdout: tuple[bytes, ...]
    ops: list[tuple[Any, ...]] = field(default_factory=list)
    applied: int = 0
    """How many of ``ops`` the new instance has caught up on."""


@dataclass(frozen=True)
class Prepared:
    pending: PendingSwap
    kernel: Kernel
    shadow_messages: int
    seconds: float


@dataclass
class LaneState:
    """Everything needed to rebuild a lane elsewhere (a checkpoint, or a moved org)."""

    config: TenantConfig
    entry: ModuleEntry
    fallback: ModuleEntry | None
    flushed_to: int | None
    max_ts: int | None
    flush_seq: int
    retained: list[Retained]
    account: dict[str, Any]
    bad_versions: set[int]


class _Mismatch(Exception):
    pass


def _counts(r: BatchResult) -> tuple[Any, ...]:
    return (r.accepted, r.points, r.nonfinite, r.late, r.max_ts, [(x.index, x.reason) for x in r.rejections])


class Lane:
    def __init__(
        self,
        config: TenantConfig,
        entry: ModuleEntry,
        settings: ShardSettings,
        make_kernel: KernelFactory,
        trust: TrustStore,
        clock: Callable[[], float],
        state: LaneState | None = None,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        """``clock``: wall time (seconds); ``cpu_clock``: the CPU time of the calling thread,
        which times the module's work (capacity)."""
        self.config = config
        self.config_hash = config_hash(config)
        self.settings = settings
        self.make_kernel = make_kernel
        self.trust = trust
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.flushed_to: int | None = None
        self.max_ts: int | None = None
        self.flush_seq = 0
        self.retained: deque[Retained] = deque()
        self.account = (
            OrgAccount(msg_rate=SlidingRate(settings.rate_window_s)) if state is None else OrgAccount.from_state(state.account, settings.rate_window_s)
        )
        self.bad_versions: set[int] = set()
        self.fallback: ModuleEntry | None = None
        self.previous: Served | None = None
        self.probation_batches = 0
        self.probation_rows = 0
        self.pending: PendingSwap | None = None
        self.queued: tuple[SignedManifest, bytes] | None = None
        self._isolated = False
        # Per batch: (clock, messages, CPU seconds in the serving module, wall seconds of the lane's work).
        self._busy: deque[tuple[float, int, float, float]] = deque(maxlen=100_000)
        self._module_cpu = 0.0
        # Where the event-time pace is measured from: (messages received, largest event time).
        self._pace_from: tuple[int, int] | None = None
        self._batches = 0
        self._batch_messages = 0
        if state is not None:
            self.flushed_to, self.max_ts, self.flush_seq = state.flushed_to, state.max_ts, state.flush_seq
            self.retained = deque(state.retained)
            self.bad_versions = set(state.bad_versions)
            self.fallback = state.fallback
        self.served = Served(entry, self._fresh(entry.wasm))
        if state is None:
            self.account.record_module(entry.version, entry.origin, clock())

    @property
    def org(self) -> int:
        return self.config.org

    @property
    def authoritative(self) -> Served:
        """The module whose results are counted and emitted (the previous one, on probation)."""
        return self.previous if self.previous is not None else self.served

    # --- the data path -------------------------------------------------------------

    def ingest(self, payloads: Sequence[bytes], label: str = "", skip: frozenset[int] = frozenset()) -> tuple[BatchResult, list[Event]]:
        """Runs one batch; returns its result (as counted) and what happened. Messages
        at the indices in ``skip`` are rejected as ``kernel_trap`` without running: on
        replay, the ones that trapped live (a deadline depends on the machine's load, so
        replay must not decide again)."""
        events: list[Event] = []
        self._isolated = False
        self._module_cpu = 0.0
        t0 = self.clock()
        if skip:
            index = [i for i in range(len(payloads)) if i not in skip]
            sub = self._process([payloads[i] for i in index], label, events)
            res = BatchResult(sub.accepted, sub.points, sub.nonfinite, sub.late, sub.max_ts)
            res.rejections = sorted(
                [Rejection(index[r.index], r.reason, r.offset) for r in sub.rejections] + [Rejection(i, "kernel_trap", 0) for i in skip], key=lambda r: r.index
            )
        else:
            res = self._process(payloads, label, events)
        self.account.record_batch(len(payloads), res.accepted, by_reason(res.rejections), res.points, res.nonfinite, res.late, self.clock())
        dropped = {r.index for r in res.rejections}
        kept = tuple(p for i, p in enumerate(payloads) if i not in dropped)
        # A batch that had to be run a message at a time is kept that way: replayed
        # whole, it might trap again (a deadline or memory limit hit by its size).
        chunks = [(p,) for p in kept] if self._isolated else [kept]
        if self.pending is not None:
            self.pending.ops += [("batch", c) for c in chunks]
        if res.max_ts is not None:
            self.max_ts = res.max_ts if self.max_ts is None else max(self.max_ts, res.max_ts)
            self.retained += [Retained(c, res.max_ts) for c in chunks]
            if self._pace_from is None:
                self._pace_from = (self.account.messages_received, self.max_ts)
        wm = self._watermark()
        if wm is not None:
            self._flush(wm, events)
        if self.previous is not None:
            self.probation_batches += 1
            self._maybe_promote(events)
        now = self.clock()
        self._busy.append((now, len(payloads), self._module_cpu, now - t0))
        self._batches += 1
        self._batch_messages += len(payloads)
        return res, events

    @property
    def serving_revoked(self) -> bool:
        """Serving a version marked bad with nothing to fall back on: only the registry's
        latest good version, whatever its number, can replace it."""
        return self.served.entry.version in self.bad_versions and self.previous is None

    def capacity(self) -> float | None:
        """Messages per CPU second of the serving module's work (its process and flush
        calls, in the shard thread's CPU time) over the rate window: what the module can
        take, whatever the offered load and whatever else the machine runs. The same
        measure as the verifier's (``actors.kernel.measure``). A measurement only;
        nothing decides on it."""
        busy = self._window()
        cpu = sum(b[2] for b in busy)
        return sum(b[1] for b in busy) / cpu if cpu > 0 else None

    def capacity_wall(self) -> float | None:
        """Messages per wall second of the lane's whole work per batch (running, flushing,
        retaining, accounting): moves with the machine's load."""
        busy = self._window()
        wall = sum(b[3] for b in busy)
        return sum(b[1] for b in busy) / wall if wall > 0 else None

    def _window(self) -> deque[tuple[float, int, float, float]]:
        horizon = self.clock() - self.settings.rate_window_s
        while self._busy and self._busy[0][0] < horizon:
            self._busy.popleft()
        return self._busy

    def pace(self) -> float | None:
        """Event seconds per message in this org's stream so far: how fast its event time
        moves with its traffic (what a measurement of its modules reproduces)."""
        if self._pace_from is None or self.max_ts is None:
            return None
        n = self.account.messages_received - self._pace_from[0]
        return (self.max_ts - self._pace_from[1]) / n if n > 0 and self.max_ts > self._pace_from[1] else None

    def _timed(self, fn: Callable[[], T]) -> T:
        """Runs a call of the module whose results count, adding its CPU time to the batch's."""
        t0 = self.cpu_clock()
        try:
            return fn()
        finally:
            self._module_cpu += self.cpu_clock() - t0

    def drain(self) -> list[Event]:
        """Flushes every bucket (end of a run): later points of any bucket are late."""
        events: list[Event] = []
        self._flush(FLUSH_ALL, events)
        if self.previous is not None:
            self._maybe_promote(events)
        return events

    def _watermark(self) -> int | None:
        """The watermark rounded down to a bucket boundary, when it passed a new one."""
        if self.max_ts is None:
            return None
        wm = watermark(self.max_ts, self.settings.allowed_lateness_s, self.config.interval_s)
        return wm if self.flushed_to is None or wm > self.flushed_to else None

    def _process(self, payloads: Sequence[bytes], label: str, events: list[Event]) -> BatchResult:
        auth = self.authoritative
        try:
            ref = self._timed(lambda: auth.kernel.process(payloads, label))
        except KernelError as e:
            if self.previous is not None:
                # The trusted module failed, not the one on probation: end the probation
                # without a verdict and carry on with the trusted one.
                self.served, self.previous = self.previous, None
            return self._isolate(auth, payloads, label, str(e), events)
        if self.previous is not None:
            try:
                got = self.served.kernel.process(payloads, label)
                if _counts(got) != _counts(ref):
                    raise _Mismatch(f"counts differ on batch {label}: {_counts(got)[:5]} vs {_counts(ref)[:5]}")
            except KernelError as e:
                self._rollback(f"live_trap: {e}", events)
            except _Mismatch as e:
                self._rollback(f"live_mismatch: {e}", events)
        return ref

    def _isolate(self, served: Served, payloads: Sequence[bytes], label: str, detail: str, events: list[Event]) -> BatchResult:
        """A batch trapped: rebuild the instance and run the batch a message at a time;
        a message that traps on its own is rejected (``kernel_trap``), the rest count."""
        self._isolated = True
        done: list[bytes] = []
        total = BatchResult()
        kernel = self._fresh(served.entry.wasm)
        for i, p in enumerate(payloads):
            try:
                r = kernel.process([p], f"{label} message {i}")
            except KernelError as e:
                total.rejections.append(Rejection(i, "kernel_trap", 0))
                events.append(MessageTrapped(self.org, served.entry.version, i, str(e)))
                kernel = self._fresh(served.entry.wasm, done)
                continue
            total.accepted += r.accepted
            total.points += r.points
            total.nonfinite += r.nonfinite
            total.late += r.late
            if r.max_ts is not None:
                total.max_ts = r.max_ts if total.max_ts is None else max(total.max_ts, r.max_ts)
            total.rejections += [Rejection(i, x.reason, x.offset) for x in r.rejections]
            if r.accepted:
                done.append(p)
        served.kernel = kernel
        return total

    def _fresh(self, wasm: bytes, extra: Sequence[bytes] = ()) -> Kernel:
        """A new instance holding the same open aggregates as the live one (module docstring)."""
        kernel = self.make_kernel(wasm, self.config)
        if self.flushed_to is not None:
            kernel.flush(self.flushed_to, "rebuild")
        for r in self.retained:
            kernel.process(r.payloads, "rebuild")
        for p in extra:
            kernel.process([p], "rebuild")
        return kernel

    def _flush(self, watermark: int, events: list[Event]) -> None:
        auth = self.authoritative
        try:
            rows = self._timed(lambda: auth.kernel.flush(watermark, f"flush to {watermark}"))
        except KernelError as e:
            # The instance is unusable; a fresh one holds the same view (this batch is
            # retained already). A module whose flush traps again is broken: that escapes.
            events.append(MessageTrapped(self.org, auth.entry.version, -1, f"flush: {e}"))
            if self.previous is not None:
                self.served, self.previous = self.previous, None
            auth.kernel = self._fresh(auth.entry.wasm)
            rows = auth.kernel.flush(watermark, f"flush to {watermark} (rebuilt)")
        if self.previous is not None:
            try:
                got = self.served.kernel.flush(watermark, f"flush to {watermark}")
                if output_hash(got) != output_hash(rows):
                    raise _Mismatch(f"flush to {watermark}: {len(got)} rows vs {len(rows)}, hashes differ")
                self.probation_rows += len(rows)
            except KernelError as e:
                self._rollback(f"live_trap: {e}", events)
            except _Mismatch as e:
                self._rollback(f"live_mismatch: {e}", events)
        if self.pending is not None:
            self.pending.ops.append(("flush", watermark, output_hash(rows)))
        self.flushed_to = watermark if self.flushed_to is None else max(self.flushed_to, watermark)
        iv = self.config.interval_s
        flushed = self.flushed_to
        self.retained = deque(r for r in self.retained if r.max_ts // iv * iv + iv > flushed)
        if rows:
            self.flush_seq += 1
            self.account.record_rows(len(rows), self.clock())
            events.append(Flushed(self.org, self.flush_seq, rows))

    # --- probation -------------------------------------------------------------------

    def _maybe_promote(self, events: list[Event]) -> None:
        if self.previous is None:
            return
        closed = self.flushed_to == FLUSH_ALL
        if self.probation_batches >= self.settings.probation_batches and (self.probation_rows > 0 or closed):
            self.fallback = self.previous.entry
            self.previous = None
            events.append(Promoted(self.org, self.served.entry))

    def _rollback(self, reason: str, events: list[Event]) -> None:
        assert self.previous is not None
        bad = self.served.entry
        self.served, self.previous = self.previous, None
        self.bad_versions.add(bad.version)
        self.account.record_rollback()
        self.account.record_module(self.served.entry.version, self.served.entry.origin, self.clock())
        events.append(RolledBack(self.org, bad.version, self.served.entry.version, reason))

    # --- swaps -----------------------------------------------------------------------

    def check_offer(self, signed: SignedManifest, wasm: bytes) -> None:
        """The cheap checks, in the order the issue names them; raises ``ModuleRejected``."""
        check_module(signed, wasm, self.trust)  # signature against a trusted key, then sha256
        m = signed.manifest
        if m.org != self.org or m.config_hash != self.config_hash:
            raise ModuleRejected(
                "wrong_tenant", f"module is for org {m.org} config {m.config_hash[:12]}, lane serves org {self.org} config {self.config_hash[:12]}"
            )
        newest = max(self.served.entry.version, self.previous.entry.version if self.previous else 0)
        if m.version in self.bad_versions:
            raise ModuleRejected("marked_bad", f"version {m.version} was marked bad")
        # Older versions are refused (no replay of old modules), except while the serving
        # version is itself revoked with nothing to fall back on: then the registry's
        # latest good version is taken, whatever its number (an operator's rollback).
        if m.version <= newest and not (self.serving_revoked and m.version != self.served.entry.version):
            raise ModuleRejected("stale_version", f"version {m.version} is not newer than version {newest} already served")

    def begin_swap(self, signed: SignedManifest, wasm: bytes, holdout: Sequence[bytes]) -> PendingSwap | None:
        """Checks an offered module and starts its swap; ``None`` when it must wait (a swap
        is under way or on probation: it is queued, the newest offer winning)."""
        self.check_offer(signed, wasm)
        if self.pending is not None or self.previous is not None:
            if self.pending is not None and signed.manifest.version <= self.pending.entry.version:
                raise ModuleRejected(
                    "stale_version", f"version {signed.manifest.version} is not newer than version {self.pending.entry.version} being swapped in"
                )
            if self.queued is None or self.queued[0].manifest.version < signed.manifest.version:
                self.queued = (signed, wasm)
            return None
        self.pending = PendingSwap(
            entry=ModuleEntry.of(signed, wasm),
            against=self.served.entry,
            flushed_to=self.flushed_to,
            retained=tuple(self.retained),
            holdout=tuple(holdout),
        )
        return self.pending

    def take_queued(self) -> tuple[SignedManifest, bytes] | None:
        if self.pending is not None or self.previous is not None or self.queued is None:
            return None
        q, self.queued = self.queued, None
        return q

    def prepare(self, pending: PendingSwap) -> Prepared:
        """The slow part, outside the lock: reads only ``pending`` and the lane's constants."""
        t0 = time.perf_counter()
        new = self.make_kernel(pending.entry.wasm, self.config)
        n = 0
        if pending.holdout:
            n = _shadow_compare(self.make_kernel(pending.entry.wasm, self.config), self.make_kernel(pending.against.wasm, self.config), pending.holdout)
        try:
            if pending.flushed_to is not None:
                new.flush(pending.flushed_to, "rebuild")
            for r in pending.retained:
                new.process(r.payloads, "rebuild")
        except KernelError as e:
            raise ModuleRejected("rebuild_trap", str(e)) from None
        return Prepared(pending, new, n, time.perf_counter() - t0)

    def catch_up(self, prepared: Prepared, upto: int | None = None) -> int:
        """Applies the batches and flushes recorded since ``begin_swap`` to the new
        instance, checking each flush against the rows the serving module emitted.
        Safe without the lock for ops already recorded (only the swap thread touches
        the new instance); what remains at ``commit`` is applied under it. Returns how
        many ops are still to apply."""
        pending = prepared.pending
        end = len(pending.ops) if upto is None else upto
        kernel = prepared.kernel
        try:
            for op in pending.ops[pending.applied : end]:
                if op[0] == "batch":
                    if op[1]:
                        kernel.process(op[1], "catch-up")
                else:
                    _, wm, want = op
                    if output_hash(kernel.flush(wm, "catch-up")) != want:
                        raise ModuleRejected("live_mismatch", f"its flush to {wm} differs from the rows the serving module emitted")
                pending.applied += 1
        except KernelError as e:
            raise ModuleRejected("live_trap", str(e)) from None
        return len(pending.ops) - pending.applied

    def commit(self, prepared: Prepared) -> list[Event]:
        """Under the lock: catch up on what happened since ``begin_swap``, then swap."""
        pending = prepared.pending
        if self.pending is not pending:
            return []  # cancelled meanwhile (revoked, moved away)
        self.pending = None
        self.catch_up(prepared)
        if pending.entry.signed is not None:
            self.check_offer(pending.entry.signed, pending.entry.wasm)  # still newer, still not bad
        old = self.served.entry
        self.previous = self.served
        self.served = Served(pending.entry, prepared.kernel)
        self.probation_batches = self.probation_rows = 0
        self.account.record_module(pending.entry.version, pending.entry.origin, self.clock())
        events: list[Event] = [Swapped(self.org, old.version, pending.entry.version, pending.entry.origin, prepared.shadow_messages)]
        if self.settings.probation_batches == 0:
            self.fallback, self.previous = self.previous.entry, None
            events.append(Promoted(self.org, self.served.entry))
        return events

    def abort(self, pending: PendingSwap, reason: str, detail: str) -> list[Event]:
        """A swap failed at ``prepare`` or ``commit``: the serving module stays."""
        if self.pending is pending:
            self.pending = None
        # Its signature and bytes were checked in begin_swap: what failed is the module.
        report = reason not in ("stale_version", "marked_bad")
        if report:
            self.bad_versions.add(pending.entry.version)
        self.account.record_swap_rejection(reason)
        return [SwapRejected(self.org, pending.entry.version, reason, detail, report)]

    def revoke(self, version: int, reason: str) -> list[Event]:
        """The registry marked ``version`` bad: stop serving it (fall back) and never take it."""
        self.bad_versions.add(version)
        events: list[Event] = []
        if self.pending is not None and self.pending.entry.version == version:
            self.pending = None
        if self.queued is not None and self.queued[0].manifest.version == version:
            self.queued = None
        if self.previous is not None and self.previous.entry.version == version:
            # The module being compared against is revoked: the new one (whose view is
            # exact, it ran every batch) takes over now.
            self.previous = None
            events.append(Promoted(self.org, self.served.entry))
        elif self.served.entry.version == version:
            if self.previous is not None:
                self._rollback(f"revoked: {reason}", events)
            elif self.fallback is not None and self.fallback.version not in self.bad_versions:
                bad, entry = self.served.entry, self.fallback
                self.served, self.fallback = Served(entry, self._fresh(entry.wasm)), None
                self.account.record_rollback()
                self.account.record_module(entry.version, entry.origin, self.clock())
                events += [RolledBack(self.org, bad.version, entry.version, f"revoked: {reason}"), Promoted(self.org, entry)]
        return events

    def adopt(self, entry: ModuleEntry, fallback: ModuleEntry | None) -> None:
        """Recovery: the journal says this module's results counted from here on."""
        self.previous = None
        self.fallback = fallback
        if entry.sha256 != self.served.entry.sha256 or entry.version != self.served.entry.version:
            self.served = Served(entry, self._fresh(entry.wasm))
            self.account.record_module(entry.version, entry.origin, self.clock())

    # --- state -------------------------------------------------------------------------

    def export(self) -> LaneState:
        """The lane as plain data. A module on probation is left out: the one whose
        results counted is kept (the newer one is offered again by the registry's poll)."""
        auth = self.authoritative.entry
        return LaneState(
            config=self.config,
            entry=auth,
            fallback=self.fallback,
            flushed_to=self.flushed_to,
            max_ts=self.max_ts,
            flush_seq=self.flush_seq,
            retained=list(self.retained),
            account=self.account.to_state(),
            bad_versions=set(self.bad_versions),
        )

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "org": self.org,
            "config_hash": self.config_hash,
            "module": {"version": self.served.entry.version, "origin": self.served.entry.origin, "sha256": self.served.entry.sha256},
            "probation": None
            if self.previous is None
            else {"previous_version": self.previous.entry.version, "batches": self.probation_batches, "rows_compared": self.probation_rows},
            "swap_pending": None if self.pending is None else self.pending.entry.version,
            "flushed_to": self.flushed_to,
            "max_ts": self.max_ts,
            "retained_batches": len(self.retained),
            "retained_messages": sum(len(r.payloads) for r in self.retained),
            "bad_versions": sorted(self.bad_versions),
            "capacity_msg_per_s": None if (c := self.capacity()) is None else round(c, 1),
            "capacity_wall_msg_per_s": None if (c := self.capacity_wall()) is None else round(c, 1),
            "event_s_per_message": None if (p := self.pace()) is None else round(p, 6),
            "mean_batch_messages": round(self._batch_messages / self._batches, 1) if self._batches else None,
            **self.account.snapshot(now),
        }


def _shadow_compare(new: Kernel, current: Kernel, holdout: Sequence[bytes]) -> int:
    """Fresh instances of both modules on the held-back messages: counts and rows must be
    equal. Returns the messages compared; 0 when the serving module itself cannot run
    them (that is not the new module's fault: the check is skipped, not failed)."""
    got_counts: list[Any] = []
    want_counts: list[Any] = []
    for i in range(0, len(holdout), 64):
        chunk = holdout[i : i + 64]
        try:
            want_counts.append(_counts(current.process(chunk, f"shadow {i}")))
        except KernelError:
            return 0
        try:
            got_counts.append(_counts(new.process(chunk, f"shadow {i}")))
        except KernelError as e:
            raise ModuleRejected("shadow_trap", str(e)) from None
    try:
        want = output_hash(current.flush(FLUSH_ALL, "shadow"))
    except KernelError:
        return 0
    try:
        got = output_hash(new.flush(FLUSH_ALL, "shadow"))
    except KernelError as e:
        raise ModuleRejected("shadow_trap", str(e)) from None
    if got_counts != want_counts or got != want:
        raise ModuleRejected("shadow_mismatch", f"on {len(holdout)} held-back messages: output hash {got[:12]} vs {want[:12]} of the serving module")
    return len(holdout)
