"""A traffic source: a workload's messages, generated and sent to the org's shard in
batches, each acknowledged before the next (exactly once, :mod:`actors.shard.client`).

An actor of its own (a process: generating messages is CPU work that must not share a
GIL with a shard), optional in a deployment: real traffic comes through the same client.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ray

from actors.payload import encode
from actors.shard.client import ShardClient
from actors.workload import Workload, generate


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
            for msg in generate(self.workload, 10**12, self.seed):
                if self._stop.is_set():
                    break
                pending.append(encode(msg))
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
