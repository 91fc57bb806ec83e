"""The module registry on Ray: a thin actor over :class:`actors.registry_state.RegistryState`.

    evolution / operator ── publish(org, config_hash, wasm, meta) ──► RegistryActor ──► root/ (signed, on disk)
                                                                       │ ray.put(wasm) once per version
    shard ◄── offer(signed, [ref]) ── push, fire and forget ───────────┘
    shard ── latest(org, config_hash) every few seconds ──► (a missed push is not a missed module)
    shard ── fetch(org, config_hash, version) ──► [signed, ref]   (bytes by reference, from the object store)
    shard ── mark_bad(...) ──► revoke(...) pushed to the org's subscribers

How versions reach shards: pushed on publish, and polled. The push carries the signed
manifest and an ObjectRef to the bytes, put in the object store once per version, so a
module travels once to each node however many shards load it. Pushes are fire and forget
(a slow or dead shard never holds up the registry; a shard found dead is dropped), so they
may be missed: a shard that was restarting, or subscribed after the push. Each shard
therefore also polls ``latest`` at an interval and fetches what it lacks. Subscriptions
live in memory only: a restarted registry has none until shards subscribe again, which
they do on every poll (``subscribe`` is idempotent). Shards check every manifest's
signature and the bytes' SHA-256 themselves (``actors.signing.check_module``): the
registry is trusted to sign, not the transport.

The actor restarts forever (``max_restarts=-1``) and retries calls that were in flight
(``max_task_retries=-1``); everything it serves is on disk, so a restarted registry serves
the same versions, and a retried publish returns the version the first attempt made.
Objects it ``put`` before dying are lost with it (it owned them): a shard that received an
offer takes the bytes at once, and otherwise fetches again, getting a fresh reference.
The signing key is read from ``key_path`` on the node where the actor runs.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorDiedError

from actors import placement
from actors.errors import ModuleRejected
from actors.registry_state import RegistryState, Subscriptions
from actors.signing import Signer, TrustStore

_logger = logging.getLogger(__name__)

REGISTRY_OPTIONS: dict[str, Any] = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1}
"""The registry actor's Ray options (all of them: set here only)."""
META_KEYS = {"origin", "source_commit", "parent", "report", "ratio"}


class RayShardPeer:
    """A subscriber that is a Ray actor with ``offer`` and ``revoke`` methods."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._pending: list[Any] = []
        self._dead = False

    def offer(self, signed: dict[str, Any], module_ref: list[Any]) -> None:
        if not self._dead:
            self._pending.append(self._handle.offer.remote(signed, module_ref))

    def revoke(self, org: int, config_hash: str, version: int, reason: str) -> None:
        if not self._dead:
            self._pending.append(self._handle.revoke.remote(org, config_hash, version, reason))

    def alive(self) -> bool:
        """Looks at finished pushes without waiting: a push that failed because the actor
        died for good marks the peer dead; one the shard itself refused is only logged."""
        if self._pending and not self._dead:
            ready, self._pending = ray.wait(self._pending, num_returns=len(self._pending), timeout=0)
            for ref in ready:
                try:
                    ray.get(ref)
                except ActorDiedError:
                    self._dead = True
                except Exception as e:
                    _logger.warning("a subscriber's push failed: %s", e)
        return not self._dead


@ray.remote(**REGISTRY_OPTIONS)
class RegistryActor:
    """The registry: signs, stores and serves tenants' module versions; pushes them to subscribers."""

    def __init__(self, root: str, key_path: str, trusted_previous: list[str]) -> None:
        self._signer = Signer.load(Path(key_path))
        self._state = RegistryState(Path(root), self._signer, time.time, TrustStore.from_entries(trusted_previous))
        self._refs: dict[tuple[int, str, int], Any] = {}
        self._subs = Subscriptions(_logger.warning)

    def _module_ref(self, org: int, config_hash: str, version: int, wasm: bytes | None = None) -> Any:
        key = (org, config_hash, version)
        if key not in self._refs:
            self._refs[key] = ray.put(wasm if wasm is not None else self._state.get(org, config_hash, version)[1])
        return self._refs[key]

    def publish(self, org: int, config_hash: str, wasm: bytes, meta: dict[str, Any]) -> dict[str, Any]:
        """Signs and stores the next version; pushes it to the org's subscribers. ``meta``:
        ``origin`` (required), ``source_commit``, ``parent``, ``report``, ``ratio``."""
        unknown = sorted(set(meta) - META_KEYS)
        if unknown or "origin" not in meta:
            optional = ", ".join(sorted(META_KEYS - {"origin"}))
            raise ModuleRejected("bad_manifest", f"publish meta: expected 'origin' and optionally {optional}; unknown: {unknown}")
        signed = self._state.publish(org, config_hash, wasm, **meta)
        m = signed.manifest
        self._subs.offer(signed, [self._module_ref(org, config_hash, m.version, wasm)])
        return signed.to_dict()

    def latest(self, org: int, config_hash: str) -> dict[str, Any] | None:
        signed = self._state.latest(org, config_hash)
        return signed.to_dict() if signed else None

    def fetch(self, org: int, config_hash: str, version: int) -> list[Any]:
        """``[signed manifest dict, ObjectRef to the bytes]``; the ref inside a list so Ray passes it unresolved."""
        entry = self._state.entry(org, config_hash, version)
        if entry.status == "bad":
            raise ModuleRejected("revoked", f"org {org} version {version} is marked bad: {entry.bad_reason}")
        return [entry.signed.to_dict(), self._module_ref(org, config_hash, version)]

    def versions(self, org: int, config_hash: str) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self._state.versions(org, config_hash)]

    def tenants(self) -> list[list[Any]]:
        return [[org, ch] for org, ch in self._state.tenants()]

    def mark_bad(self, org: int, config_hash: str, version: int, reason: str, reporter: str) -> bool:
        """Revokes a version and tells the org's subscribers; False if it was bad already."""
        if not self._state.mark_bad(org, config_hash, version, reason, reporter):
            return False
        _logger.warning("org %d version %d marked bad by %s: %s", org, version, reporter, reason)
        self._refs.pop((org, config_hash, version), None)
        self._subs.revoke(org, config_hash, version, reason)
        return True

    def subscribe(self, name: str, handle: Any, orgs: list[int]) -> None:
        self._subs.subscribe(name, RayShardPeer(handle), orgs)

    def unsubscribe(self, name: str) -> bool:
        return self._subs.unsubscribe(name)

    def subscribers(self) -> list[str]:
        return self._subs.names()

    def public_key(self) -> dict[str, str]:
        return {"key_id": self._signer.key_id, "public_hex": self._signer.public_hex}


def _absolute(entry: str | Path) -> str:
    """A hex key as is; a path made absolute here, since the actor's working directory differs."""
    if isinstance(entry, str) and re.fullmatch(r"[0-9a-fA-F]{64}", entry):
        return entry
    return str(Path(entry).resolve())


def start_registry(
    root: Path, key_path: Path, name: str = "evoagg-registry", trusted_previous: Iterable[str | Path] = (), namespace: str | None = None, detached: bool = False
) -> Any:
    """The named registry actor, created unless it already runs (then its handle is returned).
    ``trusted_previous``: public keys (hex or ``.pub`` paths) that signed earlier versions."""
    entries = [_absolute(e) for e in trusted_previous]
    options = RegistryActor.options(  # type: ignore[attr-defined]
        name=name, namespace=namespace, get_if_exists=True, lifetime="detached" if detached else None, resources=placement.resources("registry")
    )
    return options.remote(str(root.resolve()), str(key_path.resolve()), entries)
