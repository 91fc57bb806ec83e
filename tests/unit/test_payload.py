from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.errors import PayloadError, StreamError
from actors.payload import Message, Series, decode, encode, from_json, read_payloads, svb_encode, to_json, write_stream, write_uvarint

REPO = Path(__file__).resolve().parents[2]

SHARED = Message(
    1042,
    (
        Series("cpu.usage", ("host:h1", "service:web", "canary"), ((1764000000, 0.5), (1764000010, -1.25), (1764000005, math.inf))),
        Series("mem.used", (), ()),
        Series("cpu.usage", ("host:h1", "zone:é"), ((-5, 1.0), (8589934588, 2.0))),
    ),
)


def test_encoder_matches_the_shared_vector_checked_by_rust() -> None:
    vector = bytes.fromhex((REPO / "guest-rust/codec/testdata/payload_v1.hex").read_text().strip())
    assert encode(SHARED) == vector
    assert decode(vector) == SHARED


def test_streamvbyte_matches_rust_known_bytes() -> None:
    out = bytearray()
    svb_encode(out, [1, 0x0102, 0x010203, 0x01020304, 5])
    assert bytes(out) == bytes([0b11_10_01_00, 0b00, 1, 2, 1, 3, 2, 1, 4, 3, 2, 1, 5])


texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)
finite_or_not = st.floats(allow_nan=True, allow_infinity=True)
timestamps = st.one_of(st.integers(-(2**62), 2**62), st.integers(1_700_000_000, 1_700_100_000))


@st.composite
def messages(draw: st.DrawFn) -> Message:
    series = draw(
        st.lists(
            st.builds(
                Series,
                texts,
                st.lists(texts, max_size=5).map(tuple),
                st.lists(st.tuples(timestamps, finite_or_not), max_size=12).map(tuple),
            ),
            max_size=5,
        )
    )
    return Message(draw(st.integers(0, 2**64 - 1)), tuple(series))


def _same(a: Message, b: Message, nan_bits: bool = True) -> bool:
    """Equal, values compared bit for bit (NaN payloads too, unless ``nan_bits`` is off)."""

    def bits(v: float) -> object:
        return struct.pack("<d", v) if nan_bits or not math.isnan(v) else "nan"

    def key(m: Message) -> object:
        return (m.org, [(s.metric, s.tags, [(t, bits(v)) for t, v in s.points]) for s in m.series])

    return key(a) == key(b)


@given(messages())
def test_binary_round_trip(m: Message) -> None:
    assert _same(decode(encode(m)), m)


@given(messages())
def test_json_round_trip(m: Message) -> None:
    # JSON spells NaN as a string: the NaN survives, its payload bits do not (and need not:
    # every aggregate ignores NaN).
    assert _same(from_json(to_json(m)), m, nan_bits=False)


@given(messages())
def test_every_truncation_is_rejected(m: Message) -> None:
    buf = encode(m)
    for cut in range(len(buf)):
        with pytest.raises(PayloadError):
            decode(buf[:cut])


def _payload(*parts: bytes | int) -> bytes:
    out = bytearray()
    for p in parts:
        if isinstance(p, int):
            write_uvarint(out, p)
        else:
            out += p
    return bytes(out)


