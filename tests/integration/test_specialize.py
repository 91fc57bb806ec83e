"""Specialization: deterministic generation, the file layout evolution relies on, and the
specialized kernel's output equal to the generic kernel's (real builds, real wasm)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.cli import main
from actors.config import TenantConfig
from actors.errors import ModuleRejected
from actors.kernel.build import GUEST_WORKSPACE, build, external_deps
from actors.kernel.host import KernelHost
from actors.loading import load_tenant
from actors.replay import replay
from actors.specialize import EVOLVABLE, materialize, package_name, perfect_hash, phash, spec_rs
from actors.verify.traffic import config_traffic, edge_payloads

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
W1 = load_tenant(REPO / "configs/tenants/1042.yaml")
W2 = load_tenant(REPO / "configs/tenants/2077.yaml")


def specialized(cfg: TenantConfig, tmp: Path) -> bytes:
    return build(materialize(cfg, tmp), package_name(cfg)).wasm


def same_output(a: bytes, b: bytes, cfg: TenantConfig, payloads: list[bytes], batch: int = 16, lag: int | None = None) -> tuple[str, str]:
    ra = replay(KernelHost(a, cfg), payloads, batch_size=batch, flush_lag=lag)
    rb = replay(KernelHost(b, cfg), payloads, batch_size=batch, flush_lag=lag)
    sa, sb = ra.summary(), rb.summary()
    for k in ("accepted", "rejected", "points", "nonfinite_points", "late_points"):
        assert sa[k] == sb[k], k
    return str(sa["output_hash"]), str(sb["output_hash"])


def test_generation_is_deterministic_and_keeps_the_layout(tmp_path: Path) -> None:
    a, b = materialize(W2, tmp_path / "a"), materialize(W2, tmp_path / "b")
    files = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert files == ["Cargo.toml", "src/kernel.rs", "src/lib.rs", "src/spec.rs"]
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    # The evolvable file is small; the constants live apart from it.
    assert len((a / EVOLVABLE).read_bytes()) < 16 * 1024
    assert "2077" not in (a / EVOLVABLE).read_text()
    spec = (a / "src/spec.rs").read_text()
    assert "pub const ORG: u64 = 2077;" in spec and "pub const INTERVAL: i64 = 30;" in spec
    # The shared codec is a dependency, not a copy.
    assert external_deps(a) == sorted((GUEST_WORKSPACE / c).resolve() for c in ("abi", "codec", "tables"))
    assert not any("PayloadReader {" in p.read_text() for p in a.rglob("*.rs"))


def test_perfect_hash_has_no_collisions() -> None:
    strings = [f"service:svc-{i:02d}".encode() for i in range(100)] + [b"cpu.usage", b"", b"a"]
    ph = perfect_hash(strings)
    slots = [phash(s, ph.seed) >> (64 - ph.bits) for s in strings]
    assert len(set(slots)) == len(strings)
    assert all(ph.slots[j] == i for i, j in enumerate(slots))


@pytest.mark.parametrize("cfg", [W1, W2], ids=["w1", "w2"])
def test_specialized_equals_generic_on_the_workloads(cfg: TenantConfig, generic_wasm: bytes, tmp_path: Path) -> None:
    spec = specialized(cfg, tmp_path)
    payloads = config_traffic(cfg, 3, 60) + edge_payloads(cfg, 5)
    g, s = same_output(generic_wasm, spec, cfg, payloads)
    assert g == s
    g, s = same_output(generic_wasm, spec, cfg, payloads, batch=5, lag=cfg.interval_s)
    assert g == s


def test_a_specialized_kernel_refuses_another_configuration(tmp_path: Path) -> None:
    spec = specialized(W1, tmp_path)
    other = TenantConfig(W1.org, W1.interval_s, W1.queries[:-1])
    with pytest.raises(ModuleRejected, match="init_failed"):
        KernelHost(spec, other)


def test_cli_specialize_prints_equal_hashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["specialize", "--config", str(REPO / "configs/tenants/1042.yaml"), "--out", str(tmp_path / "k"), "--count", "40", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["equal"] and out["generic_hash"] == out["specialized_hash"]
    assert (tmp_path / "k/kernel.wasm").stat().st_size == out["wasm_bytes"]


# --- random configurations ------------------------------------------------------------------

KEYS = ["service", "region", "env", "az"]
VALUES = ["a", "b", "ab", "N/A", ""]


@st.composite
def term(draw: st.DrawFn) -> str:
    neg = "!" if draw(st.booleans()) else ""
    kind = draw(st.sampled_from(["tag", "prefix", "bare"]))
    key = draw(st.sampled_from(KEYS))
    if kind == "tag":
        return f"{neg}{key}:{draw(st.sampled_from(VALUES[:3]))}"
    if kind == "prefix":
        return f"{neg}{key}:{draw(st.sampled_from(['', 'a', 'ab']))}*"
    return f"{neg}{draw(st.sampled_from(['canary', 'cana']))}"


@st.composite
def configs(draw: st.DrawFn) -> TenantConfig:
    queries = []
    for i in range(draw(st.integers(1, 6))):
        agg = draw(st.sampled_from(["sum", "min", "max", "avg", "count"]))
        metric = draw(st.sampled_from(["cpu.usage", "mem.used"]))
        terms = draw(st.lists(term(), max_size=3))
        by = draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True))
        q = f"{agg}:{metric}{{{','.join(terms) or '*'}}}" + (f" by {{{','.join(by)}}}" if by else "")
        queries.append({"id": f"q{i}", "q": q})
    return TenantConfig.from_mapping({"org": draw(st.integers(1, 2**40)), "interval_s": draw(st.sampled_from([1, 7, 30, 3600])), "queries": queries})


@settings(max_examples=6, deadline=None)
@given(cfg=configs(), seed=st.integers(0, 1000))
def test_specialized_equals_generic_on_random_configs(cfg: TenantConfig, seed: int, generic_wasm: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    spec = specialized(cfg, tmp_path_factory.mktemp("rand"))
    payloads = edge_payloads(cfg, seed, 60)
    g, s = same_output(generic_wasm, spec, cfg, payloads, batch=3, lag=2 * cfg.interval_s)
    assert g == s
    # spec.rs is a pure function of the configuration.
    assert spec_rs(cfg) == spec_rs(cfg)
