"""Measuring a module the way a shard runs it: the one measure of a kernel's speed.

Fitness (the verifier's bench stage), the confirmation of winners, the control plane's
publish decision, ``evoagg replay``, ``evoagg bench`` and a shard's capacity all use it,
so a kernel gains nothing by moving work to where it is not timed.

**The regime** (:class:`Regime`): a warm instance; batches of the shard's size; after
each batch a flush to the watermark (largest event time seen minus the tenant's
lateness, down to a bucket boundary), exactly when a lane flushes, flush time counted.
**Time** is the CPU time of the measuring thread (``time.thread_time``): wasmtime runs
the module on the calling thread, so other processes on the machine move the figure
little (they still share caches and clock frequency, which is why rounds interleave).

**The stream** (:class:`ServiceStream`): a sample of a tenant's messages as the shard
would see them. A shard's training sample is a reservoir over its whole history, in slot
order; replayed as is, event time would jump back and forth and most points would be
late. So the sample is put in event-time order and, when the regime gives the tenant's
pace (event seconds per message, which a shard measures), each message is moved in time
to where it would be at that pace, keeping its points' offsets from each other. Without
a pace the messages keep their order and times (a recorded stream is already in order).

**Rounds.** Every module gets its own warm instance: it first runs the stream once,
untimed (its tables grow, its memory is allocated). Then each round runs the next copies
of the stream, each moved on to continue the timeline where the one before ended (so
buckets fill as they do live), through every module in turn: the modules of a round see the same messages, one right
after the other, and a round is long enough (``Regime.round_s``) to be measured. The
result per pair of modules is the ratio of their CPU times per message with a 95%
confidence interval from the per-round ratios (a t interval on their logarithms).

**Fuel** (:func:`fuel_per_message`): wasmtime's instruction count per message on the
first copy, a deterministic companion to the timed figure (the same module on the same
messages gives the same count on any machine, whatever its load).

No Ray here.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors.config import SandboxConfig, TenantConfig, check_int
from actors.errors import ConfigError, PayloadError
from actors.kernel.abi import BatchResult, watermark
from actors.kernel.host import KernelHost
from actors.payload import first_timestamps, shift_timestamps

# Two-sided 97.5% quantiles of Student's t by degrees of freedom (1..30); the normal's beyond.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


@dataclass(frozen=True)
class Regime:
    """How a shard runs a tenant's module: what every measurement reproduces."""

    lateness_s: int = 60
    """The tenant's allowed lateness (shard setting ``allowed_lateness_s``): the flush schedule."""
    batch: int = 64
    """Messages per ``process`` call, as the shard's traffic arrives."""
    pace_s: float | None = None
    """Event seconds per message in the tenant's live stream (a shard measures it); None:
    the messages keep the times they carry (a recorded stream, already in order)."""
    round_s: float = 0.25
    """CPU seconds a round should last for the fastest module (more copies of the stream
    per round until it does)."""
    screen_rounds: int = 3
    """Rounds every candidate gets (racing: the screen)."""
    rounds: int = 8
    """Rounds in all for a contender (one that may clear the bar after the screen)."""

    def validate(self) -> Regime:
        check_int("lateness_s", self.lateness_s, 0, 2**31)
        check_int("batch", self.batch, 1, 1 << 20)
        check_int("screen_rounds", self.screen_rounds, 2, 100)
        check_int("rounds", self.rounds, self.screen_rounds, 1000)
        if self.pace_s is not None and not (isinstance(self.pace_s, int | float) and 0 < self.pace_s < 1e9):
            raise ConfigError(f"pace_s: expected a positive number of seconds or None, found {self.pace_s!r}")
        if not (isinstance(self.round_s, int | float) and 0 < self.round_s <= 60):
            raise ConfigError(f"round_s: expected 0 < seconds <= 60, found {self.round_s!r}")
        return self


@dataclass
class Served:
    """What a module did on a run of messages, the way a shard runs it."""

    messages: int = 0
    accepted: int = 0
    points: int = 0
    late: int = 0
    nonfinite: int = 0
    rows: int = 0
    process_s: float = 0.0
    """CPU seconds inside ``process`` calls."""
    flush_s: float = 0.0
    """CPU seconds inside the watermark flushes."""

    @property
    def seconds(self) -> float:
        return self.process_s + self.flush_s

    @property
    def msg_per_s(self) -> float:
        """Messages per CPU second, flushes included: what the module serves."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0


class Runner:
    """One module's warm instance and its watermark, fed batch after batch as a lane does."""

    def __init__(self, host: KernelHost, regime: Regime) -> None:
        self.host = host
        self.regime = regime
        self.interval = host.config.interval_s
        self.max_ts: int | None = None
        self.flushed_to: int | None = None

    def run(self, payloads: Sequence[bytes], clock: Callable[[], float] = time.thread_time) -> Served:
        out = Served()
        b = self.regime.batch
        for i in range(0, len(payloads), b):
            batch = payloads[i : i + b]
            t0 = clock()
            res: BatchResult = self.host.process(batch, f"measure #{i // b}")
            t1 = clock()
            out.process_s += t1 - t0
            out.messages += len(batch)
            out.accepted += res.accepted
            out.points += res.points
            out.late += res.late
            out.nonfinite += res.nonfinite
            if res.max_ts is not None:
                self.max_ts = res.max_ts if self.max_ts is None else max(self.max_ts, res.max_ts)
            if self.max_ts is None:
                continue
            wm = watermark(self.max_ts, self.regime.lateness_s, self.interval)
            if self.flushed_to is None or wm > self.flushed_to:
                t2 = clock()
                rows = self.host.flush(wm, f"measure flush to {wm}")
                out.flush_s += clock() - t2
                out.rows += len(rows)
                self.flushed_to = wm
        return out


