"""Python <-> Rust codec round trips on random messages, through the real compiled codec.

The `codec-probe` module decodes a payload with the Rust reader and re-encodes it with
the Rust encoder. Python-encoded bytes must come back unchanged (Rust decodes what Python
encodes, and encodes it identically), and the Python decoder must read the Rust bytes back
to the same message. Malformed bytes must be refused for the same reason on both sides.
"""

from __future__ import annotations

import struct

import pytest
import wasmtime
from hypothesis import given
from hypothesis import strategies as st

from actors.errors import PayloadError
from actors.kernel.build import build
from actors.payload import REJECT_REASONS, Message, Series, decode, encode

pytestmark = pytest.mark.integration


class Probe:
    def __init__(self) -> None:
        engine = wasmtime.Engine()
        self.store = wasmtime.Store(engine)
        inst = wasmtime.Instance(self.store, wasmtime.Module(engine, build(package="codec-probe").wasm), [])
        ex = inst.exports(self.store)
        self.memory = ex["memory"]
        self.alloc, self.roundtrip, self.result_ptr = ex["probe_alloc"], ex["probe_roundtrip"], ex["probe_result_ptr"]

    def __call__(self, payload: bytes) -> bytes | str:
        ptr = self.alloc(self.store, max(1, len(payload)))  # type: ignore[operator]
        self.memory.write(self.store, payload, ptr)  # type: ignore[union-attr]
        n = self.roundtrip(self.store, ptr, len(payload))  # type: ignore[operator]
        if n < 0:
            return REJECT_REASONS[-n]
        start = self.result_ptr(self.store)  # type: ignore[operator]
        return bytes(self.memory.read(self.store, start, start + n))  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def probe() -> Probe:
    return Probe()


text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=10)
points = st.lists(
    st.tuples(
        st.one_of(st.integers(-(2**62), 2**62), st.integers(1_764_000_000, 1_764_001_000)),
        st.floats(allow_nan=True, allow_infinity=True),
    ),
    max_size=40,
)
messages = st.builds(
    Message,
    st.integers(0, 2**64 - 1),
    st.lists(st.builds(Series, text, st.lists(text, max_size=6).map(tuple), points.map(tuple)), max_size=6).map(tuple),
)


def _bits(m: Message) -> object:
    return (m.org, [(s.metric, s.tags, [(t, struct.pack("<d", v)) for t, v in s.points]) for s in m.series])


@given(messages)
def test_python_encoding_survives_rust_decode_and_encode(probe: Probe, m: Message) -> None:
    py = encode(m)
    rust = probe(py)
    assert rust == py
    assert isinstance(rust, bytes) and _bits(decode(rust)) == _bits(m)


@given(messages, st.data())
def test_both_decoders_refuse_the_same_bytes_for_the_same_reason(probe: Probe, m: Message, data: st.DataObject) -> None:
    buf = bytearray(encode(m))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(buf)))
        op = data.draw(st.sampled_from(["flip", "insert", "cut"]))
        if op == "flip" and i < len(buf):
            buf[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            buf.insert(i, data.draw(st.integers(0, 255)))
        else:
            del buf[i:]
    got = probe(bytes(buf))
    try:
        expected = _bits(decode(bytes(buf)))
    except PayloadError as e:
        assert got == e.reason
        return
    # Accepted: the Rust re-encoding (which keeps the table as it was, unused or repeated
    # strings included) must decode in Python to the same message.
    assert isinstance(got, bytes), got
    assert _bits(decode(got)) == expected
