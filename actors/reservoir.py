"""Reservoirs: bounded uniform samples of an org's incoming messages, split for shadowing.

A shard keeps, per org, two samples of the raw messages it receives: **training** messages,
which the evolver may see (to propose and benchmark candidates), and **holdout** messages,
held back: never shown to the evolver, read only by the verifier's shadow stage and the
shard's own shadow check, so a candidate is judged on traffic it could not have been tuned to.

Which set a message belongs to is a function of its bytes (a keyed BLAKE2b hash compared to
``holdout_fraction``), not of any RNG: the same message lands in the same set when it is
replayed after a restart, sampled by two shards, or moved with its org. The RNG, passed in so
runs replay exactly, only decides which messages are considered (``sample_rate``) and which
reservoir slot a message replaces.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from actors.config import check_int, check_keys
from actors.errors import ConfigError

MAX_CAPACITY = 2**20
"""Largest reservoir, in messages."""

EXPORT_VERSION = 1

# Domain separation: the split must not correlate with any other hash of the same bytes.
_HOLDOUT_PERSON = b"evoagg.holdout"


class Reservoir:
    """A uniform sample of at most ``capacity`` items from a stream (Vitter's Algorithm R).

    After ``seen`` offers each offered item is held with probability ``capacity / seen`` (or 1
    while ``seen <= capacity``). Memory is the ``capacity`` items themselves; the order of
    :meth:`items` is slot order, not arrival order.
    """

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 0 <= capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity must be an integer in 0..{MAX_CAPACITY}, got {capacity!r}")
        self.capacity = capacity
        self.seen = 0
        """Items offered so far."""
        self._items: list[bytes] = []

    def offer(self, item: bytes, rng: random.Random) -> None:
        """Counts ``item`` and keeps it with the probability that keeps the sample uniform."""
        self.seen += 1
        if len(self._items) < self.capacity:
            self._items.append(item)
            return
        # One draw per offer once full; slot j < capacity is replaced with probability capacity/seen.
        j = rng.randrange(self.seen)
        if j < self.capacity:
            self._items[j] = item

    def items(self) -> list[bytes]:
        """The sample (a copy)."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def retain(self, keep: Callable[[bytes], bool]) -> None:
        """Drops the items ``keep`` rejects (``seen`` is unchanged)."""
        self._items = [i for i in self._items if keep(i)]

    def to_dict(self) -> dict[str, Any]:
        """Plain, picklable state: ``capacity``, ``seen`` and ``items``."""
        return {"capacity": self.capacity, "seen": self.seen, "items": list(self._items)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "reservoir") -> Reservoir:
        """Rebuilds a reservoir from :meth:`to_dict`; raises ``ValueError`` when it is inconsistent."""
        if not isinstance(data, Mapping) or set(data) != {"capacity", "seen", "items"}:
            raise ValueError(f"{where}: expected keys capacity, seen, items")
        r = cls(data["capacity"])
        seen, items = data["seen"], data["items"]
        if isinstance(seen, bool) or not isinstance(seen, int) or seen < 0:
            raise ValueError(f"{where}: seen must be a non-negative integer, got {seen!r}")
        if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
            raise ValueError(f"{where}: items must be a list of bytes")
        # Fewer is allowed (an import may drop items the split now puts in the other set).
        if len(items) > min(r.capacity, seen):
            raise ValueError(f"{where}: {len(items)} items but capacity {r.capacity} and seen {seen}")
        r.seen = seen
        r._items = list(items)
        return r


def _check_fraction(name: str, value: Any, lo: float, hi: float, lo_open: bool, hi_open: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name}: expected a number, found {value!r}")
    if (value <= lo if lo_open else value < lo) or (value >= hi if hi_open else value > hi):
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ConfigError(f"{name}: expected a number in {left}{lo}, {hi}{right}, found {value}")


@dataclass(frozen=True)
class ShadowSettings:
    """How much of each org's traffic is sampled for evolution and shadow checks."""

    training_capacity: int = 512
    """Messages per org kept for the evolver (training set)."""
    holdout_capacity: int = 256
    """Messages per org held back from the evolver, for the verifier's shadow stage and the shard's shadow check."""
    holdout_fraction: float = 0.2
    """Share of sampled messages that belong to the held-back set (decided by a hash of the message bytes); 0 ≤ f < 1."""
    sample_rate: float = 1.0
    """Share of incoming messages considered for sampling at all (drawn from the RNG); 0 < r ≤ 1."""

    def validate(self) -> ShadowSettings:
        check_int("training_capacity", self.training_capacity, 1, MAX_CAPACITY)
        check_int("holdout_capacity", self.holdout_capacity, 1, MAX_CAPACITY)
        _check_fraction("holdout_fraction", self.holdout_fraction, 0.0, 1.0, lo_open=False, hi_open=True)
        _check_fraction("sample_rate", self.sample_rate, 0.0, 1.0, lo_open=True, hi_open=False)
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "shadow settings") -> ShadowSettings:
        check_keys(source, data, {f.name for f in fields(cls)})
        try:
            return cls(**dict(data)).validate()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None


def holdout_point(payload: bytes) -> float:
    """Where ``payload`` falls in [0, 1): the first 8 bytes of its keyed BLAKE2b, over 2^64."""
    h = hashlib.blake2b(payload, digest_size=8, person=_HOLDOUT_PERSON).digest()
    return int.from_bytes(h, "big") / 2**64