class ServiceStream:
    """A sample of messages as the shard would see them, and later copies of it (module
    docstring). Copy ``k`` is the stream moved ``k × shift_s`` seconds later."""

    def __init__(self, payloads: Sequence[bytes], regime: Regime) -> None:
        # (payload, its first-timestamp fields or None when malformed, where it is in time)
        parsed: list[tuple[bytes, list[tuple[int, int, int]] | None, int | None]] = []
        for p in payloads:
            try:
                fields = first_timestamps(p)
            except PayloadError:
                fields = None  # a malformed message stays as it is (and is rejected, as live)
            # Where the message is in time: its series' latest first timestamp (the send
            # time, less the points' window).
            parsed.append((p, fields, max((f[2] for f in fields), default=None) if fields else None))
        # (payload, fields, how far it moves, where it is then)
        moved: list[tuple[bytes, list[tuple[int, int, int]] | None, int, int | None]] = []
        if regime.pace_s is not None:
            timed = sorted((a, i) for i, (_, _, a) in enumerate(parsed) if a is not None)
            order = [i for _, i in timed] + [i for i, (_, _, a) in enumerate(parsed) if a is None]
            start = timed[0][0] if timed else 0
            for n, (p, fields, anchor) in enumerate(parsed[i] for i in order):
                at = None if anchor is None else start + round(n * regime.pace_s)
                moved.append((p, fields, 0 if anchor is None or at is None else at - anchor, at))
        else:
            moved = [(p, fields, 0, anchor) for p, fields, anchor in parsed]
        self._items = [(p, fields, delta) for p, fields, delta, _ in moved]
        anchors = sorted(at for *_, at in moved if at is not None)
        # The next copy continues the timeline where this one ends, one message's pace on,
        # so buckets fill with as many messages as they do live.
        step = (anchors[-1] - anchors[0]) / (len(anchors) - 1) if len(anchors) > 1 else 1.0
        self.shift_s = max(1, round(anchors[-1] - anchors[0] + step)) if anchors else 1
        self.messages = len(moved)

    def copy(self, k: int) -> list[bytes]:
        base = k * self.shift_s
        return [p if fields is None else shift_timestamps(p, delta + base, fields) for p, fields, delta in self._items]


@functools.lru_cache(maxsize=8)
def service_stream(payloads: tuple[bytes, ...], regime: Regime) -> ServiceStream:
    """The stream of a sample, once per process (a verifier serves many candidates of a tenant)."""
    return ServiceStream(payloads, regime)


@dataclass(frozen=True)
class Ratio:
    """How much faster ``a`` serves than ``b``: the ratio of CPU seconds per message (b / a)."""

    value: float
    low: float
    high: float
    rounds: int

    def to_json(self) -> dict[str, Any]:
        return {"ratio": round(self.value, 4), "ci95": [round(self.low, 4), round(self.high, 4)], "rounds": self.rounds}


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> Ratio:
    """``b / a`` from per-round seconds per message of two modules measured side by side:
    the geometric mean of the per-round ratios, with a 95% t interval on their logarithms."""
    logs = [math.log(y / x) for x, y in zip(a, b, strict=True) if x > 0 and y > 0]
    n = len(logs)
    if n == 0:
        return Ratio(math.nan, math.nan, math.nan, 0)
    mean = statistics.fmean(logs)
    if n == 1:
        return Ratio(math.exp(mean), 0.0, math.inf, 1)
    half = (_T975[n - 2] if n - 1 <= len(_T975) else 1.96) * statistics.stdev(logs) / math.sqrt(n)
    return Ratio(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n)


