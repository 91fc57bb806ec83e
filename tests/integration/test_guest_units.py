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


def test_two_copies_of_one_workspace_build_their_own_code(tmp_path: Path) -> None:
    """Same package, same relative layout, different code, edited before either is built:
    each build must compile its own source (cargo alone would reuse the first artifact)."""
    import shutil
    import time

    import wasmtime

    from actors.kernel.build import build

    marker = '\n#[no_mangle]\npub extern "C" fn evoagg_test_marker() -> i32 {{ {} }}\n'
    # Values new to every run, so neither tree is in the build cache and cargo runs twice.
    base = 10 * (time.time_ns() // 1000 % 100_000_000)
    trees = []
    for n in (base + 7, base + 8):
        ws = tmp_path / f"ws{n}"
        shutil.copytree(GUEST_WORKSPACE, ws, ignore=shutil.ignore_patterns("target"))
        with open(ws / "kernel-generic" / "src" / "lib.rs", "a") as f:
            f.write(marker.format(n))
        trees.append(ws)
    seen = []
    for ws in trees:
        engine = wasmtime.Engine()
        store = wasmtime.Store(engine)
        inst = wasmtime.Instance(store, wasmtime.Module(engine, build(ws).wasm), [])
        seen.append(inst.exports(store)["evoagg_test_marker"](store))  # type: ignore[operator]
    assert seen == [base + 7, base + 8]