@pytest.mark.parametrize(
    ("buf", "reason"),
    [
        (b"", "empty"),
        (b"\x02\x01\x00\x00", "bad_version"),
        (b"\x01" + b"\x80" * 10 + b"\x00", "bad_varint"),
        (b"\x01" + b"\xff" * 9 + b"\x02", "bad_varint"),
        (_payload(b"\x01", 7, 200), "count_too_large"),
        (_payload(b"\x01", 7, 1, 1, b"m", 1, 1, 0, 0), "id_out_of_range"),
        (_payload(b"\x01", 7, 1, 1, b"m", 1, 0, 1, 5, 0), "id_out_of_range"),
        (_payload(b"\x01", 7, 1, 2, b"\xff\xfe"), "bad_utf8"),
        (_payload(b"\x01", 7, 0, 0, b"\x00"), "trailing_bytes"),
        (_payload(b"\x01", 7, 1, 1, b"m", 1, 0, 0, 2, 2, b"\x07", b"\x00", b"\x00" * 16), "bad_ts_encoding"),
        (_payload(b"\x01", 7, 1, 1, b"m", 1, 0, 0, 1, (2**63 - 1) * 2, b"\x00", b"\x00" * 8), "ts_out_of_range"),
        # In range at first, out of range through a delta (zigzag 2^62, then +2 by StreamVByte).
        (_payload(b"\x01", 7, 1, 1, b"m", 1, 0, 0, 2, 2**63, b"\x00", b"\x00", b"\x04", b"\x00" * 16), "ts_out_of_range"),
        (_payload(b"\x01", 7, 1, 1, b"m", 1, 0, 0, 1, 2, b"\x00", b"\x00" * 7), "truncated"),
        (_payload(b"\x01", 7, 1, 1, b"m", 1, 0, 0, 2, 2, b"\x00", b"\x00" * 7), "count_too_large"),
    ],
)
def test_malformed_payloads_name_their_reason(buf: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as e:
        decode(buf)
    assert e.value.reason == reason


def test_wrong_org() -> None:
    with pytest.raises(PayloadError) as e:
        decode(encode(Message(5, ())), expect_org=6)
    assert e.value.reason == "wrong_org"


def test_large_deltas_use_varint_encoding() -> None:
    m = Message(1, (Series("m", (), ((0, 1.0), (2**40, 2.0), (-(2**61), 3.0))),))
    assert decode(encode(m)) == m


def test_stream_files(tmp_path: Path) -> None:
    msgs = [SHARED, Message(1042, ())]
    for name in ("s.bin", "s.jsonl"):
        p = tmp_path / name
        assert write_stream(p, msgs) == 2
        assert [decode(x) for x in read_payloads(p) if isinstance(x, bytes)] == [decode(encode(m)) for m in msgs]
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"nope")
    with pytest.raises(StreamError, match="bad magic"):
        list(read_payloads(bad))
    cut = tmp_path / "cut.bin"
    cut.write_bytes((tmp_path / "s.bin").read_bytes()[:-3])
    with pytest.raises(StreamError, match="runs past the end"):
        list(read_payloads(cut))


def test_hostile_json_is_a_counted_error_not_a_crash(tmp_path: Path) -> None:
    p = tmp_path / "hostile.jsonl"
    lines = [
        b'{"org": 1, "series": [{"metric": "m", "points": [[1, 1' + b"9" * 400 + b"]]}]}",  # beyond float range
        b'{"org": 1, "series": [{"metric": "\\ud800", "points": []}]}',  # lone surrogate
        b'{"org": 1, "series": [{"metric": "m", "tags": "service:web", "points": []}]}',  # tags not a list
        b'{"org": 1, "series": [{"metric": "m", "points": [[1, 2, 3]]}]}',  # not a pair
        b'{"org": 1, "series": [{"metric": "m", "points": [[1, "1.5"]]}]}',  # number as a string
        b"\xff\xfe{}",  # not UTF-8
        b'{"org": 1, "series": [{"metric": "m", "points": [[1, "NaN"], [2, "-inf"]]}]}',  # accepted spellings
    ]
    lines.insert(-1, b'{"org": 1, "series": [{"metric": "m", "points": [[1, true]]}]}')  # a boolean is no value
    p.write_bytes(b"\n".join(lines) + b"\n")
    items = list(read_payloads(p))
    reasons = [i.reason if isinstance(i, PayloadError) else "ok" for i in items]
    assert reasons == ["bad_json", "bad_utf8", "bad_json", "bad_json", "bad_json", "bad_json", "bad_json", "ok"]
    assert all(str(i) for i in items if isinstance(i, PayloadError))


def test_unknown_stream_suffix_creates_no_file(tmp_path: Path) -> None:
    with pytest.raises(StreamError):
        write_stream(tmp_path / "junk.txt", [SHARED])
    assert not (tmp_path / "junk.txt").exists()


def test_bad_jsonl_lines_are_reported_not_fatal(tmp_path: Path) -> None:
    p = tmp_path / "mixed.jsonl"
    p.write_text('{"org": 1, "series": []}\nnot json\n{"org": "x", "series": []}\n\n{"org": 1, "series": [{"metric": "m", "points": [[1.5, 2]]}]}\n')
    items = list(read_payloads(p))
    assert isinstance(items[0], bytes)
    assert [i.reason for i in items[1:] if isinstance(i, PayloadError)] == ["bad_json"] * 3
