"""How a shard behaves: watermark, probation, checkpoints, polling, samples, trust.

A frozen dataclass with a docstring per field and ``validate()``; YAML is read at the
edge (:func:`actors.loading.load_shard_settings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from actors.config import SandboxConfig, check_int, check_keys
from actors.errors import ConfigError
from actors.reservoir import ShadowSettings


@dataclass(frozen=True)
class ShardSettings:
    """One shard's behaviour. Every org the shard serves shares it."""

    allowed_lateness_s: int = 60
    """The watermark is the largest event time seen minus this; a bucket is flushed
    downstream once the watermark passes its end, and later points for it are late."""
    max_batch_messages: int = 4096
    """Most messages one ingest call may carry (a larger call is refused, not split)."""
    probation_batches: int = 8
    """After a swap, the previous module keeps running beside the new one for at least
    this many batches (and until one flush with rows was compared); its output is what
    is emitted, and any difference or trap of the new module rolls the swap back."""
    swap_check_messages: int = 64
    """Held-back messages the shard runs through both modules before a swap (the verifier
    pool ran the full held-back set already; this is the shard's own, quick check)."""
    checkpoint_every_batches: int = 100
    """A checkpoint is written after this many journaled batches (0: only on request)."""
    checkpoint_every_s: float = 10.0
    """... or when this many seconds passed since the last one, whichever comes first."""
    poll_interval_s: float = 300.0
    """How often the shard asks the registry for newer versions, in case a push was missed."""
    rate_window_s: float = 10.0
    """Window of the msg/s figure in the accounting."""
    fsync: bool = False
    """fsync the journal on every batch: survives a machine crash, not only a process crash."""
    trusted_keys: tuple[str, ...] = ()
    """Ed25519 public keys (hex, or paths to ``.pub`` files) whose signatures this shard
    accepts; several keys allow rotation. Empty: the shard accepts no module at all."""
    shadow: ShadowSettings = field(default_factory=ShadowSettings)
    """Reservoirs of sampled messages per org: training (for the evolver) and held back."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Limits every module runs under."""

    def validate(self) -> ShardSettings:
        check_int("allowed_lateness_s", self.allowed_lateness_s, 0, 2**31)
        check_int("max_batch_messages", self.max_batch_messages, 1, 1_000_000)
        check_int("probation_batches", self.probation_batches, 0, 1_000_000)
        check_int("checkpoint_every_batches", self.checkpoint_every_batches, 0, 10**9)
        check_int("swap_check_messages", self.swap_check_messages, 0, 1_000_000)
        for name in ("checkpoint_every_s", "poll_interval_s", "rate_window_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 86_400 * 365:
                raise ConfigError(f"{name}: expected seconds in (0, 1 year], found {v!r}")
        if not isinstance(self.fsync, bool):
            raise ConfigError(f"fsync: expected true or false, found {self.fsync!r}")
        if not all(isinstance(k, str) and k for k in self.trusted_keys):
            raise ConfigError("trusted_keys: expected a list of hex keys or .pub paths")
        self.shadow.validate()
        self.sandbox.validate()
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "shard settings") -> ShardSettings:
        names = {f.name for f in fields(cls)}
        check_keys(source, data, names)
        values = dict(data)
        try:
            if "shadow" in values:
                values["shadow"] = ShadowSettings.from_mapping(values["shadow"] or {}, "shadow")
            if "sandbox" in values:
                values["sandbox"] = SandboxConfig.from_mapping(values["sandbox"] or {}, "sandbox")
            if "trusted_keys" in values:
                keys = values["trusted_keys"] or []
                if not isinstance(keys, list):
                    raise ConfigError("trusted_keys: expected a list")
                values["trusted_keys"] = tuple(keys)
            return cls(**values).validate()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
