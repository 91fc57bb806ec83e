"""The proofs stage end to end (actors/verify/proofs/): z3 model checks, exhaustive checks
through the compiled codec-probe, the Verus-copy sync check, Verus when it is installed,
and the cache."""

from __future__ import annotations

import functools
import shutil
import time
from pathlib import Path

import pytest

from actors.kernel.build import build
from actors.verify import proofs
from actors.verify.proofs import Check, codec_digest, run_codec_checks

pytestmark = pytest.mark.integration

STATUSES = {"passed", "failed", "not-run"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proofs-cache")


@pytest.fixture(scope="module")
def checks(cache: Path) -> list[Check]:
    return run_codec_checks(cache=cache)


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_every_kind_of_check_is_reported(checks: list[Check]) -> None:
    assert {c.kind for c in checks} == {"verus", "z3-model", "exhaustive", "sync"}
    assert all(c.status in STATUSES and c.reason and "\n" not in c.reason and c.tool for c in checks)
    assert len({c.name for c in checks}) == len(checks)


def test_model_exhaustive_and_sync_checks_pass(checks: list[Check]) -> None:
    ran = [c for c in checks if c.kind != "verus"]
    assert {c.name for c in ran if c.kind == "exhaustive"} == {"exhaustive:varint", "exhaustive:svb-control-bytes", "exhaustive:payload-counts"}
    for c in ran:
        assert c.status == "passed", (c.name, c.reason)
    assert "codec-probe.wasm" in _by_name(checks)["exhaustive:varint"].tool


def test_verus_is_not_run_here_and_says_why(checks: list[Check]) -> None:
    verus = [c for c in checks if c.kind == "verus"]
    assert [c.name for c in verus] == [f"verus:{m}" for m in proofs.VERUS_MODULES]
    if shutil.which("verus") is None:
        assert all(c.status == "not-run" and c.reason == "verus not on PATH" for c in verus)
    else:  # pragma: no cover - Verus is not installable here
        assert all(c.status in ("passed", "failed") for c in verus)


def test_a_changed_body_in_the_verus_copy_fails_sync(tmp_path: Path) -> None:
    copy = tmp_path / "verus"
    shutil.copytree(proofs.VERUS_DIR, copy)
    varint = copy / "varint.rs"
    src = varint.read_text()
    assert src.count("shift += 7;") == 1
    varint.write_text(src.replace("shift += 7;", "shift += 8;"))
    assert codec_digest(proofs.CODEC_DIR, copy) != codec_digest()
    got = _by_name(run_codec_checks(verus_dir=copy, cache=tmp_path / "cache"))
    sync = got["sync:verus-copy"]
    assert sync.status == "failed"
    assert "read_uvarint" in sync.reason and "shift += 8" in sync.reason
    # Only the copy changed: the shipped code still checks out.
    assert got["exhaustive:varint"].status == "passed"


def test_a_second_call_is_cached_and_says_so(checks: list[Check], cache: Path) -> None:
    t0 = time.monotonic()
    again = run_codec_checks(cache=cache)
    assert time.monotonic() - t0 < 2
    assert [(c.name, c.kind, c.status, c.tool) for c in again] == [(c.name, c.kind, c.status, c.tool) for c in checks]
    assert all("[cached" in c.reason for c in again)
    assert (cache / "proofs" / f"{codec_digest()}.json").is_file()


def test_the_exhaustive_check_catches_a_wrong_model() -> None:
    probe = proofs.Probe(build(package="codec-probe").wasm)
    wrong = functools.partial(proofs.model_read_uvarint, tenth_byte_check=False)
    edges = [(b"\xff" * 9 + bytes([last]), 0, 5) for last in (1, 2)]
    assert proofs.exhaustive_varint(probe, edges) is None
    failure = proofs.exhaustive_varint(probe, edges, read_uvarint=wrong)
    assert failure is not None and "ffffffffffffffffff02" in failure
