"""The control plane's status with a shard gone (real Ray): it answers in bounded time,
names the shard and its tenants as unreachable, and still reports the others whole."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray

from actors.config import TenantConfig
from actors.control import STATUS_TIMEOUT_S, connect
from tests.support.shardkit import SMALL, traffic

pytestmark = pytest.mark.integration


def _wait_dead(actor: object, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.pid.remote(), timeout=5)  # type: ignore[attr-defined]
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.1)
    raise AssertionError("the killed shard still answers")


def test_status_reports_a_dead_shard_and_its_tenants(ray_local: None, generic_wasm: bytes, tmp_path: Path) -> None:
    ctl = connect(None, root=tmp_path / "state", shards=2, shard_cpus=0.0, detached=False)
    try:
        orgs = [601, 602, 603, 604]
        for org in orgs:
            cfg = TenantConfig(org, SMALL.interval_s, SMALL.queries)
            ctl.add_tenant(cfg)
            ctl.ingest(org, traffic(16, seed=org, config=cfg), source="t")
        mapping = ctl.status()["mapping"]
        victim = mapping[orgs[0]]
        assert len(set(mapping.values())) == 2, mapping  # both shards serve someone
        shard = ray.get_actor(victim)  # shards live in the job's namespace
        ray.kill(shard, no_restart=True)
        _wait_dead(shard)  # ray.kill returns before the actor is gone
        t0 = time.monotonic()
        st = ctl.status()
        took = time.monotonic() - t0
        assert took < STATUS_TIMEOUT_S + 10  # bounded: it does not wait for the dead shard
        assert st["shards"][victim]["reachable"] is False and st["shards"][victim]["error"]
        for org in orgs:
            t = st["tenants"][org]
            if mapping[org] == victim:
                assert t["reachable"] is False and t["shard"] == victim and t["latest_version"] == 1
            else:
                assert t["reachable"] is True and t["messages_received"] == 16 and t["module"]["version"] == 1
    finally:
        ctl.shutdown()
