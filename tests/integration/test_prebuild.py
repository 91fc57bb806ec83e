"""``evoagg prebuild`` from an empty cache: every build slot warm afterwards, every kernel
cached, and a second run with nothing left to do (real cargo builds; about a minute)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.cli import main
from actors.kernel.build import TARGET, build, target_dir, toolchain
from actors.kernel.prebuild import prebuild, slot_is_warm
from actors.loading import load_tenant
from actors.specialize import materialize, package_name

pytestmark = pytest.mark.integration

SMALL_TENANT = """\
org: 4242
interval_s: 60
queries:
  - id: q0
    q: "sum:cpu.usage{*} by {host}"
"""


def test_prebuild_warms_every_slot_then_has_nothing_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EVOAGG_CACHE", str(tmp_path / "cache"))
    # Two slots whatever the CPU count: the slots warm in parallel, which is the point.
    monkeypatch.setenv("EVOAGG_BUILD_SLOTS", "2")
    yaml = tmp_path / "4242.yaml"
    yaml.write_text(SMALL_TENANT)
    cfg = load_tenant(yaml)
    lines: list[str] = []

    first = prebuild([cfg], lines.append)

    names = [s["step"] for s in first["steps"]]
    assert names == ["core and alloc for build slot 0", "core and alloc for build slot 1", "generic kernel", "kernel-org4242 (org 4242)", "codec proof checks"]
    assert len(lines) >= len(names)
    tc = toolchain()
    for slot in (0, 1):
        assert slot_is_warm(slot, tc)
        if tc.mode == "build-std":
            assert list((target_dir(slot) / TARGET / "release" / "deps").glob("libcore-*.rlib")), f"slot {slot} has no core"
    assert build().cached
    assert build(materialize(cfg, tmp_path / "crate"), package_name(cfg)).cached

    # The second run goes through the command line: JSON on stdout, every step already done.
    capsys.readouterr()
    assert main(["prebuild", "--tenant", str(yaml)]) == 0
    out, err = capsys.readouterr()
    second = json.loads(out)
    assert [s["step"] for s in second["steps"]] == names
    assert all(s["already_done"] for s in second["steps"]), second
    assert err.count("already") == len(names)


def test_prebuild_bad_tenant_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOAGG_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("org: -1\nqueries: []\n")
    assert main(["prebuild", "--tenant", str(tmp_path / "missing.yaml")]) == 2
    assert main(["prebuild", "--tenant", str(bad)]) == 2
