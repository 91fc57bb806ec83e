"""One evaluated candidate: what was proposed, by whom, at what cost, and what verification said.

A record is the unit everything else in ``actors.evolve`` trades in: the database stores
it, selection ranks it, the archive keeps the diverse best of it and the lineage commits
the accepted ones. It is frozen so that a record, once written, is the same everywhere it
travels (actor messages, the database, the git log).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

STATUSES = ("accepted", "rejected", "duplicate", "error")
"""accepted: every verification stage passed; rejected: a stage failed (``rejected_stage``);
duplicate: its source hash was already evaluated, so it was not built again; error: the
engine failed around it (proposer or infrastructure), which says nothing about the code."""


def hash_source(source: str) -> str:
    """SHA-256 of the evolvable file's text: the novelty key, so equal sources are evaluated once."""
    return hashlib.sha256(source.encode()).hexdigest()


@dataclass(frozen=True)
class CandidateRecord:
    """A candidate kernel and its evaluation. ``source`` is the evolvable file's full text
    (``src/kernel.rs``), since a candidate travels as that text plus the tenant's config."""

    id: str
    org: int
    parent_id: str | None
    island: int
    generation: int
    proposer: str
    model: str | None
    prompt: str
    patch: str
    source: str
    source_hash: str
    commit: str | None
    report: dict[str, Any] | None
    """The verification report's JSON (``actors.verify.stages.Report.to_json()``)."""
    status: str
    rejected_stage: str | None
    reason: str
    msg_per_s: float | None
    ratio_to_generic: float | None
    ratio_to_specialized: float | None
    tokens_in: int
    tokens_out: int
    cost_usd: float
    created_at: float
    """Seconds since the epoch, from the engine's (injected) clock."""
    seconds: float
    """Wall time spent proposing and verifying this candidate."""
    genome: dict[str, Any] | None
    """The offline proposer's parameters that produced the source, when it was that proposer."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"candidate {self.id!r}: status {self.status!r} is not one of {', '.join(STATUSES)}")
        for name in ("msg_per_s", "ratio_to_generic", "ratio_to_specialized"):
            value = getattr(self, name)
            if value is not None and math.isnan(value):
                # NaN would sort arbitrarily in selection and come back from SQLite as NULL.
                raise ValueError(f"candidate {self.id!r}: {name} is NaN; use None for 'not measured'")

    @property
    def fitness(self) -> float | None:
        """Speed-up over the generic kernel, for accepted candidates only: a rejected kernel
        may be fast because it is wrong, so its speed must never steer selection."""
        return self.ratio_to_generic if self.status == "accepted" else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the report and genome are already JSON)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CandidateRecord:
        """The inverse of ``to_json``; unknown keys are errors so a schema drift is loud."""
        names = {f.name for f in fields(cls)}
        extra = set(data) - names
        if extra:
            raise ValueError(f"candidate record: unknown keys {sorted(extra)}")
        return cls(**data)
