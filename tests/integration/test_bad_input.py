"""Malformed payloads through the real kernel: counted rejections, the rest intact."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import oracle
from actors.config import TenantConfig
from actors.errors import PayloadError
from actors.kernel.host import KernelHost
from actors.output import output_hash
from actors.payload import Message, Series, decode, encode

pytestmark = pytest.mark.integration

CFG = TenantConfig.from_mapping({"org": 7, "interval_s": 30, "queries": [{"id": "s", "q": "sum:cpu{*} by {host}"}, {"id": "m", "q": "max:cpu{env:p*}"}]})
GOOD = [
    Message(7, (Series("cpu", ("host:a", "env:prod"), ((0, 1.0), (10, 2.0), (40, 3.0))),)),
    Message(7, (Series("cpu", ("host:b",), ((5, 4.0),)), Series("cpu", ("host:a", "env:pre"), ((31, 5.0),)))),
]
G0, G1 = (encode(m) for m in GOOD)
VALID = encode(Message(7, (Series("cpu", ("host:a",), ((0, 1.0), (10, 2.0))),)))

BAD = {
    "truncated": VALID[:-3],
    "bad_version": b"\x09" + VALID[1:],
    "bad_varint": b"\x01" + b"\x80" * 10 + b"\x01",
    "count_too_large": b"\x01\x07\xff\x01",
    "id_out_of_range": b"\x01\x07\x01\x01m\x01\x00\x01\x09\x00",
    "wrong_org": encode(Message(8, GOOD[0].series)),
    "empty": b"",
    "trailing_bytes": VALID + b"\x00",
    "bad_utf8": b"\x01\x07\x01\x01\xff\x00",
    "ts_out_of_range": encode(Message(7, (Series("cpu", (), ((2**62 + 1, 1.0),)),))),
    # In range at first, out of range through a StreamVByte delta.
    "ts_out_of_range_by_delta": b"\x01\x07\x01\x03cpu\x01\x00\x00\x02\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01\x00\x00\x04" + b"\x00" * 16,
    "bad_ts_encoding": VALID.replace(b"\x02\x00\x00\x00\x14", b"\x02\x00\x07\x00\x14", 1),  # npoints, ts0, enc, ctrl, data
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_each_bad_payload_is_a_counted_rejection_and_the_batch_survives(generic_wasm: bytes, reason: str) -> None:
    host = KernelHost(generic_wasm, CFG)
    expected = reason.removesuffix("_by_delta")
    res = host.process([G0, BAD[reason], G1], batch="mixed")
    assert res.accepted == 2
    assert [(r.index, r.reason) for r in res.rejections] == [(1, expected)]
    assert output_hash(host.flush()) == output_hash(oracle.aggregate(CFG, [G0, G1]).rows)
    with pytest.raises(PayloadError) as e:
        decode(BAD[reason], expect_org=7)
    assert (e.value.reason, e.value.offset) == (expected, res.rejections[0].offset)


def test_empty_message_and_nonfinite_values_are_accepted(generic_wasm: bytes) -> None:
    host = KernelHost(generic_wasm, CFG)
    odd = Message(7, (Series("cpu", ("host:a",), ((0, math.nan), (1, math.inf), (2, -math.inf), (3, 1.0))),))
    res = host.process([encode(Message(7, ())), encode(odd)])
    assert (res.accepted, res.points, res.nonfinite, res.rejections) == (2, 4, 3, [])
    assert [(r.query, r.value) for r in host.flush()] == [("s", 1.0)]


def test_empty_batch(generic_wasm: bytes) -> None:
    host = KernelHost(generic_wasm, CFG)
    res = host.process([])
    assert (res.accepted, res.rejections) == (0, [])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    buf = bytearray(draw(st.sampled_from([G0, G1, VALID])))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        i = draw(st.integers(0, max(0, len(buf) - 1)))
        if op == "flip" and buf:
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            buf.insert(i, draw(st.integers(0, 255)))
        elif op == "delete" and buf:
            del buf[i]
        elif op == "cut":
            del buf[i:]
    return bytes(buf)


@given(st.lists(mutated(), min_size=1, max_size=8))
def test_mutated_payloads_kernel_and_python_decoder_agree(generic_wasm: bytes, payloads: list[bytes]) -> None:
    """Whatever the bytes, the kernel never traps, and it rejects exactly what the
    Python decoder rejects, for the same reason, while the accepted ones aggregate
    as the oracle says."""
    host = KernelHost(generic_wasm, CFG)
    res = host.process([G0, *payloads], batch="fuzz")
    expected: dict[int, tuple[str, int | None]] = {}
    for i, p in enumerate(payloads, start=1):
        try:
            decode(p, expect_org=7)
        except PayloadError as e:
            expected[i] = (e.reason, e.offset)
    assert {r.index: (r.reason, r.offset) for r in res.rejections} == expected
    assert output_hash(host.flush()) == output_hash(oracle.aggregate(CFG, [G0, *payloads]).rows)
