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

A repeat on a batch's first try means another call used its number (the previous process
under the same name, whose last call landed after this client asked where to resume): the
batch, not counted, goes again under a fresh number. Two clients alive at once must still
have different source names (``send`` raises ``ConfigError`` when numbers keep being taken).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

from actors.errors import ConfigError, NotServed
from actors.shard.state import Ack

log = logging.getLogger("evoagg.client")
RENUMBER_ATTEMPTS = 5
"""Repeats on a first try (numbers taken by another client) before ``send`` gives up."""


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
        self.renumbered = 0
        self._next: dict[int, int] = {}
        self._org_locks: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()

    def send(self, org: int, payloads: Sequence[bytes]) -> Ack:
        """Sends one batch and returns its acknowledgement: the batch is durable and counted
        once. Batches for one org wait their turn; ``retry_for_s`` bounds each one's retries.
        If this raises, the batch was not acknowledged and may still land later."""
        with self._lock:
            org_lock = self._org_locks.setdefault(org, threading.Lock())
        with org_lock:
            for _ in range(RENUMBER_ATTEMPTS):
                if org not in self._next:
                    self._next[org] = self._resume(org)
                seq = self._next[org]
                # Burnt whatever happens: after a failure the batch may still land, so its
                # number must not carry another batch.
                self._next[org] = seq + 1
                ack, attempts = self._call(org, self._ingest(org, seq, payloads))
                if not (ack.duplicate and attempts == 1):
                    return ack  # type: ignore[no-any-return]
                # A repeat on the first try: the number was used by a call this client never
                # made (the previous process under this name, whose last call landed after
                # this one asked where to resume). The batch was not counted: it goes again
                # under a number past the shard's last.
                self.renumbered += 1
                del self._next[org]
        raise ConfigError(f"source {self.source!r}: another live client sends under the same name (numbers taken {RENUMBER_ATTEMPTS} times in a row)")

    def _ingest(self, org: int, seq: int, payloads: Sequence[bytes]) -> Callable[[Any], Any]:
        batch = list(payloads)
        return lambda shard: shard.ingest.remote(org, self.source, seq, batch)

    def _resume(self, org: int) -> int:
        """The next number: one past the last the shard acknowledged for this source."""
        try:
            last, _ = self._call(org, lambda shard: shard.last_seq.remote(org, self.source))
        except AttributeError:
            # A shard started from code older than ``last_seq`` (a system upgraded in place):
            # number from 0, as that code did; restart the shards to resume properly.
            log.warning("shard for org %s has no last_seq; numbering source %r from 0", org, self.source)
            return 0
        return int(last) + 1

    def _call(self, org: int, call: Callable[[Any], Any]) -> tuple[Any, int]:
        """The call's result and how many tries it took."""
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.05
        attempts = 0
        while True:
            attempts += 1
            try:
                return self.get(call(self.resolve(org)), timeout=self.call_timeout_s), attempts
            except (RayActorError, ActorUnavailableError, GetTimeoutError, NotServed):
                # Dead or restarting shard, or the org moved: the same call goes again.
                if time.monotonic() > deadline:
                    raise
                with self._lock:
                    self.retries += 1
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
