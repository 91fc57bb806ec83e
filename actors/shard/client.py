"""Sending batches to shards, exactly once: the one handle through which traffic reaches them.

Batches are numbered per (source, org); an unacknowledged batch (the shard died, the call
failed) is sent again under the same number until acknowledged or ``retry_for_s`` has
passed. The shard journals ``(source, seq)`` with the batch and acknowledges a number at
or below the last one it acknowledged as a repeat, without counting it, so a retry never
counts twice. Two rules follow, and the client keeps both:

- a client sends one batch at a time per org, in order (a later number arriving first
  would make the earlier batch look like a repeat);
- a client starts from the shard's last acknowledged number for its source (a client
  restarted under the same name continues the numbering instead of starting at 0, where
  its first batches would be taken for repeats), and a number once sent is never reused.

Two clients alive at once must still have different source names.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

from actors.errors import NotServed
from actors.shard.state import Ack


class ShardClient:
    def __init__(
        self, source: str, resolve: Callable[[int], Any], retry_for_s: float = 120.0, call_timeout_s: float = 120.0, get: Callable[..., Any] = ray.get
    ) -> None:
        """``resolve(org)`` returns the shard actor handle serving ``org`` now; ``get`` waits
        for a call's result (``ray.get``; tests pass a fake shard and its own)."""
        self.source = source
        self.resolve = resolve
        self.get = get
        self.retry_for_s = retry_for_s
        self.call_timeout_s = call_timeout_s
        self.retries = 0
        self._next: dict[int, int] = {}
        self._org_locks: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()

    def send(self, org: int, payloads: Sequence[bytes]) -> Ack:
        with self._lock:
            org_lock = self._org_locks.setdefault(org, threading.Lock())
        with org_lock:
            if org not in self._next:
                self._next[org] = self._call(org, lambda shard: shard.last_seq.remote(org, self.source)) + 1
            seq = self._next[org]
            # Burnt whatever happens: after a failure the batch may still land, so its number
            # must not carry another batch.
            self._next[org] = seq + 1
            return self._call(org, lambda shard: shard.ingest.remote(org, self.source, seq, list(payloads)))  # type: ignore[no-any-return]

    def _call(self, org: int, call: Callable[[Any], Any]) -> Any:
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.05
        while True:
            try:
                return self.get(call(self.resolve(org)), timeout=self.call_timeout_s)
            except (RayActorError, ActorUnavailableError, GetTimeoutError, NotServed):
                # Dead or restarting shard, or the org moved: the same call goes again.
                if time.monotonic() > deadline:
                    raise
                self.retries += 1
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
