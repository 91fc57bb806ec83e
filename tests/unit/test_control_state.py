"""The control plane's saved state and its pure decisions: adding a tenant again, adopting
what a shard serves, refusing another config, and publishing only past the margin."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.config import TenantConfig
from actors.control_state import ControlState, admit, publish_decision, resumed_jobs
from actors.errors import ConfigError, StateError
from actors.kernel.abi import config_hash
from tests.support.shardkit import SMALL

OTHER = TenantConfig.from_mapping({"org": SMALL.org, "interval_s": 60, "queries": [{"id": "x", "q": "sum:cpu.usage{*}"}]})


def test_the_state_survives_a_restart(tmp_path: Path) -> None:
    st = ControlState(("evoagg-shard-0", "evoagg-shard-1"), {SMALL.org: SMALL}, {SMALL.org: {"stage": "done: evolved x2.00 published", "built": 3}})
    st.save(tmp_path)
    again = ControlState.load(tmp_path)
    assert again == st
    assert ControlState.load(tmp_path / "nowhere") is None


def test_a_damaged_state_is_refused_not_guessed(tmp_path: Path) -> None:
    (tmp_path / "control.json").write_text("{not json")
    with pytest.raises(StateError, match=r"control\.json"):
        ControlState.load(tmp_path)
    (tmp_path / "control.json").write_text('{"version": 1, "shards": [], "tenants": {"7": {"org": 7}}, "jobs": {}}')
    with pytest.raises(ConfigError):
        ControlState.load(tmp_path)


def test_adding_a_tenant_is_idempotent_and_adopts_what_a_shard_serves() -> None:
    h = config_hash(SMALL)
    assert admit(None, SMALL, None) == "add"
    assert admit(SMALL, SMALL, h) == "same"
    assert admit(None, SMALL, h) == "adopt"  # the shard kept it; the control plane lost its state
    assert admit(SMALL, SMALL, None) == "add"  # known, but its shard lost it: serve it again


def test_another_config_for_a_served_org_names_the_way_to_change_it() -> None:
    with pytest.raises(ConfigError, match=r"remove_tenant\(77\)"):
        admit(SMALL, OTHER, config_hash(SMALL))
    with pytest.raises(ConfigError, match="another config"):
        admit(None, OTHER, config_hash(SMALL))


def test_a_running_improvement_is_reported_interrupted_after_a_restart() -> None:
    jobs = resumed_jobs({1: {"stage": "evolving (offline)"}, 2: {"stage": "done: evolved x2.1 published"}, 3: {"stage": "serving generic"}})
    assert jobs[1]["stage"].startswith("interrupted") and "evolving" in jobs[1]["stage"]
    assert jobs[2]["stage"].startswith("done") and jobs[3]["stage"] == "serving generic"


@pytest.mark.parametrize(
    ("ratio", "ci", "publish"),
    [(1.30, (1.20, 1.40), True), (1.30, (1.04, 1.60), False), (1.02, (1.01, 1.03), False), (0.9, (0.85, 0.95), False), (None, None, False)],
)
def test_publish_only_when_the_lower_bound_clears_the_margin(ratio: float | None, ci: tuple[float, float] | None, publish: bool) -> None:
    d = publish_decision(ratio, ci, 0.05, "evolved")
    assert d.publish is publish
    assert "evolved" in d.reason