@dataclass
class Measured:
    """One module's part of a side-by-side measurement."""

    name: str
    served: list[Served] = field(default_factory=list)
    """Per timed round."""
    error: str | None = None

    def per_message(self) -> list[float]:
        return [s.seconds / s.messages for s in self.served if s.messages]

    @property
    def msg_per_s(self) -> float:
        """Messages per CPU second over the rounds (median round)."""
        per = self.per_message()
        return 1.0 / statistics.median(per) if per else 0.0

    def summary(self) -> dict[str, Any]:
        tot = Served()
        for s in self.served:
            tot.messages += s.messages
            tot.process_s += s.process_s
            tot.flush_s += s.flush_s
            tot.late += s.late
            tot.points += s.points
        return {
            "msg_per_cpu_s": round(self.msg_per_s, 1),
            "rounds": len(self.served),
            "messages": tot.messages,
            "us_per_message": round(tot.seconds / tot.messages * 1e6, 3) if tot.messages else None,
            "flush_share": round(tot.flush_s / tot.seconds, 4) if tot.seconds else None,
            "late_points": tot.late,
            "points": tot.points,
            **({"error": self.error} if self.error else {}),
        }


def measure(
    modules: Sequence[tuple[str, bytes]],
    config: TenantConfig,
    payloads: Sequence[bytes],
    regime: Regime,
    sandbox: SandboxConfig | None = None,
    rounds: int | None = None,
    keep_going: Callable[[dict[str, Measured], int], bool] | None = None,
    clock: Callable[[], float] = time.thread_time,
) -> dict[str, Measured]:
    """Measures ``modules`` side by side in the regime, in interleaved rounds (module
    docstring). ``rounds`` (default ``regime.rounds``) is the most; after each round from
    ``regime.screen_rounds`` on, ``keep_going(results, rounds_done)`` may stop early
    (racing). A module that fails (a trap, a rejection) is reported with its error and
    left out of later rounds; the others go on."""
    sandbox = sandbox or SandboxConfig()
    stream = service_stream(tuple(payloads), regime)
    if not stream.messages:
        raise ConfigError("no messages to measure on")
    out = {name: Measured(name) for name, _ in modules}
    runners: dict[str, Runner] = {}
    warm = stream.copy(0)
    per_copy = 0.0
    for name, wasm in modules:
        try:
            runners[name] = Runner(KernelHost(wasm, config, sandbox, name=name), regime)
            first = runners[name].run(warm, clock)
            per_copy = first.seconds if per_copy == 0 else min(per_copy, first.seconds)
        except Exception as e:  # a module that cannot run is reported, not raised
            out[name].error = f"{type(e).__name__}: {e}"
            runners.pop(name, None)
    copies = max(1, math.ceil(regime.round_s / per_copy)) if per_copy > 0 else 1
    next_copy = 1
    for r in range(rounds or regime.rounds):
        if not runners:
            break
        batch = [m for k in range(copies) for m in stream.copy(next_copy + k)]
        next_copy += copies
        for name in list(runners):
            try:
                out[name].served.append(runners[name].run(batch, clock))
            except Exception as e:
                out[name].error = f"{type(e).__name__}: {e}"
                del runners[name]
        if keep_going is not None and r + 1 >= regime.screen_rounds and not keep_going(out, r + 1):
            break
    return out


def compare(a: Measured, b: Measured) -> Ratio:
    """How much faster ``a`` serves than ``b`` over the rounds both completed."""
    n = min(len(a.served), len(b.served))
    return paired_ratio(a.per_message()[:n], b.per_message()[:n])


def race(
    candidate: tuple[str, bytes],
    reference: tuple[str, bytes],
    config: TenantConfig,
    payloads: Sequence[bytes],
    regime: Regime,
    bar: float | None = None,
    sandbox: SandboxConfig | None = None,
) -> tuple[dict[str, Measured], Ratio, bool]:
    """The candidate against the reference: ``regime.screen_rounds`` rounds, then, only
    when the candidate may still reach ``bar`` (its ratio's upper bound is at or above
    it; None: every candidate is a contender), up to ``regime.rounds``. Returns the
    measurements, the ratio candidate/reference, and whether it was a contender."""
    contender = True

    def keep_going(res: dict[str, Measured], done: int) -> bool:
        nonlocal contender
        if bar is None or done > regime.screen_rounds:
            return True
        r = compare(res[candidate[0]], res[reference[0]])
        contender = not (r.high < bar)
        return contender

    res = measure([candidate, reference], config, payloads, regime, sandbox, keep_going=keep_going)
    return res, compare(res[candidate[0]], res[reference[0]]), contender


def fuel_per_message(wasm: bytes, config: TenantConfig, payloads: Sequence[bytes], regime: Regime, sandbox: SandboxConfig | None = None) -> float:
    """Wasmtime fuel (about one unit per wasm instruction) per message on the stream's
    first copy, process and flush calls in the regime: deterministic for a module and a
    stream."""
    stream = service_stream(tuple(payloads), regime)
    host = KernelHost(wasm, config, sandbox or SandboxConfig(), name="fuel", fuel=True)
    start = host.fuel_consumed()
    Runner(host, regime).run(stream.copy(0), clock=lambda: 0.0)
    return (host.fuel_consumed() - start) / max(1, stream.messages)
