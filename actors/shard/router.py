"""Which shard serves which org: rendezvous hashing, with pins for orgs that were moved.

Rendezvous (highest random weight) hashing gives every org the shard with the largest
``sha256(shard, org)``: stable across processes and restarts, and adding or removing a
shard moves only the orgs that must move. A pin overrides the hash for one org (after
``move``); the mapping, pins included, is plain data anyone can print.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from actors.errors import ConfigError


def weight(shard: str, org: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{shard}\x00{org}".encode()).digest()[:8], "big")


def rendezvous(org: int, shards: Iterable[str]) -> str:
    names = list(shards)
    if not names:
        raise ConfigError("no shards to route to")
    return max(names, key=lambda s: (weight(s, org), s))


@dataclass
class Routing:
    shards: list[str]
    """Shard names, each a named actor."""
    pins: dict[int, str] = field(default_factory=dict)
    """Orgs placed by hand (moved), overriding the hash."""

    def shard_for(self, org: int) -> str:
        pinned = self.pins.get(org)
        return pinned if pinned is not None and pinned in self.shards else rendezvous(org, self.shards)

    def pin(self, org: int, shard: str) -> None:
        if shard not in self.shards:
            raise ConfigError(f"unknown shard {shard!r}; shards: {', '.join(self.shards)}")
        if rendezvous(org, self.shards) == shard:
            self.pins.pop(org, None)
        else:
            self.pins[org] = shard

    def mapping(self, orgs: Iterable[int]) -> dict[int, str]:
        return {org: self.shard_for(org) for org in sorted(orgs)}
