"""Ray metrics (``ray.util.metrics``) of the live service, so Ray's Prometheus export and
dashboard show them: messages in, accepted and rejected (by reason), msg/s and capacity
per org, swaps, rollbacks and refused modules (by reason), candidates and their outcome.

Created lazily, once per process, and only inside a Ray worker; recording never raises
(a metrics backend that is down must not cost a batch).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("evoagg.metrics")
_made: dict[str, Any] = {}


def _metric(kind: str, name: str, description: str, tags: tuple[str, ...]) -> Any:
    if name not in _made:
        from ray.util import metrics

        cls = {"counter": metrics.Counter, "gauge": metrics.Gauge}[kind]
        _made[name] = cls(name, description=description, tag_keys=tags)
    return _made[name]


def _safe(fn: Any) -> Any:
    def wrapped(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as e:  # never let metrics take the data path down
            log.debug("metrics: %r", e)

    return wrapped


@_safe
def batch(shard: str, org: int, messages: int, accepted: int, rejected: dict[str, int]) -> None:
    tags = {"shard": shard, "org": str(org)}
    _metric("counter", "evoagg_messages_total", "messages received by shards", ("shard", "org")).inc(messages, tags)
    if accepted:
        _metric("counter", "evoagg_messages_accepted_total", "messages accepted", ("shard", "org")).inc(accepted, tags)
    for reason, n in rejected.items():
        _metric("counter", "evoagg_messages_rejected_total", "messages rejected, by reason", ("shard", "org", "reason")).inc(n, {**tags, "reason": reason})


@_safe
def rates(shard: str, org: int, msg_per_s: float, capacity: float | None, version: int) -> None:
    tags = {"shard": shard, "org": str(org)}
    _metric("gauge", "evoagg_msg_per_s", "messages per second received (sliding window)", ("shard", "org")).set(msg_per_s, tags)
    if capacity is not None:
        _metric("gauge", "evoagg_capacity_msg_per_s", "messages per second of the shard's busy time", ("shard", "org")).set(capacity, tags)
    _metric("gauge", "evoagg_module_version", "version of the module serving the org", ("shard", "org")).set(version, tags)


@_safe
def module_event(shard: str, org: int, event: str, reason: str = "") -> None:
    """``event``: Swapped, Promoted, RolledBack or SwapRejected."""
    tags = {"shard": shard, "org": str(org), "event": event, "reason": reason}
    _metric("counter", "evoagg_module_events_total", "swaps, promotions, rollbacks and refused modules", ("shard", "org", "event", "reason")).inc(1, tags)


@_safe
def candidates(org: int, built: int, accepted: int, rejected: dict[str, int]) -> None:
    tags = {"org": str(org)}
    _metric("counter", "evoagg_candidates_total", "candidates built", ("org",)).inc(built, tags)
    if accepted:
        _metric("counter", "evoagg_candidates_accepted_total", "candidates accepted", ("org",)).inc(accepted, tags)
    for stage, n in rejected.items():
        _metric("counter", "evoagg_candidates_rejected_total", "candidates rejected, by stage", ("org", "stage")).inc(n, {**tags, "stage": stage})
