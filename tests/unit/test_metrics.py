"""Recording a metric never costs a batch: outside a Ray worker (no metrics backend) the
calls return quietly."""

from __future__ import annotations

from actors import metrics


def test_metrics_never_raise_without_a_backend() -> None:
    metrics.batch("s", 1, 10, 9, {"truncated": 1})
    metrics.rates("s", 1, 100.0, None, 2)
    metrics.module_event("s", 1, "Swapped")
    metrics.candidates(1, 4, 3, {"differential": 1})
