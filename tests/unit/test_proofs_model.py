"""The z3 checks of the codec model (actors/verify/proofs/), without wasm: they pass on
the model of the shipped code, they fail on a deliberately wrong model (so they can fail),
and the model agrees with the Python decoder in actors/payload.py."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.errors import PayloadError
from actors.payload import _Reader, write_uvarint
from actors.verify import proofs
from actors.verify.proofs import OK, Check, model_read_uvarint, run_concrete_varint

Z3_CHECKS = (
    proofs.check_z3_varint,
    proofs.check_z3_read_count,
    proofs.check_z3_zigzag,
    proofs.check_z3_svb_control,
    proofs.check_z3_svb_data_len,
    proofs.check_z3_svb_decode,
    proofs.check_z3_payload_loop_bounds,
)


@pytest.mark.parametrize("check", Z3_CHECKS, ids=lambda f: f.__name__)
def test_z3_checks_pass_on_the_model_of_the_shipped_code(check: object) -> None:
    assert callable(check)
    c = check()
    assert isinstance(c, Check)
    assert (c.kind, c.status) == ("z3-model", "passed"), c.reason
    assert c.name.startswith("z3:") and c.tool.startswith("z3 ")
    assert "not the shipped code" in c.reason  # labelled as what it is: a model
    assert c.seconds < 20


def test_a_varint_model_without_the_tenth_byte_check_fails() -> None:
    wrong = functools.partial(model_read_uvarint, tenth_byte_check=False)
    c = proofs.check_z3_varint(wrong)
    assert c.status == "failed"
    # Without `byte > 1` a tenth byte of 2..=127 is shifted out of the u64: the value is wrong.
    assert "LEB128 value" in c.reason and "counterexample" in c.reason


def test_the_wrong_model_is_wrong_on_a_concrete_input_too() -> None:
    ten = bytes([0x80] * 9 + [0x02])  # 2 * 2^63 = 2^64: does not fit
    assert run_concrete_varint(ten, 0).code == proofs.BAD_VARINT
    wrong = functools.partial(model_read_uvarint, tenth_byte_check=False)
    assert run_concrete_varint(ten, 0, read_uvarint=wrong).code == OK  # silently truncated


def _python_decoder(buf: bytes, start: int) -> tuple[str, int, int]:
    """actors/payload.py's varint reader: (reason or "ok", value or offset, new position)."""
    r = _Reader(buf)
    r.pos = start
    try:
        v = r.uvarint()
    except PayloadError as e:
        assert e.offset is not None
        return e.reason, e.offset, start
    return "ok", v, r.pos


_REASONS = {OK: "ok", proofs.TRUNCATED: "truncated", proofs.BAD_VARINT: "bad_varint"}

# Mostly continuation bytes, so long and over-long varints are common.
varint_bytes = st.lists(st.one_of(st.integers(0x80, 0xFF), st.integers(0, 0xFF)), max_size=13).map(bytes)


@given(varint_bytes, st.data())
def test_model_agrees_with_the_python_decoder(buf: bytes, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(buf) + 1))
    m = run_concrete_varint(buf, start)
    reason, value_or_offset, pos = _python_decoder(buf, start)
    assert _REASONS[m.code] == reason
    if m.code == OK:
        assert (m.value, m.pos) == (value_or_offset, pos)
    else:
        assert m.at == value_or_offset and m.pos == start


@given(st.integers(0, 2**64 - 1), st.binary(max_size=3))
def test_model_decodes_what_python_encodes(v: int, tail: bytes) -> None:
    out = bytearray()
    write_uvarint(out, v)
    m = run_concrete_varint(bytes(out) + tail, 0)
    assert (m.code, m.value, m.pos) == (OK, v, len(out))


@given(varint_bytes, st.integers(0, 2**32 - 1))
def test_read_count_model_never_exceeds_its_limit(buf: bytes, limit: int) -> None:
    m = run_concrete_varint(buf, 0, limit)
    if m.code == OK:
        assert m.value <= limit
    elif m.code == proofs.COUNT_TOO_LARGE:
        assert m.at == 0 and run_concrete_varint(buf, 0).value > limit


def test_svb_model_lengths_match_the_python_encoder() -> None:
    from actors.payload import svb_encode

    o = proofs.Concrete()
    values = [0, 255, 256, 65535, 65536, 2**24 - 1, 2**24, 2**32 - 1, 7]
    out = bytearray()
    svb_encode(out, values)
    clen = proofs.model_control_len(len(values))
    ctrl, data = bytes(out[:clen]), bytes(out[clen:])
    assert proofs.model_data_len(o, ctrl, len(values)) == len(data)
    run = proofs.model_decode_with(o, ctrl, lambda i: data[i] if i < len(data) else 0, len(data), len(values))
    assert run.ok and list(run.values) == values and run.end == len(data)
