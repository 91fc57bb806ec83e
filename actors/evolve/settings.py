"""How an evolution run behaves: a frozen config with a docstring per field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from actors.config import check_int, check_keys
from actors.errors import ConfigError
from actors.kernel.measure import Regime

PROPOSERS = ("offline", "anthropic")


@dataclass(frozen=True)
class EvolutionConfig:
    islands: int = 2
    """Island actors, each with its own population; they evolve in parallel."""
    generations: int = 6
    """Generations per island in this run (a resumed run continues up to this number)."""
    children: int = 1
    """Candidates each island proposes and verifies per generation."""
    alpha: float = 1.5
    """Parent selection: p(rank r) ∝ r^-alpha within the island (0 uniform; large: hill climbing)."""
    child_penalty: float = 0.5
    """A parent's weight is divided by (1 + child_penalty × its children so far)."""
    migration_every: int = 2
    """Every this many generations the best of each island is copied to its ring neighbour (0: never)."""
    stagnation: int = 4
    """An island whose best has not improved for this many generations is reseeded from another's best."""
    archive_size: int = 8
    """Diverse high performers kept for inspiration (diversity by source similarity)."""
    inspirations: int = 2
    """Inspirations shown to the proposer per child (archive entries plus the island's best)."""
    proposer: str = "offline"
    """``offline`` (no network, the default) or ``anthropic``."""
    model: str = "claude-sonnet-4-6"
    """The Anthropic model, for the anthropic proposer."""
    max_tokens: int | None = None
    """Run budget in tokens for the anthropic proposer (None: unlimited)."""
    max_usd: float | None = None
    """Run budget in USD for the anthropic proposer (None: unlimited)."""
    max_seconds: float | None = None
    """Wall time the anthropic proposer may spend (None: unlimited)."""
    seed: int = 0
    """Seeds every island's RNG: selection, migration and the offline proposer replay from it."""
    screen_rounds: int = 3
    """Bench stage (the fitness, in the shard's regime): interleaved rounds every candidate gets."""
    bench_rounds: int = 8
    """Bench stage: rounds in all for a contender (a candidate that may still beat the
    specialized kernel after the screen)."""
    round_s: float = 0.25
    """CPU seconds a measuring round lasts (for the fastest module measured)."""
    confirm_rounds: int = 8
    """At the end, the best few and the seed are measured again side by side for this many
    interleaved rounds, and the best of that measurement is the result (0: skip)."""
    publish_margin: float = 0.05
    """A module is published only when the lower end of the 95% interval of its ratio over
    the module serving now exceeds 1 + this."""

    def validate(self) -> EvolutionConfig:
        check_int("islands", self.islands, 1, 64)
        check_int("generations", self.generations, 0, 100_000)
        check_int("children", self.children, 1, 64)
        check_int("migration_every", self.migration_every, 0, 100_000)
        check_int("stagnation", self.stagnation, 1, 100_000)
        check_int("archive_size", self.archive_size, 1, 1000)
        check_int("inspirations", self.inspirations, 0, 16)
        check_int("screen_rounds", self.screen_rounds, 2, 50)
        check_int("bench_rounds", self.bench_rounds, self.screen_rounds, 200)
        check_int("confirm_rounds", self.confirm_rounds, 0, 200)
        if isinstance(self.confirm_rounds, int) and 0 < self.confirm_rounds < 2:
            raise ConfigError("confirm_rounds: expected 0 (skip) or at least 2 (an interval needs two rounds)")
        if not (isinstance(self.round_s, int | float) and 0 < self.round_s <= 60):
            raise ConfigError(f"round_s: expected 0 < seconds <= 60, found {self.round_s!r}")
        if not (isinstance(self.publish_margin, int | float) and 0 <= self.publish_margin < 10):
            raise ConfigError(f"publish_margin: expected 0 <= margin < 10, found {self.publish_margin!r}")
        if not (0 <= self.alpha <= 50):
            raise ConfigError(f"alpha: expected 0..50, found {self.alpha}")
        if not (0 <= self.child_penalty <= 100):
            raise ConfigError(f"child_penalty: expected 0..100, found {self.child_penalty}")
        if self.proposer not in PROPOSERS:
            raise ConfigError(f"proposer: expected one of {', '.join(PROPOSERS)}, found {self.proposer!r}")
        return self

    def regime(self, lateness_s: int = 60, batch: int = 64, pace_s: float | None = None) -> Regime:
        """How the bench stage measures for this run, in a shard's regime."""
        return Regime(lateness_s, batch, pace_s, self.round_s, self.screen_rounds, self.bench_rounds).validate()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "evolution config") -> EvolutionConfig:
        check_keys(source, data, {f.name for f in fields(cls)})
        try:
            return cls(**dict(data)).validate()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
