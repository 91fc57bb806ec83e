"""The main job end to end, in its short mode: ``evoagg demo --json`` from the command
line, on a local Ray. At least one verified hot-swap per tenant, every message sent
accounted for, and the chart written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kernels_built(generic_wasm: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The tenants' specialized crates, built once beforehand (the build cache is shared):
    on a cold machine the first build takes half a minute, which the demo's clock should
    not pay."""
    from actors.kernel.build import build
    from actors.loading import load_tenant
    from actors.specialize import materialize, package_name

    for org in (1042, 2077):
        cfg = load_tenant(REPO / "configs" / "tenants" / f"{org}.yaml")
        build(materialize(cfg, tmp_path_factory.mktemp(f"spec-{org}")), package_name(cfg))


def test_the_demo_swaps_every_tenant_under_traffic_and_accounts_for_every_message(tmp_path: Path, kernels_built: None) -> None:
    evoagg = str(Path(sys.executable).parent / "evoagg")
    cmd = [evoagg, "demo", "--duration", "150", "--generations", "1", "--islands", "1", "--json", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {t["org"] for t in summary["tenants"]} == {1042, 2077}
    for t in summary["tenants"]:
        assert t["swaps"] >= 1, t
        assert t["final_module"]["origin"] != "generic" and t["final_module"]["version"] >= 2
        assert t["messages_in"] > 0 and t["messages_in"] == t["messages_accounted"] == t["messages_received"]
        assert t["msg_per_s_before"] and t["msg_per_s_after"]
    assert isinstance(summary["rejections_by_reason"], dict)
    chart = Path(summary["chart"])
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "demo.json").read_text())["tenants"] == summary["tenants"]
