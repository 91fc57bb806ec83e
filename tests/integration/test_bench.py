"""``evoagg bench``: every variant is checked against the oracle before its speed counts;
the JSON carries the fields the README documents. Speeds are not asserted (shared, noisy
machines): only that they were measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.cli import main
from actors.profile import variants
from actors.specialize import template_kernel

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("workload", ["w1", "w2"])
def test_bench_json_and_chart(workload: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "bench.png"
    args = [
        "bench",
        "--workload",
        str(REPO / f"configs/workloads/{workload}.yaml"),
        "--messages",
        "8",
        "--rounds",
        "1",
        "--plot",
        str(chart),
        "--json",
        "--quiet",
    ]
    assert main(args + (["--profile"] if workload == "w1" else [])) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["messages"] == 8 and out["points"] > 0
    assert out["timing"].startswith("live") and out["service_mode"]["lateness_s"] == 60
    got = {(r["name"], r["mode"]) for r in out["results"]}
    kernels = {(k, m) for k in ("generic", "specialized") for m in ("per-message", "service")}
    peers = {(p, m) for p in ("pyarrow", "polars", "duckdb") for m in ("per-message", "bulk")}
    assert got == kernels | peers | {("oracle", "per-message")}
    for r in out["results"]:
        assert r["msg_per_s"] > 0 and len(r["output_hash"]) == 64
        # Kernels are bit-exact; peers may differ only by float summation order.
        assert r["agrees_with_oracle"] == ("exact" if (r["name"], r["mode"]) in kernels else r["agrees_with_oracle"])
        assert r["agrees_with_oracle"] in ("exact", "within-tolerance")
    assert out["ratios"]["specialized/generic"] > 0 and out["ratios"]["generic/best_peer_per_message"] > 0
    assert chart.stat().st_size > 1000
    if workload == "w1":
        assert set(out["profile_specialized"]["us_per_message"]) == {"host", "decode", "classify", "points_filter", "group_keys", "accumulate"}


def test_profile_cuts_fit_the_template() -> None:
    cuts = variants(template_kernel())
    assert [p for p, _ in cuts] == ["host", "decode", "classify", "points_filter", "group_keys", "accumulate"]
    assert len({src for _, src in cuts}) == len(cuts)


def test_bench_bad_usage(tmp_path: Path) -> None:
    assert main(["bench", "--workload", str(REPO / "configs/workloads/w1.yaml"), "--messages", "0"]) == 2
    assert main(["bench", "--workload", str(tmp_path / "nope.yaml")]) == 2
