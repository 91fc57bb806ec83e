"""The control plane's own state, and its decisions that need no Ray: what a tenant is,
whether an ``add_tenant`` is new, a repeat or a conflict, and whether a module may be
published over the one serving.

The state (tenants with their configs, the shards the control plane started, and each
tenant's improvement) is saved as JSON under the control plane's root after every change
(atomically: a temporary file renamed over the old one), so a control plane started again
on the same root (a second ``evoagg serve`` or ``evoagg demo``, or after its actor died)
knows what it served and adopts what the shards hold instead of refusing it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.config import TenantConfig
from actors.errors import ConfigError, StateError
from actors.kernel.abi import config_hash

STATE_FILE = "control.json"
STATE_VERSION = 1
FINISHED = ("done", "failed", "serving", "interrupted")
"""How the stage of an improvement that is not running begins."""


@dataclass
class ControlState:
    """What the control plane serves and has done."""

    shards: tuple[str, ...] = ()
    """Names of the shards it started (their state lives under the root, by name)."""
    tenants: dict[int, TenantConfig] = field(default_factory=dict)
    """The orgs it serves, with their configs."""
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Per org, its improvement: stage, generation, best ratio, counts, summary (JSON-able)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "shards": list(self.shards),
            "tenants": {str(org): cfg.to_mapping() for org, cfg in sorted(self.tenants.items())},
            "jobs": {str(org): job for org, job in sorted(self.jobs.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = STATE_FILE) -> ControlState:
        if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
            raise StateError(f"{where}: not a control plane state of version {STATE_VERSION}")
        try:
            tenants = {int(org): TenantConfig.from_mapping(m, f"{where}: tenant {org}") for org, m in data["tenants"].items()}
            jobs = {int(org): dict(j) for org, j in data["jobs"].items()}
            shards = tuple(str(s) for s in data["shards"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise StateError(f"{where}: malformed control plane state: {e}") from None
        return cls(shards, tenants, jobs)

    def save(self, root: Path) -> None:
        path = root / STATE_FILE
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_json(), indent=1, default=str))
        os.replace(tmp, path)

    @classmethod
    def load(cls, root: Path) -> ControlState | None:
        """The saved state under ``root``; None when there is none."""
        path = root / STATE_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise StateError(f"{path}: cannot read the control plane state: {e}") from None
        return cls.from_json(data, str(path))


def resumed_jobs(jobs: Mapping[int, Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """Jobs as a new control plane takes them over: an improvement that was running when
    the previous one stopped did not finish, and is reported so (it is not resumed)."""
    out: dict[int, dict[str, Any]] = {}
    for org, job in jobs.items():
        j = dict(job)
        if not str(j.get("stage", "")).startswith(FINISHED):
            j["stage"] = f"interrupted (control plane restarted during: {j.get('stage')})"
        out[org] = j
    return out


def admit(existing: TenantConfig | None, config: TenantConfig, served_hash: str | None) -> str:
    """What ``add_tenant(config)`` does, given the config the control plane knows for the
    org (``existing``) and the config hash its shard serves it with (``served_hash``,
    None when the shard does not serve it):

    - ``"add"``: nothing serves the org: publish the generic kernel and start serving;
    - ``"adopt"``: the shard already serves it with this config (a control plane started
      again on the same root, or one that lost its state): take it as it is;
    - ``"same"``: already a tenant with this config: nothing to do (a repeated call).

    A different config for an org that is served raises :class:`ConfigError` naming the
    way to change it."""
    want = config_hash(config)
    have = config_hash(existing) if existing is not None else served_hash
    if have is not None and have != want:
        raise ConfigError(
            f"org {config.org} is already served with another config (sha256 {have[:12]}, this one {want[:12]}); "
            f"to serve the new one, remove the tenant first: ctl.remove_tenant({config.org}), then add_tenant again"
        )
    if served_hash is None:
        return "add"
    return "same" if existing is not None else "adopt"


@dataclass(frozen=True)
class PublishDecision:
    """Whether a verified module may replace the serving one, and why."""

    publish: bool
    reason: str


def publish_decision(ratio: float | None, ci95: tuple[float, float] | list[float] | None, margin: float, what: str) -> PublishDecision:
    """A module is published only when the lower end of the 95% interval of its ratio over
    the serving module clears ``1 + margin``: a ratio that noise could explain, or a gain
    smaller than the margin, leaves the serving module in place."""
    if ratio is None or ci95 is None:
        return PublishDecision(False, f"{what}: no measured ratio over the serving module")
    low, high = ci95
    bar = 1 + margin
    text = f"{what}: x{ratio:.3f} over the serving module (95% CI {low:.3f}..{high:.3f})"
    if low > bar:
        return PublishDecision(True, f"{text} clears x{bar:.2f}")
    return PublishDecision(False, f"{text} does not clear x{bar:.2f}")
