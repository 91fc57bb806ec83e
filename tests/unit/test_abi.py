"""The host's decoding of what a kernel returns: refuses anything inconsistent."""

from __future__ import annotations

import struct

import pytest

from actors.config import TenantConfig
from actors.errors import KernelError
from actors.kernel.abi import decode_batch_result, decode_rows, encode_config


def result(ok: int, records: list[tuple[int, int, int]], points: int = 0, nonfinite: int = 0, late: int = 0, max_ts: int = -(2**63)) -> bytes:
    header = struct.pack("<IIQQQq", ok, len(records), points, nonfinite, late, max_ts)
    return header + b"".join(struct.pack("<III", *r) for r in records)


def test_well_formed_result() -> None:
    r = decode_batch_result(result(2, [(1, 2, 17)], points=5, nonfinite=1, late=2, max_ts=-7), 3)
    assert (r.accepted, r.points, r.nonfinite, r.late, r.max_ts) == (2, 5, 1, 2, -7)
    assert decode_batch_result(result(1, []), 1).max_ts is None
    assert [(x.index, x.reason, x.offset) for x in r.rejections] == [(1, "truncated", 17)]


@pytest.mark.parametrize(
    ("buf", "size", "message"),
    [
        (result(1, [(1, 2, 0), (0, 2, 0)]), 3, "out of order"),
        (result(1, [(0, 2, 0), (0, 2, 0)]), 3, "out of order"),
        (result(0, [(5, 2, 0)]), 1, "outside a batch"),
        (result(1, []), 2, "inconsistent"),
        (result(0, [(0, 2, 0)])[:-1], 1, "inconsistent"),
        (b"\x00" * 10, 1, "shorter than"),
    ],
)
def test_inconsistent_results_are_refused(buf: bytes, size: int, message: str) -> None:
    with pytest.raises(KernelError, match=message):
        decode_batch_result(buf, size)


def test_rows_must_be_well_formed() -> None:
    row = struct.pack("<IqdI", 0, 30, 1.5, 3) + b"a:b"
    assert decode_rows(struct.pack("<I", 1) + row, ["q"])[0].group == "a:b"
    one = struct.pack("<I", 1)
    for bad in (struct.pack("<I", 2) + row, one + row + b"x", one + row[:-1], one + row.replace(b"a:b", b"\xff:b")):
        with pytest.raises(KernelError, match="malformed flush output"):
            decode_rows(bad, ["q"])
    with pytest.raises(KernelError):
        decode_rows(struct.pack("<I", 1) + struct.pack("<IqdI", 4, 30, 1.5, 0), ["q"])  # no query 4


def test_config_encoding_is_stable() -> None:
    cfg = TenantConfig.from_mapping({"org": 300, "interval_s": 30, "queries": ["avg:m{a:b,!c:d*} by {k}"]})
    # version, org 300, interval, 1 query, avg, "m", 2 terms: (0,"a:b"), (3,"c","d"), 1 by key "k"
    expected = bytes([1, 0xAC, 0x02, 30, 1, 3, 1]) + b"m" + bytes([2, 0, 3]) + b"a:b" + bytes([3, 1]) + b"c" + bytes([1]) + b"d" + bytes([1, 1]) + b"k"
    assert encode_config(cfg) == expected
