"""The guest crates' own Rust unit tests (codec, tables), run natively with cargo."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from actors.kernel.build import GUEST_WORKSPACE, cache_dir, toolchain

pytestmark = pytest.mark.integration


def test_cargo_test_passes() -> None:
    tc = toolchain()
    r = subprocess.run(
        [tc.cargo, "test", "--offline", "--workspace", "--lib", "--target-dir", str(cache_dir() / "target-native")],
        cwd=GUEST_WORKSPACE, capture_output=True, text=True, timeout=900, env=tc.env() | {"RUSTC_BOOTSTRAP": "0"},
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "test result: ok" in r.stdout and "shared_vector" in r.stdout


def test_build_failures_keep_the_compiler_output(tmp_path: Path) -> None:
    from actors.errors import BuildFailed
    from actors.kernel.build import build

    ws = tmp_path / "ws"
    (ws / "k" / "src").mkdir(parents=True)
    (ws / "Cargo.toml").write_text('[workspace]\nmembers = ["k"]\nresolver = "2"\n')
    (ws / "k" / "Cargo.toml").write_text('[package]\nname = "broken-kernel"\nversion = "0.0.0"\nedition = "2021"\n[lib]\ncrate-type = ["cdylib"]\n')
    (ws / "k" / "src" / "lib.rs").write_text('#![no_std]\npub fn f() -> u32 { let x: u32 = "nope"; x }\n')
    with pytest.raises(BuildFailed) as e:
        build(ws, "broken-kernel")
    assert "mismatched types" in e.value.output
