"""A control plane started again takes over what is running instead of refusing it (real
Ray): after its actor died (the shards and registry still run), and on a root whose
system was shut down (the shards come back from their journals). Adding the same tenant
again changes nothing; another config for a served org is refused with the way to change it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray

from actors.config import TenantConfig
from actors.control import CONTROL, NAMESPACE, connect
from actors.errors import ConfigError
from tests.support.shardkit import SMALL, traffic

pytestmark = pytest.mark.integration
OTHER = TenantConfig.from_mapping({"org": SMALL.org, "interval_s": 60, "queries": [{"id": "x", "q": "sum:cpu.usage{*}"}]})


def _gone(name: str, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} still exists")


def _cause(e: BaseException) -> BaseException:
    return e.cause if isinstance(e, ray.exceptions.RayTaskError) and e.cause is not None else e


def test_a_new_control_plane_adopts_what_the_one_that_died_served(ray_local: None, generic_wasm: bytes, tmp_path: Path) -> None:
    root = tmp_path / "state"
    ctl = connect(None, root=root, detached=True)
    try:
        assert ctl.add_tenant(SMALL)["admitted"] == "add"
        ctl.ingest(SMALL.org, traffic(16, seed=1), source="t")
        ray.kill(ctl.actor, no_restart=True)  # the control actor dies; shards and registry run on
        _gone(CONTROL)
        ctl = connect(None, root=root, detached=True)
        st = ctl.status()
        assert st["tenants"][SMALL.org]["messages_received"] == 16
        assert ctl.add_tenant(SMALL)["admitted"] == "same"  # idempotent: no new version, no error
        assert [v["manifest"]["version"] for v in ctl.modules(SMALL.org)] == [1]
        with pytest.raises(Exception) as err:
            ctl.add_tenant(OTHER)
        cause = _cause(err.value)
        assert isinstance(cause, ConfigError) and f"remove_tenant({SMALL.org})" in str(cause)
        ctl.ingest(SMALL.org, traffic(8, seed=2), source="t2")
        assert ctl.status()["tenants"][SMALL.org]["messages_received"] == 24
        # The way to change the config: remove, then add.
        assert ctl.remove_tenant(SMALL.org)["org"] == SMALL.org
        assert ctl.add_tenant(OTHER)["admitted"] == "add"
        assert ctl.status()["tenants"][SMALL.org]["config_hash"] != st["tenants"][SMALL.org]["config_hash"]
    finally:
        ctl.shutdown()
        _gone(CONTROL)


def test_a_control_plane_on_the_root_of_a_stopped_system_takes_it_over(ray_local: None, generic_wasm: bytes, tmp_path: Path) -> None:
    root = tmp_path / "state"
    ctl = connect(None, root=root, detached=False)
    ctl.add_tenant(SMALL)
    ctl.ingest(SMALL.org, traffic(16, seed=3), source="t")
    ctl.shutdown()  # every actor of the system stops; its state stays under the root
    _gone(CONTROL)
    _gone("evoagg-shard-0")
    ctl = connect(None, root=root, detached=False)
    try:
        st = ctl.status()
        t = st["tenants"][SMALL.org]
        assert t["reachable"] and t["messages_received"] == 16  # the shard recovered it from its journal
        assert ctl.add_tenant(SMALL)["admitted"] == "same"
        assert (root / "control.json").exists()
    finally:
        ctl.shutdown()
