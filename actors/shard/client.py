"""Sending batches to shards, exactly once: the one handle through which traffic reaches them.

Each batch is numbered per source; an unacknowledged batch (the shard died, the call
failed) is sent again under the same number until acknowledged or ``retry_for_s`` has
passed. The shard journals ``(source, seq)`` with the batch and acknowledges a repeat
without counting it, so a retry never counts twice.
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
    def __init__(self, source: str, resolve: Callable[[int], Any], retry_for_s: float = 120.0, call_timeout_s: float = 120.0) -> None:
        """``resolve(org)`` returns the shard actor handle serving ``org`` now. ``source``
        must be unique to this client for the life of the shards' state: sequence numbers
        start at 0, and a shard acknowledges a number it has seen as a duplicate."""
        self.source = source
        self.resolve = resolve
        self.retry_for_s = retry_for_s
        self.call_timeout_s = call_timeout_s
        self.seq = 0
        self.retries = 0
        self._lock = threading.Lock()

    def send(self, org: int, payloads: Sequence[bytes]) -> Ack:
        with self._lock:
            seq = self.seq
            self.seq += 1
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.05
        while True:
            try:
                return ray.get(self.resolve(org).ingest.remote(org, self.source, seq, list(payloads)), timeout=self.call_timeout_s)  # type: ignore[no-any-return]
            except (RayActorError, ActorUnavailableError, GetTimeoutError, NotServed):
                # Dead or restarting shard, or the org moved: the same batch goes again.
                if time.monotonic() > deadline:
                    raise
                self.retries += 1
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
