"""The archive: a few diverse high performers, shown to proposers as inspiration.

Why diversity: the best N kernels of a run are usually N small variations of one idea;
showing a proposer ten copies of it teaches nothing. So admission compares sources: a
candidate at least ``threshold`` similar to an archived one that is at least as fit is
turned away, and one similar but fitter replaces it. Capacity then keeps the fittest.

Similarity is Jaccard over token shingles (runs of ``shingle`` tokens, comments and
whitespace dropped): cheap, deterministic, and blind to reformatting. The archive is an
immutable value (``admit`` returns a new one) that round-trips through JSON for resume.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

from actors.evolve.record import CandidateRecord

_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9][A-Za-z0-9_.]*|\S")


@lru_cache(maxsize=512)
def shingles(source: str, k: int) -> frozenset[tuple[str, ...]]:
    """The set of k-token runs of ``source`` (all its tokens as one run when fewer than k)."""
    tokens = _TOKEN.findall(_COMMENTS.sub(" ", source))
    if len(tokens) < k:
        return frozenset([tuple(tokens)]) if tokens else frozenset()
    return frozenset(tuple(tokens[i : i + k]) for i in range(len(tokens) - k + 1))


def similarity(a: str, b: str, k: int = 5) -> float:
    """Jaccard similarity of the two sources' k-token shingles, in [0, 1]; 1 for equal code."""
    sa, sb = shingles(a, k), shingles(b, k)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


@dataclass(frozen=True)
class ArchiveEntry:
    """What the archive keeps of a candidate: enough to rank, compare and inspire."""

    id: str
    island: int
    fitness: float
    source_hash: str
    source: str


def _rank(e: ArchiveEntry) -> tuple[float, str]:
    return (-e.fitness, e.id)


@dataclass(frozen=True)
class Admission:
    """The outcome of offering a candidate: the new archive and why."""

    archive: Archive
    admitted: bool
    evicted: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Archive:
    """At most ``capacity`` entries, best first (ties by id), no two ``threshold``-similar."""

    capacity: int
    threshold: float = 0.9
    shingle: int = 5
    entries: tuple[ArchiveEntry, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"archive capacity must be >= 1, got {self.capacity}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"archive threshold must be in (0, 1], got {self.threshold}")
        if self.shingle < 1:
            raise ValueError(f"archive shingle must be >= 1, got {self.shingle}")

    def __len__(self) -> int:
        return len(self.entries)

    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def admit(self, record: CandidateRecord) -> Admission:
        """Offers ``record``; see the module docstring for the rule. Ties in fitness keep the incumbent."""
        f = record.fitness
        if f is None or not math.isfinite(f):
            return Admission(self, False, (), "no fitness: only accepted, benchmarked candidates are archived")
        if any(e.id == record.id for e in self.entries):
            return Admission(self, False, (), "already archived")
        similar: list[tuple[ArchiveEntry, float]] = []
        for e in self.entries:
            s = 1.0 if e.source_hash == record.source_hash else similarity(record.source, e.source, self.shingle)
            if s >= self.threshold:
                similar.append((e, s))
        for e, s in similar:
            if e.fitness >= f:
                return Admission(self, False, (), f"{s:.2f} similar to {e.id}, which is at least as fit ({e.fitness:.4g} >= {f:.4g})")
        entry = ArchiveEntry(record.id, record.island, f, record.source_hash, record.source)
        replaced = {e.id for e, _ in similar}
        kept = sorted([e for e in self.entries if e.id not in replaced] + [entry], key=_rank)
        overflow = kept[self.capacity :]
        if any(e.id == entry.id for e in overflow):
            # Only possible with nothing similar (replacing makes room): the candidate is the worst of a full archive.
            return Admission(self, False, (), f"below the archive's worst ({self.entries[-1].fitness:.4g}) at capacity {self.capacity}")
        evicted = tuple(sorted(replaced)) + tuple(e.id for e in overflow)
        reason = "admitted" + (f", replacing similar {', '.join(sorted(replaced))}" if replaced else "") + (", evicting the worst" if overflow else "")
        return Admission(replace(self, entries=tuple(kept[: self.capacity])), True, evicted, reason)

    def inspirations(self, rng: random.Random, k: int, exclude_id: str | None = None) -> list[ArchiveEntry]:
        """Up to ``k`` distinct entries drawn uniformly (not ``exclude_id``, usually the parent)."""
        pool = [e for e in self.entries if e.id != exclude_id]
        return rng.sample(pool, min(max(k, 0), len(pool)))

    def to_json(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "threshold": self.threshold, "shingle": self.shingle, "entries": [asdict(e) for e in self.entries]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Archive:
        entries = tuple(sorted((ArchiveEntry(**e) for e in data["entries"]), key=_rank))
        return cls(capacity=int(data["capacity"]), threshold=float(data["threshold"]), shingle=int(data["shingle"]), entries=entries)
