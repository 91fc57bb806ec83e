"""The live service on real Ray, real wasm and real signatures: shards under continuous
traffic, the signing registry pushing versions, swaps, rejections, rollback, a shard
killed under load, an org moved between shards. Every test ends by comparing what
reached the Parquet sink with the oracle on the same schedule, and every message with
the accounting."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.config import TenantConfig
from actors.kernel.abi import config_hash
from actors.live_bench import variant
from actors.output import output_hash
from actors.registry_actor import start_registry
from actors.shard.actor import start_shard
from actors.shard.client import ShardClient
from actors.shard.settings import ShardSettings
from actors.signing import Signer, keygen
from actors.sink import read_rows
from tests.modules import abi_module
from tests.support.shardkit import SMALL, batches_of, expected, traffic
from tests.support.signed import sign_module

pytestmark = pytest.mark.integration

LATENESS = 0
BATCH = 8


def tenant(org: int) -> TenantConfig:
    return TenantConfig(org, SMALL.interval_s, SMALL.queries)


@pytest.fixture(scope="module")
def live(ray_local: None, tmp_path_factory: pytest.TempPathFactory, generic_wasm: bytes) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("live")
    key, pub = keygen(root / "keys")
    registry = start_registry(root / "registry", key, name="test-registry")
    yield {"root": root, "key": key, "pub": pub.read_text().strip(), "registry": registry, "generic": generic_wasm}


def settings(live: dict[str, Any], **kw: Any) -> ShardSettings:
    base: dict[str, Any] = {
        "allowed_lateness_s": LATENESS,
        "probation_batches": 2,
        "checkpoint_every_batches": 25,
        "poll_interval_s": 3600.0,
        "trusted_keys": (live["pub"],),
    }
    base.update(kw)
    return ShardSettings(**base).validate()


def publish(live: dict[str, Any], cfg: TenantConfig, wasm: bytes, origin: str = "generic") -> dict[str, Any]:
    return ray.get(live["registry"].publish.remote(cfg.org, config_hash(cfg), wasm, {"origin": origin}))  # type: ignore[no-any-return]


def add(live: dict[str, Any], shard: Any, cfg: TenantConfig) -> dict[str, Any]:
    signed = publish(live, cfg, live["generic"])
    got = ray.get(live["registry"].fetch.remote(cfg.org, config_hash(cfg), signed["manifest"]["version"]))
    return ray.get(shard.add_tenant.remote(cfg, got[0], got[1]))  # type: ignore[no-any-return]


def org_status(shard: Any, org: int) -> dict[str, Any]:
    return ray.get(shard.status.remote())["orgs"][org]  # type: ignore[no-any-return]


def wait_for(cond: Any, timeout: float = 60.0, show: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out: {show() if show else ''}"
        time.sleep(0.05)


class Sender(threading.Thread):
    """Continuous traffic for one org, batch after batch, until the batches run out or
    it is told to stop: every batch is acknowledged before the next."""

    def __init__(self, client: ShardClient, org: int, batches: list[list[bytes]], pace_s: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.client, self.org, self.batches, self.pace_s = client, org, batches, pace_s
        self.sent = 0
        self.acks: list[Any] = []
        self.error: BaseException | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            for b in self.batches:
                if self.halt.is_set():
                    return
                self.acks.append(self.client.send(self.org, b))
                self.sent += 1
                if self.pace_s:
                    time.sleep(self.pace_s)
        except BaseException as e:
            self.error = e


def check_against_oracle(sink_root: Path, cfg: TenantConfig, batches: list[list[bytes]], status: dict[str, Any]) -> None:
    want = expected(cfg, batches, LATENESS)
    got = read_rows(sink_root, cfg.org)
    assert len(got) == len(want.rows)
    assert output_hash(got) == output_hash(want.rows)
    n = sum(len(b) for b in batches)
    assert status["messages_received"] == n
    assert status["messages_accepted"] + sum(status["rejected"].values()) == n
    assert status["points_in"] == want.points and status["points_late"] == want.late


def test_twenty_swaps_under_continuous_traffic_lose_nothing(live: dict[str, Any]) -> None:
    cfg = tenant(501)
    sink = live["root"] / "sink-swaps"
    shard = start_shard("shard-swaps", live["root"] / "state", settings(live), sink, registry_name="test-registry")
    add(live, shard, cfg)
    batches = batches_of(traffic(6000, seed=11, config=cfg), BATCH)
    sender = Sender(ShardClient("gen-501", lambda org: shard), cfg.org, batches, pace_s=0.004)
    sender.start()
    wait_for(lambda: sender.sent >= 10)
    versions = []
    for i in range(20):
        signed = publish(live, cfg, variant(live["generic"], i), origin=f"variant {i}")  # pushed to the shard
        v = signed["manifest"]["version"]
        versions.append(v)
        wait_for(
            lambda v=v: (lambda s: s["module"]["version"] == v and s["probation"] is None)(org_status(shard, cfg.org)),
            show=lambda: ray.get(shard.status.remote()),
        )
    assert sender.is_alive(), "traffic must still be flowing when the last swap completes"
    wait_for(lambda: sender.sent >= 20 + 5)
    sender.halt.set()
    sender.join(120)
    assert sender.error is None and not sender.is_alive()
    batches = batches[: sender.sent]
    ray.get(shard.drain.remote(cfg.org))
    st = ray.get(shard.status.remote())
    org = st["orgs"][cfg.org]
    assert org["module"]["version"] == versions[-1] and org["swaps"] == 20 and org["rollbacks"] == 0
    assert len(st["swap_pauses_ms"]) == 20
    check_against_oracle(sink, cfg, batches, org)


def test_bad_modules_are_refused_and_the_shard_keeps_serving(live: dict[str, Any]) -> None:
    cfg = tenant(502)
    sink = live["root"] / "sink-bad"
    shard = start_shard("shard-bad", live["root"] / "state", settings(live), sink, registry_name="test-registry")
    add(live, shard, cfg)
    batches = batches_of(traffic(240, seed=12, config=cfg), BATCH)
    client = ShardClient("gen-502", lambda org: shard)
    for b in batches[:10]:
        client.send(cfg.org, b)
    chash = config_hash(cfg)
    good = variant(live["generic"], 900)
    signed = sign_module(Signer.load(live["key"]), cfg, good, version=50)

    def offer(signed_dict: dict[str, Any], wasm: bytes) -> dict[str, Any]:
        return ray.get(shard.offer.remote(signed_dict, wasm))  # type: ignore[no-any-return]

    # Tampered bytes, an untrusted key, an old version replayed: refused before anything runs.
    assert offer(signed.to_dict(), good + b"\x00")["reason"] == "sha256_mismatch"
    assert offer(sign_module(Signer.generate(), cfg, good, version=51).to_dict(), good)["reason"] == "untrusted_key"
    first = ray.get(live["registry"].fetch.remote(cfg.org, chash, 1))
    assert offer(first[0], ray.get(first[1]))["reason"] == "stale_version"
    # A valid signature over an invalid module: rejected at validation, reported, marked bad.
    bad = publish(live, cfg, b"\x00asm\x01\x00\x00\x00garbage", origin="broken")
    bad_version = bad["manifest"]["version"]
    wait_for(lambda: any(v["status"] == "bad" for v in ray.get(live["registry"].versions.remote(cfg.org, chash)) if v["manifest"]["version"] == bad_version))
    for b in batches[10:20]:
        client.send(cfg.org, b)
    ray.get(shard.drain.remote(cfg.org))
    st = org_status(shard, cfg.org)
    assert st["module"]["version"] == 1
    assert {"sha256_mismatch", "untrusted_key", "stale_version", "invalid"} <= set(st["swap_rejections"])
    check_against_oracle(sink, cfg, batches[:20], st)


def test_a_module_that_traps_on_its_first_batch_is_rolled_back_everywhere(live: dict[str, Any]) -> None:
    cfg = tenant(503)
    sink = live["root"] / "sink-trap"
    # No traffic yet, so nothing held back: no check before the swap can see the trap.
    shard = start_shard("shard-trap", live["root"] / "state", settings(live), sink, registry_name="test-registry")
    add(live, shard, cfg)
    trap = abi_module("unreachable", flush="i64.const 4398046511108")  # flush: a valid, empty row set
    signed = publish(live, cfg, trap, origin="traps")
    wait_for(lambda: org_status(shard, cfg.org)["module"]["version"] == signed["manifest"]["version"], show=lambda: ray.get(shard.status.remote())["history"])
    batches = batches_of(traffic(80, seed=13, config=cfg), BATCH)
    client = ShardClient("gen-503", lambda org: shard)
    ack = client.send(cfg.org, batches[0])
    assert "RolledBack" in ack.events and ack.accepted == len(batches[0])
    for b in batches[1:]:
        client.send(cfg.org, b)
    ray.get(shard.drain.remote(cfg.org))
    st = org_status(shard, cfg.org)
    assert st["module"]["version"] == 1 and st["rollbacks"] == 1
    versions = ray.get(live["registry"].versions.remote(cfg.org, config_hash(cfg)))
    wait_for(lambda: [v["status"] for v in ray.get(live["registry"].versions.remote(cfg.org, config_hash(cfg)))] == ["ok", "bad"])
    assert versions[0]["status"] == "ok"
    check_against_oracle(sink, cfg, batches, st)


def test_a_shard_killed_under_load_recovers_without_loss_or_double_counting(live: dict[str, Any]) -> None:
    cfg = tenant(504)
    sink = live["root"] / "sink-kill"
    shard = start_shard("shard-kill", live["root"] / "state", settings(live, checkpoint_every_batches=30), sink, registry_name="test-registry")
    add(live, shard, cfg)
    batches = batches_of(traffic(1200, seed=14, config=cfg), BATCH)
    client = ShardClient("gen-504", lambda org: ray.get_actor("shard-kill"))
    sender = Sender(client, cfg.org, batches, pace_s=0.002)
    sender.start()
    wait_for(lambda: sender.sent >= 45)  # past a checkpoint, with journaled batches after it
    pid = ray.get(shard.pid.remote())
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    acked_before = sender.sent
    wait_for(lambda: sender.sent > acked_before + 1, timeout=90)
    recovery_s = time.monotonic() - killed_at
    sender.join(120)
    assert sender.error is None and not sender.is_alive()
    assert client.retries > 0
    ray.get(shard.drain.remote(cfg.org))
    st = ray.get(shard.status.remote())
    assert st["recovery"]["checkpoint"] and st["recovery"]["journal_records"] > 0
    print(f"recovery: {recovery_s:.2f} s until the next acknowledgement; state rebuilt in {st['recovery']['seconds']:.3f} s")
    check_against_oracle(sink, cfg, batches, st["orgs"][cfg.org])


def test_a_module_on_probation_when_its_shard_dies_is_served_again_after_restart(live: dict[str, Any]) -> None:
    # A module on probation is not checkpointed: the restarted shard serves the one before,
    # and must ask the registry at once (the poll interval here is an hour).
    cfg = tenant(506)
    sink = live["root"] / "sink-probation-kill"
    shard = start_shard("shard-probation-kill", live["root"] / "state", settings(live, probation_batches=10**6), sink, registry_name="test-registry")
    add(live, shard, cfg)
    batches = batches_of(traffic(240, seed=15, config=cfg), BATCH)
    client = ShardClient("gen-506", lambda org: ray.get_actor("shard-probation-kill"))
    for b in batches[:10]:
        client.send(cfg.org, b)
    publish(live, cfg, variant(live["generic"], 1), origin="variant 1")  # pushed; swapped; on probation
    wait_for(lambda: org_status(shard, cfg.org)["probation"] is not None, show=lambda: org_status(shard, cfg.org))
    assert org_status(shard, cfg.org)["module"]["version"] == 2
    os.kill(ray.get(shard.pid.remote()), signal.SIGKILL)
    for b in batches[10:]:
        client.send(cfg.org, b)  # retried until the restarted shard acknowledges it
    wait_for(lambda: org_status(shard, cfg.org)["module"]["version"] == 2, show=lambda: org_status(shard, cfg.org))
    st = ray.get(shard.status.remote())
    assert st["recovery"]["journal_records"] > 0
    ray.get(shard.drain.remote(cfg.org))
    check_against_oracle(sink, cfg, batches, org_status(shard, cfg.org))


def test_an_org_moves_to_another_shard_under_traffic(live: dict[str, Any]) -> None:
    cfg = tenant(505)
    sink = live["root"] / "sink-move"
    a = start_shard("shard-move-a", live["root"] / "state", settings(live), sink)
    b = start_shard("shard-move-b", live["root"] / "state", settings(live), sink)
    add(live, a, cfg)
    where = {"shard": a}
    batches = batches_of(traffic(400, seed=15, config=cfg), BATCH)
    sender = Sender(ShardClient("gen-505", lambda org: where["shard"]), cfg.org, batches, pace_s=0.003)
    sender.start()
    wait_for(lambda: sender.sent >= 15)
    export = ray.get(a.export_org.remote(cfg.org))  # from here a refuses the org; the client retries
    ray.get(b.import_org.remote(export))
    where["shard"] = b
    sender.join(120)
    assert sender.error is None and not sender.is_alive()
    ray.get(b.drain.remote(cfg.org))
    assert cfg.org not in ray.get(a.status.remote())["orgs"]
    check_against_oracle(sink, cfg, batches, org_status(b, cfg.org))
