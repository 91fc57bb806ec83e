"""The atom index (``actors.evolve.transforms.atom_index``) changes which queries a series
is tried against, never what it lands in: on filters of every shape (several atoms, shared
atoms, prefixes, negations only, none), alone and with every other rewrite, a candidate
passes the differential stage (edge-case traffic) and the shadow stage against the
generic kernel."""

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
        "org": 31,
        "interval_s": 10,
        "queries": [
            {"id": "two_atoms", "q": "sum:cpu.usage{service:web,region:eu}"},
            {"id": "shared_atom", "q": "max:cpu.usage{service:web} by {host}"},
            {"id": "atom_and_not", "q": "count:cpu.usage{service:db,!env:staging}"},
            {"id": "prefix", "q": "min:cpu.usage{region:us*}"},
            {"id": "only_not", "q": "avg:cpu.usage{!service:web}"},
            {"id": "all", "q": "sum:cpu.usage{*} by {region}"},
            {"id": "bare", "q": "count:mem.used{canary}"},
            {"id": "other_metric", "q": "sum:mem.used{service:web}"},
        ],
    }
)


EVERY = {**{g.name: g.values[-1] for g in GENES}, "decode": "walk_bytes"}


@pytest.mark.parametrize("genome", [{"atom_index": True}, EVERY], ids=["alone", "with_every_rewrite"])
def test_the_atom_index_is_hash_equal_to_the_generic_kernel(genome: dict[str, object], generic_wasm: bytes) -> None:
    ctx = Context(CFG, SandboxConfig(), generic_wasm, generic_wasm, tuple(config_traffic(CFG, 3, 40)), tuple(config_traffic(CFG, 4, 40)), regime=QUICK_REGIME)
    rep = verify(Candidate("atom-index", CFG, kernel_src=render(template_kernel(), genome)), ctx)
    assert rep.accepted, [(s.name, s.status, s.reason[:300]) for s in rep.stages]
    assert {s.name: s.status for s in rep.stages}["differential"] == "passed"
