"""Short measurements for tests that check behaviour, not speed: two short rounds."""

from __future__ import annotations

from typing import Any

from actors.kernel.measure import Regime

QUICK_REGIME = Regime(round_s=0.02, screen_rounds=2, rounds=2)
"""The bench stage's regime in tests: the shard's batch and lateness, rounds of 20 ms."""

QUICK_EVOLUTION: dict[str, Any] = {"screen_rounds": 2, "bench_rounds": 2, "round_s": 0.02, "confirm_rounds": 2}
"""``EvolutionConfig`` fields for the same (``EvolutionConfig(**QUICK_EVOLUTION, ...)``)."""
