from __future__ import annotations

from pathlib import Path

import pytest

from actors.config import SandboxConfig, TenantConfig
from actors.errors import ConfigError, QueryError
from actors.loading import load_tenant, load_workload

REPO = Path(__file__).resolve().parents[2]


def test_default_query_ids_and_string_shorthand() -> None:
    cfg = TenantConfig.from_mapping({"org": 5, "interval_s": 10, "queries": ["sum:a{*}", {"q": "max:b{*}"}, {"id": "named", "q": "min:c{*}"}]})
    assert cfg.query_ids() == ["q0", "q1", "named"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"org": 1, "interval_s": 30, "queries": ["sum:a{*}"], "extra": 1}, "unknown key(s) extra"),
        ({"interval_s": 30, "queries": ["sum:a{*}"]}, "missing key 'org'"),
        ({"org": -1, "interval_s": 30, "queries": ["sum:a{*}"]}, "org: expected 0.."),
        ({"org": 1, "interval_s": 0, "queries": ["sum:a{*}"]}, "interval_s: expected 1.."),
        ({"org": 1, "interval_s": "30", "queries": ["sum:a{*}"]}, "interval_s: expected an integer"),
        ({"org": 1, "interval_s": 30, "queries": []}, "at least one query"),
        ({"org": 1, "interval_s": 30, "queries": [{"id": "x", "q": "sum:a{*}"}, {"id": "x", "q": "sum:b{*}"}]}, "used twice"),
        ({"org": 1, "interval_s": 30, "queries": [{"id": "bad id", "q": "sum:a{*}"}]}, "query id 'bad id'"),
        ({"org": 1, "interval_s": 30, "queries": [{"q": 3}]}, "expected a query text"),
        ({"org": True, "interval_s": 30, "queries": ["sum:a{*}"]}, "org: expected an integer"),
    ],
)
def test_bad_configs_are_named(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as e:
        TenantConfig.from_mapping(data)
    assert message in str(e.value)


def test_query_count_limit() -> None:
    from actors.query import parse_query

    q = parse_query("sum:a{*}")
    with pytest.raises(ConfigError, match="at most 65535"):
        TenantConfig(org=1, interval_s=1, queries=(q,) * 65536).validate()


def test_unknown_aggregation_is_a_query_error() -> None:
    with pytest.raises(QueryError) as e:
        TenantConfig.from_mapping({"org": 1, "interval_s": 30, "queries": [{"id": "p99", "q": "p99:lat{*}"}]})
    assert e.value.query_id == "p99" and e.value.column == 1


def test_shipped_configs_load() -> None:
    for name, org in (("w1", 1042), ("w2", 2077)):
        wl = load_workload(REPO / "configs" / "workloads" / f"{name}.yaml")
        assert wl.tenant.org == org and len(wl.tenant.queries) == 100
        assert wl.traffic.series_per_message * wl.traffic.points_per_series == 1000
    assert load_tenant(REPO / "configs/tenants/2077.yaml").queries[99].by


def test_generated_traffic_carries_the_edge_cases_the_shape_asks_for() -> None:
    from actors.workload import generate

    wl = load_workload(REPO / "configs" / "workloads" / "w1.yaml")
    msgs = list(generate(wl, 200, seed=3))
    assert msgs == list(generate(wl, 200, seed=3))  # deterministic
    series = [s for m in msgs for s in m.series]
    keyed = [[t.split(":")[0] for t in s.tags if ":" in t] for s in series]
    assert any(len(k) < 4 for k in keyed)  # a missing tag (hosts carry host, service, region, env)
    assert any(len(k) != len(set(k)) for k in keyed)  # a multi-valued key
    assert any("canary" in s.tags for s in series)
    assert any(v != v or v in (float("inf"), float("-inf")) for s in series for _, v in s.points)
    assert {s.metric for s in series} == {"cpu.usage", "mem.used", "disk.io"}
    assert all(len(s.points) == 20 for s in series) and all(len(m.series) == 50 for m in msgs)


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text("org: [1\n")
    with pytest.raises(ConfigError, match=r"t\.yaml: not valid YAML"):
        load_tenant(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_tenant(tmp_path / "missing.yaml")


def test_workload_shapes_are_validated(tmp_path: Path) -> None:
    for body, message in [
        ("metrics: [cpu]", "metrics: expected a mapping"),
        ("tags: 5", "tags: expected a mapping"),
        ("metrics: {cpu: -1}", "positive finite weight"),
        ("metrics: {cpu: .inf}", "positive finite weight"),
        ("nonfinite_rate: 2", "probability"),
        ("seriez: 5", "unknown key"),
    ]:
        w = tmp_path / "w.yaml"
        w.write_text(f"tenant: {REPO}/configs/tenants/1042.yaml\ntraffic:\n  {body}\n")
        with pytest.raises(ConfigError) as e:
            load_workload(w)
        assert message in str(e.value) and "w.yaml" in str(e.value)


def test_sandbox_validation() -> None:
    assert SandboxConfig().validate().memory_limit_bytes == 512 * 2**20
    with pytest.raises(ConfigError, match="epoch_tick_ms"):
        SandboxConfig(call_deadline_ms=5, epoch_tick_ms=10).validate()
    with pytest.raises(ConfigError, match="unknown key"):
        SandboxConfig.from_mapping({"memory": 5})
    with pytest.raises(ConfigError, match="unknown key"):
        SandboxConfig.from_mapping({"allowed_imports": ["env.log"]})
    with pytest.raises(ConfigError, match="memory_limit_bytes"):
        SandboxConfig.from_mapping({"memory_limit_bytes": "lots"})
