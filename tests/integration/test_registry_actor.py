"""The registry actor on real Ray: modules by reference, pushes to subscribers, revocation,
a restart from disk, and a dead subscriber that does not break publishing."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.errors import ModuleRejected
from actors.kernel.abi import config_hash
from actors.loading import load_tenant
from actors.registry_actor import start_registry
from actors.signing import SignedManifest, TrustStore, check_module, keygen

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]
REPO = Path(__file__).resolve().parents[2]
W1 = load_tenant(REPO / "configs/tenants/1042.yaml")
CH = config_hash(W1)


@ray.remote(num_cpus=0)
class FakeShard:
    """Records pushes and takes the bytes of every offer, as a shard does."""

    def __init__(self) -> None:
        self.offers: list[tuple[dict[str, Any], bytes]] = []
        self.revokes: list[tuple[int, str, int, str]] = []

    def offer(self, signed: dict[str, Any], module_ref: list[Any]) -> None:
        self.offers.append((signed, ray.get(module_ref[0])))

    def revoke(self, org: int, config_hash: str, version: int, reason: str) -> None:
        self.revokes.append((org, config_hash, version, reason))

    def seen(self) -> tuple[list[tuple[dict[str, Any], bytes]], list[tuple[int, str, int, str]]]:
        return self.offers, self.revokes


def wasm(tag: str) -> bytes:
    return b"\0asm\x01\0\0\0" + tag.encode()


def until(cond: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def registry(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Any, TrustStore]:
    key, pub = keygen(tmp_path / "keys")
    handle = start_registry(tmp_path / "registry", key, name=f"registry-{request.node.name}")
    return handle, TrustStore.from_entries([pub])


def test_publish_fetch_by_reference_and_push(registry: tuple[Any, TrustStore]) -> None:
    reg, trust = registry
    shard = FakeShard.remote()  # type: ignore[attr-defined]
    ray.get(reg.subscribe.remote("shard-0", shard, [W1.org]))
    v1 = ray.get(reg.publish.remote(W1.org, CH, wasm("one"), {"origin": "specialized"}))
    v2 = ray.get(reg.publish.remote(W1.org, CH, wasm("two"), {"origin": "evolved gen 1", "report": {"accepted": True}, "ratio": 1.3, "parent": "v1"}))
    assert (v1["manifest"]["version"], v2["manifest"]["version"]) == (1, 2)
    assert ray.get(reg.latest.remote(W1.org, CH)) == v2
    assert ray.get(reg.latest.remote(W1.org, "00" * 32)) is None
    signed, ref = ray.get(reg.fetch.remote(W1.org, CH, 1))
    assert isinstance(ref, ray.ObjectRef) and signed == v1
    check_module(SignedManifest.from_dict(signed), ray.get(ref), trust)
    # One object per version: fetching again hands out the same reference.
    assert ray.get(reg.fetch.remote(W1.org, CH, 2))[1] == ray.get(reg.fetch.remote(W1.org, CH, 2))[1]
    until(lambda: len(ray.get(shard.seen.remote())[0]) == 2)
    offers, _ = ray.get(shard.seen.remote())
    assert [(o[0], o[1]) for o in offers] == [(v1, wasm("one")), (v2, wasm("two"))]
    assert ray.get(reg.public_key.remote())["key_id"] in trust.key_ids

    assert ray.get(reg.mark_bad.remote(W1.org, CH, 2, "shadow disagreed", "shard-0")) is True
    assert ray.get(reg.mark_bad.remote(W1.org, CH, 2, "again", "shard-0")) is False
    assert ray.get(reg.latest.remote(W1.org, CH)) == v1
    until(lambda: len(ray.get(shard.seen.remote())[1]) == 1)
    assert ray.get(shard.seen.remote())[1] == [(W1.org, CH, 2, "shadow disagreed")]
    with pytest.raises(ModuleRejected, match="revoked"):
        ray.get(reg.fetch.remote(W1.org, CH, 2))
    with pytest.raises(ModuleRejected, match="not_verified"):
        ray.get(reg.publish.remote(W1.org, CH, wasm("three"), {"origin": "evolved", "report": {"accepted": False}}))
    statuses = [e["status"] for e in ray.get(reg.versions.remote(W1.org, CH))]
    assert statuses == ["ok", "bad"]


def test_a_restarted_registry_serves_the_same_versions(registry: tuple[Any, TrustStore]) -> None:
    reg, trust = registry
    shard = FakeShard.remote()  # type: ignore[attr-defined]
    ray.get(reg.subscribe.remote("shard-0", shard, [W1.org]))
    published = ray.get(reg.publish.remote(W1.org, CH, wasm("kept"), {"origin": "specialized"}))
    ray.kill(reg, no_restart=False)
    # ray.kill returns before the process is gone: wait until the restarted actor answers
    # (its subscriptions are in memory only, so an empty list shows the process restarted).
    deadline = time.monotonic() + 60
    while ray.get(reg.subscribers.remote(), timeout=60) != []:
        assert time.monotonic() < deadline, "the registry did not restart"
        time.sleep(0.05)
    # It has reloaded everything from disk.
    assert ray.get(reg.latest.remote(W1.org, CH), timeout=60) == published
    signed, ref = ray.get(reg.fetch.remote(W1.org, CH, 1))
    check_module(SignedManifest.from_dict(signed), ray.get(ref), trust)
    again = ray.get(reg.publish.remote(W1.org, CH, wasm("next"), {"origin": "evolved"}))
    assert again["manifest"]["version"] == 2


def test_a_dead_subscriber_does_not_break_publish(registry: tuple[Any, TrustStore]) -> None:
    reg, _ = registry
    dead, live = FakeShard.remote(), FakeShard.remote()  # type: ignore[attr-defined]
    ray.get([reg.subscribe.remote("dead", dead, [W1.org]), reg.subscribe.remote("live", live, [W1.org])])
    ray.get(dead.seen.remote())
    ray.kill(dead)
    n = 0
    while "dead" in ray.get(reg.subscribers.remote()):
        n += 1
        assert n < 50, "the dead subscriber was never dropped"
        assert ray.get(reg.publish.remote(W1.org, CH, wasm(f"m{n}"), {"origin": "evolved"}))["manifest"]["version"] == n
        time.sleep(0.1)
    assert ray.get(reg.subscribers.remote()) == ["live"]
    until(lambda: len(ray.get(live.seen.remote())[0]) == n)
    digests = [o[0]["manifest"]["module_sha256"] for o in ray.get(live.seen.remote())[0]]
    assert digests == [hashlib.sha256(wasm(f"m{i}")).hexdigest() for i in range(1, n + 1)]
