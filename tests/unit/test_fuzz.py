"""Decoder fuzzing's payloads (``actors.verify.fuzz``): deterministic, and damaged so that
the shared reader refuses them for every reason it has, at the edges of each check."""

from __future__ import annotations

import itertools
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.config import TenantConfig
from actors.errors import PayloadError
from actors.payload import REJECT_REASONS, decode, encode
from actors.verify.fuzz import fields
from actors.verify.traffic import edge_messages, fuzzed_payloads

CFG = TenantConfig.from_mapping(
    {"org": 7, "interval_s": 10, "queries": [{"id": "a", "q": "sum:cpu.usage{service:web} by {host}"}, {"id": "b", "q": "max:mem.used{region:eu*}"}]}
)


def _reasons(payloads: list[bytes]) -> Counter[str]:
    out: Counter[str] = Counter()
    for p in payloads:
        try:
            decode(p, expect_org=CFG.org)
            out["accepted"] += 1
        except PayloadError as e:
            out[e.reason] += 1
    return out


def test_fuzzing_is_deterministic_in_its_seed() -> None:
    assert fuzzed_payloads(CFG, 3) == fuzzed_payloads(CFG, 3) != fuzzed_payloads(CFG, 4)


def test_every_refusal_reason_is_reached_and_some_damage_is_accepted() -> None:
    seen = _reasons(fuzzed_payloads(CFG, 0))
    assert set(REJECT_REASONS.values()) <= set(seen), set(REJECT_REASONS.values()) - set(seen)
    assert seen["accepted"] > 0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000))
def test_fields_tile_a_valid_payload(seed: int) -> None:
    for m in edge_messages(CFG, seed, n=8):
        buf = encode(m)
        fs = fields(buf)
        assert fs[0][1] == 1 and fs[-1][2] == len(buf)
        assert all(a[2] == b[1] for a, b in itertools.pairwise(fs))
