"""The decode rewrites (``actors.evolve.decode_rewrites``) give a kernel its own message
walk: it must aggregate every message as the shared reader's kernels do and refuse every
damaged one the same way (reason and byte offset), alone and with the other rewrites. A
walk that reports one offset wrong, or that forgets one check, is caught by the
differential stage's decoder fuzzing; the proofs stage says which decoder it checked."""

from __future__ import annotations

import pytest

from actors.config import SandboxConfig, TenantConfig
from actors.evolve.transforms import GENES, render
from actors.specialize import template_kernel
from actors.verify.stages import Candidate, Context, verify
from actors.verify.traffic import config_traffic
from tests.support.quick import QUICK_REGIME

pytestmark = pytest.mark.integration

CFG = TenantConfig.from_mapping(
    {
        "org": 41,
        "interval_s": 10,
        "queries": [
            {"id": "filtered", "q": "sum:cpu.usage{service:web}"},
            {"id": "grouped", "q": "avg:cpu.usage{*} by {host}"},
            {"id": "extremes", "q": "max:cpu.usage{region:us*} by {service,region}"},
            {"id": "counted", "q": "count:mem.used{!canary}"},
            {"id": "lowest", "q": "min:mem.used{*}"},
        ],
    }
)


@pytest.fixture(scope="module")
def ctx(generic_wasm: bytes) -> Context:
    return Context(CFG, SandboxConfig(), generic_wasm, generic_wasm, tuple(config_traffic(CFG, 5, 40)), tuple(config_traffic(CFG, 6, 40)), regime=QUICK_REGIME)


def _stages(src: str, ctx: Context) -> dict[str, tuple[str, str]]:
    rep = verify(Candidate("decode", CFG, kernel_src=src), ctx)
    return {s.name: (s.status, s.reason) for s in rep.stages}


@pytest.mark.parametrize(
    "genome",
    [
        {"decode": "walk"},
        {"decode": "walk_spans"},
        {**{g.name: g.values[-1] for g in GENES}, "decode": "walk_bytes"},
        {**{g.name: g.values[-1] for g in GENES}, "decode": "walk_spans", "preagg_runs": False},
        {"decode": "walk_vals"},
        {**{g.name: g.values[-1] for g in GENES}, "decode": "walk_vals"},
    ],
    ids=["walk", "spans", "bytes_with_every_rewrite", "spans_with_every_other_rewrite", "vals", "vals_with_every_rewrite"],
)
def test_an_own_walk_serves_and_refuses_as_the_shared_reader(genome: dict[str, object], ctx: Context) -> None:
    stages = _stages(render(template_kernel(), genome), ctx)
    assert all(status != "failed" for status, _ in stages.values()), stages
    assert stages["differential"][0] == "passed" and "fuzzed payloads" in stages["differential"][1]
    assert stages["shadow"][0] == "passed"
    assert "own walk" in stages["proofs"][1] and "not proved" in stages["proofs"][1]


def test_the_template_is_reported_on_the_shared_reader(ctx: Context) -> None:
    assert "shared reader" in _stages(template_kernel(), ctx)["proofs"][1]


@pytest.mark.parametrize(
    ("old", "new", "what"),
    [
        # Bad UTF-8 reported at the string's bytes instead of its length.
        ("return Err(DecodeError::new(ErrorCode::BadUtf8, at));", "return Err(DecodeError::new(ErrorCode::BadUtf8, pos));", "offset"),
        # An id equal to the string count let through (then read past the table).
        ("if id >= nstrings as u64 {", "if id > nstrings as u64 {", "id"),
        # The range check of the first timestamp forgotten: the error comes later, or never.
        ("if !(-MAX_ABS_TS..=MAX_ABS_TS).contains(&first) {", "if first == i64::MIN {", "range"),
        # Trailing bytes accepted.
        ("if pos != p.len() {", "if pos > p.len() {", "trailing"),
    ],
)
def test_decoder_fuzzing_catches_a_walk_that_refuses_differently(old: str, new: str, what: str, ctx: Context) -> None:
    src = render(template_kernel(), {"decode": "walk"})
    assert src.count(old) == 1, what
    stages = _stages(src.replace(old, new), ctx)
    assert stages["differential"][0] == "failed", (what, stages["differential"])
    assert stages["shadow"][0] == "not-run"


def test_rewrites_applied_to_a_models_edit_verify(ctx: Context) -> None:
    # A parent a model edited (no genome describes it): the offline proposer adds rewrites
    # to its own source; the child keeps the edit, builds and passes every stage.
    from actors.evolve.transforms import BY_NAME

    edited = template_kernel().replace("let near = n.saturating_sub(8);", "let near = n.saturating_sub(12); // a model's edit")
    child = BY_NAME["decode"].apply(BY_NAME["atom_index"].apply(edited, True), "walk_spans")
    assert "a model's edit" in child
    stages = _stages(child, ctx)
    assert all(status != "failed" for status, _ in stages.values()), stages