def in_holdout(payload: bytes, holdout_fraction: float) -> bool:
    """Whether ``payload`` belongs to the held-back set: a function of its bytes alone."""
    return holdout_point(payload) < holdout_fraction


class _OrgSample:
    __slots__ = ("holdout", "sampled", "seen", "training")

    def __init__(self, training: Reservoir, holdout: Reservoir, seen: int = 0, sampled: int = 0) -> None:
        self.training = training
        self.holdout = holdout
        self.seen = seen
        self.sampled = sampled


class ShadowSampler:
    """Per org, a training reservoir and a holdout reservoir of raw messages.

    A message is in at most one of an org's two sets, and always the same one (see the module
    docstring). Replayed messages are offered again (no deduplication): a sample may then hold
    a message twice, in the same set.
    """

    def __init__(self, settings: ShadowSettings | None = None) -> None:
        self.settings = (settings or ShadowSettings()).validate()
        self._orgs: dict[int, _OrgSample] = {}

    def _org(self, org: int) -> _OrgSample:
        s = self._orgs.get(org)
        if s is None:
            s = _OrgSample(Reservoir(self.settings.training_capacity), Reservoir(self.settings.holdout_capacity))
            self._orgs[org] = s
        return s

    def offer(self, org: int, payloads: Sequence[bytes], rng: random.Random) -> None:
        """Offers ``org``'s incoming messages; each is sampled with probability ``sample_rate``."""
        s = self._org(org)
        rate = self.settings.sample_rate
        fraction = self.settings.holdout_fraction
        for p in payloads:
            s.seen += 1
            # No draw at rate 1: the RNG stream then only serves the reservoirs.
            if rate < 1.0 and rng.random() >= rate:
                continue
            s.sampled += 1
            (s.holdout if in_holdout(p, fraction) else s.training).offer(p, rng)

    def orgs(self) -> list[int]:
        """Orgs with a sample, ascending."""
        return sorted(self._orgs)

    def training(self, org: int) -> list[bytes]:
        """The messages the evolver may see for ``org``."""
        s = self._orgs.get(org)
        return s.training.items() if s else []

    def holdout(self, org: int) -> list[bytes]:
        """The held-back messages of ``org``: for shadow checks only, never for the evolver."""
        s = self._orgs.get(org)
        return s.holdout.items() if s else []

    def stats(self, org: int) -> dict[str, int]:
        """Counters of ``org``: messages seen and sampled, offers and sizes per set."""
        s = self._orgs.get(org)
        if s is None:
            return {"seen": 0, "sampled": 0, "training_seen": 0, "training_size": 0, "holdout_seen": 0, "holdout_size": 0}
        return {
            "seen": s.seen,
            "sampled": s.sampled,
            "training_seen": s.training.seen,
            "training_size": len(s.training),
            "holdout_seen": s.holdout.seen,
            "holdout_size": len(s.holdout),
        }

    def export(self, org: int) -> dict[str, Any]:
        """``org``'s sample as a plain, picklable dict (to move the org or checkpoint it)."""
        # An unknown org exports as empty, without being created here.
        s = self._orgs.get(org) or _OrgSample(Reservoir(self.settings.training_capacity), Reservoir(self.settings.holdout_capacity))
        return {
            "version": EXPORT_VERSION,
            "seen": s.seen,
            "sampled": s.sampled,
            "training": s.training.to_dict(),
            "holdout": s.holdout.to_dict(),
        }

    def import_(self, org: int, data: Mapping[str, Any]) -> None:
        """Replaces ``org``'s sample with one from :meth:`export` (here or on another shard).

        The reservoirs keep the capacities they were sampled with, so the sample stays uniform
        when shards' settings differ. Items are filtered by this sampler's split: if the
        exporter's ``holdout_fraction`` differed, messages it put in the other set are dropped
        (a smaller but still disjoint sample). Raises ``ValueError`` on malformed data.
        """
        keys = {"version", "seen", "sampled", "training", "holdout"}
        if not isinstance(data, Mapping) or set(data) != keys:
            raise ValueError(f"shadow sample of org {org}: expected keys {', '.join(sorted(keys))}")
        if data["version"] != EXPORT_VERSION:
            raise ValueError(f"shadow sample of org {org}: version {data['version']!r}, expected {EXPORT_VERSION}")
        seen, sampled = data["seen"], data["sampled"]
        for name, v in (("seen", seen), ("sampled", sampled)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"shadow sample of org {org}: {name} must be a non-negative integer, got {v!r}")
        training = Reservoir.from_dict(data["training"], f"shadow sample of org {org}: training")
        holdout = Reservoir.from_dict(data["holdout"], f"shadow sample of org {org}: holdout")
        if not training.seen + holdout.seen == sampled <= seen:
            raise ValueError(f"shadow sample of org {org}: counters disagree (seen {seen}, sampled {sampled})")
        # Always re-split (cheap: at most the two capacities): this holds the sets disjoint even
        # when the exporter ran with another holdout_fraction.
        fraction = self.settings.holdout_fraction
        training.retain(lambda p: not in_holdout(p, fraction))
        holdout.retain(lambda p: in_holdout(p, fraction))
        self._orgs[org] = _OrgSample(training, holdout, seen, sampled)

    def drop(self, org: int) -> None:
        """Forgets ``org``'s sample (the org moved away or was deleted)."""
        self._orgs.pop(org, None)
