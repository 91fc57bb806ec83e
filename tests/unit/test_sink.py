"""Sinks: Parquet parts (round trip, partitioning, atomic idempotent rewrites) and the memory sink."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.output import SCHEMA, Row, canonical, output_hash
from actors.sink import MemorySink, ParquetSink, Sink, civil_hour, hour_label, parts, read_rows

H = 3600
T0 = 1_700_000_000 - 1_700_000_000 % H  # 2023-11-14 22:00 UTC


def bits(v: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", v))[0])


def from_bits(b: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", b))[0])


ODD_VALUES = [
    math.nan,
    -math.nan,
    from_bits(0x7FF8_0000_0000_0123),  # a NaN with a payload
    from_bits(0xFFF4_0000_0000_0001),  # a signalling NaN with the sign bit
    math.inf,
    -math.inf,
    0.0,
    -0.0,
    5e-324,
    -1.7976931348623157e308,
]


def rows_of(values: list[float], bucket: int = T0) -> list[Row]:
    return [Row("q", bucket, f"g{i:03d}", v) for i, v in enumerate(values)]


def as_bits(rows: list[Row]) -> list[tuple[str, int, str, int]]:
    return [(r.query, r.bucket, r.group, bits(r.value)) for r in rows]


def test_parquet_round_trip_is_bit_exact(tmp_path: Path) -> None:
    rows = rows_of(ODD_VALUES)
    ParquetSink(tmp_path).write(7, 1, rows)
    back = read_rows(tmp_path, 7)
    assert as_bits(back) == as_bits(canonical(rows))
    assert output_hash(back) == output_hash(rows)
    [part] = parts(tmp_path, 7)
    assert pq.ParquetFile(part).read().schema.equals(SCHEMA)
    assert pq.ParquetFile(part).schema_arrow.names == ["query", "bucket", "group", "value"]


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "ü"]), st.integers(-50, 50), st.text(max_size=6), st.floats()), max_size=30))
def test_parquet_round_trip_any_rows(raw: list[tuple[str, int, str, float]]) -> None:
    import tempfile

    rows = [Row(q, T0 + b * 1800, g, v) for q, b, g, v in raw]
    with tempfile.TemporaryDirectory() as d:
        ParquetSink(d).write(1, 3, rows)
        assert sorted(as_bits(read_rows(d, 1))) == sorted(as_bits(rows))


def test_parts_are_partitioned_by_utc_hour(tmp_path: Path) -> None:
    rows = [Row("q", T0, "a", 1.0), Row("q", T0 + H - 30, "a", 2.0), Row("q", T0 + H, "a", 3.0), Row("q", T0 + 25 * H, "a", 4.0)]
    ParquetSink(tmp_path).write(42, 5, rows)
    rel = [p.relative_to(tmp_path).as_posix() for p in parts(tmp_path)]
    assert rel == [
        "org=42/hour=2023111422/part-000000000005.parquet",
        "org=42/hour=2023111423/part-000000000005.parquet",
        "org=42/hour=2023111523/part-000000000005.parquet",
    ]
    first = pq.ParquetFile(tmp_path / rel[0]).read().to_pylist()
    assert [r["value"] for r in first] == [1.0, 2.0]


def test_hour_labels_match_datetime_and_extend_beyond_it() -> None:
    assert hour_label(0) == "1970010100"
    assert hour_label(-1) == "1969123123"  # floor, not truncation
    assert hour_label(951_782_400) == "2000022900"  # a leap day
    # Far outside datetime's years: same shape, longer or signed year; no exception.
    year, month, day, hh = civil_hour(2**62 // H)
    assert year > 9999 and hour_label(2**62) == f"{year}{month:02d}{day:02d}{hh:02d}"
    year, month, day, hh = civil_hour(-(2**62) // H)
    assert year < 0 and hour_label(-(2**62)) == f"-{-year}{month:02d}{day:02d}{hh:02d}"
    assert hour_label(-62_167_219_200) == "0000010100"  # year 0 (1 BC, proleptic Gregorian)
    assert hour_label(-62_167_219_200 - 1) == "-0001123123"


@given(st.integers(int(datetime(1, 1, 1, tzinfo=UTC).timestamp()), int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())))
def test_civil_hour_equals_datetime(ts: int) -> None:
    d = datetime.fromtimestamp(ts, UTC)
    assert civil_hour(ts // H) == (d.year, d.month, d.day, d.hour)
    assert hour_label(ts) == f"{d.year:04d}{d.month:02d}{d.day:02d}{d.hour:02d}"


def test_extreme_buckets_are_written_and_read(tmp_path: Path) -> None:
    rows = [Row("q", -(2**62), "", 1.0), Row("q", 2**62, "", 2.0), Row("q", -30, "", 3.0), Row("q", T0, "", 4.0)]
    ParquetSink(tmp_path).write(1, 1, rows)
    assert read_rows(tmp_path) == canonical(rows)
    # Parts sort by time, not by text: the negative year first, the far-future year last.
    buckets = [pq.ParquetFile(p).read().column("bucket")[0].as_py() for p in parts(tmp_path)]
    assert buckets == [-(2**62), -30, T0, 2**62]


def test_rewrite_of_a_flush_is_idempotent(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    rows = [*rows_of([1.0, 2.0, math.nan]), Row("r", T0 + H, "x", 3.0)]
    sink.write(9, 5, rows)
    before = {p: p.read_bytes() for p in parts(tmp_path)}
    sink.write(9, 5, list(reversed(rows)))  # re-emitted after recovery, in any order
    after = {p: p.read_bytes() for p in parts(tmp_path)}
    assert before == after and len(after) == 2
    assert as_bits(read_rows(tmp_path, 9)) == as_bits(canonical(rows))


def test_flushes_accumulate_and_orgs_stay_apart(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    sink.write(2, 1, [Row("q", T0, "a", 1.0)])
    sink.write(2, 2, [Row("q", T0 + 30, "a", 2.0)])
    sink.write(10, 1, [Row("q", T0, "b", 3.0)])
    assert read_rows(tmp_path, 2) == [Row("q", T0, "a", 1.0), Row("q", T0 + 30, "a", 2.0)]
    assert read_rows(tmp_path, 10) == [Row("q", T0, "b", 3.0)]
    assert len(read_rows(tmp_path)) == 3
    # By org number, not by text ("org=10" < "org=2").
    assert [p.parent.parent.name for p in parts(tmp_path)] == ["org=2", "org=2", "org=10"]
    assert read_rows(tmp_path, 3) == [] and parts(tmp_path / "nowhere") == []


def test_parts_hold_canonical_order_and_no_temp_files_remain(tmp_path: Path) -> None:
    rows = [Row("b", T0, "z", 1.0), Row("a", T0 + 60, "y", 2.0), Row("a", T0, "z", 3.0), Row("a", T0, "y", 4.0)]
    ParquetSink(tmp_path, fsync=True).write(1, 1, rows)
    [part] = parts(tmp_path)
    stored = [Row(**r) for r in pq.ParquetFile(part).read().to_pylist()]
    assert stored == canonical(rows)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [part]


def test_a_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def refuse(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        ParquetSink(tmp_path).write(1, 1, [Row("q", T0, "", 1.0)])
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_stray_temp_files_are_not_read(tmp_path: Path) -> None:
    ParquetSink(tmp_path).write(1, 1, [Row("q", T0, "", 1.0)])
    [part] = parts(tmp_path)
    (part.parent / f".{part.name}.dead.tmp").write_bytes(b"half a file")
    assert parts(tmp_path) == [part] and read_rows(tmp_path) == [Row("q", T0, "", 1.0)]


def test_empty_flush_writes_nothing(tmp_path: Path) -> None:
    ParquetSink(tmp_path).write(1, 1, [])
    assert list(tmp_path.iterdir()) == []
    m = MemorySink()
    m.write(1, 1, [])
    assert m.flushes == {} and m.rows() == []


@pytest.mark.parametrize("org, seq", [(-1, 0), (2**63, 0), (0, -1), (0, 10**12), (True, 0), (0, 1.0)])
def test_bad_keys_are_refused(tmp_path: Path, org: int, seq: int) -> None:
    for sink in (ParquetSink(tmp_path), MemorySink()):
        with pytest.raises(ValueError):
            sink.write(org, seq, [Row("q", 0, "", 1.0)])


def test_no_write_after_close(tmp_path: Path) -> None:
    sinks: list[Sink] = [ParquetSink(tmp_path), MemorySink()]
    for sink in sinks:
        sink.close()
        with pytest.raises(ValueError, match="after close"):
            sink.write(1, 1, [Row("q", 0, "", 1.0)])


def test_memory_sink_replaces_per_key_and_orders_rows() -> None:
    m = MemorySink()
    m.write(1, 5, [Row("b", 0, "", 1.0), Row("a", 0, "", 2.0)])
    m.write(1, 5, [Row("a", 0, "", 2.0), Row("b", 0, "", 1.0)])  # re-emission: replaces
    m.write(1, 6, [Row("a", 30, "", -0.0)])
    m.write(2, 5, [Row("a", 0, "", 9.0)])
    assert sorted(m.flushes) == [(1, 5), (1, 6), (2, 5)]
    assert m.flushes[(1, 5)] == [Row("a", 0, "", 2.0), Row("b", 0, "", 1.0)]
    assert m.rows(1) == [Row("a", 0, "", 2.0), Row("a", 30, "", -0.0), Row("b", 0, "", 1.0)]
    assert m.rows() == canonical([*m.rows(1), Row("a", 0, "", 9.0)])
    assert m.rows(3) == []
