"""A traffic source: a workload's messages, generated and sent to the org's shard in
batches, each acknowledged before the next (exactly once, :mod:`actors.shard.client`).

Generating and encoding a message in Python costs more than a kernel spends on it, and
on a laptop that CPU is taken from the builds and benchmarks a demo is about. So a
source generates a pool of messages once (the first ``pool`` of the stream), and then
sends the pool again and again, each time moved on in event time by the span the pool
covers: the timeline goes on exactly as the workload's would, and the messages of a
later round differ from the earlier ones in their timestamps (so they are new bytes to
the shard's samples).

An actor of its own (a process: its work must not share a GIL with a shard), optional in
a deployment: real traffic comes through the same client.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import ray

from actors.payload import encode, first_timestamps, shift_timestamps
from actors.shard.client import ShardClient
from actors.workload import Workload, generate

POOL_MESSAGES = 1000
"""Messages generated once and then sent again, moved on in time (rounded up to whole windows)."""


def pooled(workload: Workload, seed: int, pool: int = POOL_MESSAGES) -> Iterator[bytes]:
    """The workload's stream, endless: the first ``pool`` messages (a whole number of time
    windows, so the pool spans a whole number of seconds), then the same pool again and
    again, each round moved on by that span."""
    t = workload.traffic
    n = -(-max(1, pool) // t.messages_per_window) * t.messages_per_window
    span = round(n * t.event_s_per_message())
    kept: list[tuple[bytes, list[tuple[int, int, int]]]] = []
    for msg in generate(workload, n, seed):
        p = encode(msg)
        kept.append((p, first_timestamps(p)))
        yield p
    for k in itertools.count(1):
        for p, fields in kept:
            yield shift_timestamps(p, k * span, fields)


@ray.remote(num_cpus=0, max_restarts=0)
class TrafficSource:
    def __init__(self, workload: Workload, shard_name: str, source: str, seed: int, batch: int = 64, max_msg_per_s: float | None = None) -> None:
        self.workload = workload
        self.shard_name = shard_name
        self.batch = batch
        self.max_msg_per_s = max_msg_per_s
        self.client = ShardClient(source, lambda org: ray.get_actor(self.shard_name), retry_for_s=600)
        self.seed = seed
        self.sent = 0
        self.batches = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        org = self.workload.tenant.org
        pending: list[bytes] = []
        t0 = time.monotonic()
        try:
            for payload in pooled(self.workload, self.seed):
                if self._stop.is_set():
                    break
                pending.append(payload)
                if len(pending) < self.batch:
                    continue
                self.client.send(org, pending)
                self.sent += len(pending)
                self.batches += 1
                pending = []
                if self.max_msg_per_s:
                    ahead = self.sent / self.max_msg_per_s - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        except Exception as e:
            self.error = repr(e)

    def stop(self) -> dict[str, Any]:
        """Stops after the batch in flight is acknowledged; returns the final counts."""
        self._stop.set()
        self._thread.join(timeout=600)
        return self.stats()

    def stats(self) -> dict[str, Any]:
        return {"sent": self.sent, "batches": self.batches, "retries": self.client.retries, "running": self._thread.is_alive(), "error": self.error}
