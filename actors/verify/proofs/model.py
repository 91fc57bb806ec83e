"""The Python model of the decoder, statement for statement after ``guest-rust/codec/src``:
run concretely on bytes (:class:`Concrete`) or symbolically as z3 terms (:class:`Symbolic`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import z3

# Error codes of guest-rust/codec/src/error.rs (0 stands for Ok in the models and the probe).
OK, TRUNCATED, BAD_VARINT, COUNT_TOO_LARGE = 0, 2, 4, 5
U64 = (1 << 64) - 1


# --- the model's operations: concrete (Python ints) or symbolic (z3 terms) ----------------


class Concrete:
    """Runs a model on actual bytes: conditions are bools, words are ints."""

    true: Any = True

    def and_(self, *cs: Any) -> Any:
        return all(cs)

    def not_(self, c: Any) -> Any:
        return not c

    def ite(self, c: Any, a: Any, b: Any) -> Any:
        return a if c else b

    def const(self, v: int, bits: int) -> Any:
        return v & ((1 << bits) - 1)

    def ugt(self, a: Any, b: Any) -> Any:
        return a > b

    def uge(self, a: Any, b: Any) -> Any:
        return a >= b

    def lshr(self, x: Any, k: int) -> Any:
        return x >> k

    def shl(self, x: Any, k: int, bits: int) -> Any:
        return (x << k) & ((1 << bits) - 1)

    def zext(self, x: Any, to_bits: int) -> Any:
        return x

    def to_int(self, x: Any) -> Any:
        return x

    def is_false(self, c: Any) -> bool:
        return not c


class Symbolic:
    """Builds z3 terms: conditions are Bool, bytes and words bit-vectors, positions Int."""

    true: Any = z3.BoolVal(True)

    def and_(self, *cs: Any) -> Any:
        return z3.And(*cs)

    def not_(self, c: Any) -> Any:
        return z3.Not(c)

    def ite(self, c: Any, a: Any, b: Any) -> Any:
        return z3.If(c, a, b)

    def const(self, v: int, bits: int) -> Any:
        return z3.BitVecVal(v, bits)

    def ugt(self, a: Any, b: Any) -> Any:
        return z3.UGT(a, b)

    def uge(self, a: Any, b: Any) -> Any:
        return z3.UGE(a, b)

    def lshr(self, x: Any, k: int) -> Any:
        return z3.LShR(x, k)

    def shl(self, x: Any, k: int, bits: int) -> Any:
        return x << k

    def zext(self, x: Any, to_bits: int) -> Any:
        return z3.ZeroExt(to_bits - x.size(), x)

    def to_int(self, x: Any) -> Any:
        return z3.BV2Int(x)

    def is_false(self, c: Any) -> bool:
        return bool(z3.is_false(c))


Ops = Concrete | Symbolic


# --- the models, statement for statement after guest-rust/codec/src --------------------


@dataclass(frozen=True)
class Outcome:
    """One way a model run can end; the outcome whose ``guard`` holds is what the code returns."""

    guard: Any
    code: int
    """0 (Ok) or the ErrorCode."""
    value: Any
    """Ok: the decoded word; Err: 0."""
    at: Any
    """Ok: the new position; Err: the error's offset."""
    pos: Any
    """The position after the call (Err included)."""
    nbytes: int
    """Bytes read on this path."""


@dataclass(frozen=True)
class Run:
    outcomes: tuple[Outcome, ...]
    reads: tuple[tuple[Any, Any], ...]
    """``(guard, index)`` of every ``buf[index]`` the code evaluates on some path."""


VarintModel = Callable[..., Run]


def model_read_uvarint(o: Ops, byte_at: Callable[[Any], Any], length: Any, start: Any, *, tenth_byte_check: bool = True) -> Run:
    """``varint.rs::read_uvarint``. ``byte_at(i)`` is ``buf[i]``; ``tenth_byte_check=False``
    leaves out the ``byte > 1`` test (a deliberately wrong model, for the tests)."""
    zero = o.const(0, 64)
    outcomes: list[Outcome] = []
    reads: list[tuple[Any, Any]] = []
    result = zero
    shift = 0
    i = start
    live = o.true
    k = 0
    while True:
        # if i >= buf.len() { return Err(Truncated at i) }
        out = o.and_(live, i >= length)
        outcomes.append(Outcome(out, TRUNCATED, zero, i, start, k))
        live = o.and_(live, o.not_(out))
        if o.is_false(live):
            break
        # let byte = buf[i]; i += 1;
        reads.append((live, i))
        byte = byte_at(i)
        i = i + 1
        k += 1
        if shift == 63:
            if tenth_byte_check:
                # if byte > 1 { return Err(BadVarint at start) }
                bad = o.and_(live, o.ugt(byte, o.const(1, 8)))
                outcomes.append(Outcome(bad, BAD_VARINT, zero, start, start, k))
                live = o.and_(live, o.not_(bad))
            # result |= (byte as u64) << 63; *pos = i; return Ok(result)
            outcomes.append(Outcome(live, OK, result | o.shl(o.zext(byte, 64), 63, 64), i, i, k))
            break
        # result |= ((byte & 0x7f) as u64) << shift;
        result = result | o.shl(o.zext(byte & 0x7F, 64), shift, 64)
        # if byte & 0x80 == 0 { *pos = i; return Ok(result) }
        done = o.and_(live, (byte & 0x80) == 0)
        outcomes.append(Outcome(done, OK, result, i, i, k))
        live = o.and_(live, o.not_(done))
        if o.is_false(live):
            break
        shift += 7
    return Run(tuple(outcomes), tuple(reads))


def model_read_count(o: Ops, byte_at: Callable[[Any], Any], length: Any, start: Any, limit: Any, *, read_uvarint: VarintModel = model_read_uvarint) -> Run:
    """``varint.rs::read_count``: ``read_uvarint``, then ``CountTooLarge`` (at the start) above ``limit``."""
    run = read_uvarint(o, byte_at, length, start)
    outs: list[Outcome] = []
    for x in run.outcomes:
        if x.code != OK:
            outs.append(x)
            continue
        too_big = o.ugt(x.value, limit)
        outs.append(Outcome(o.and_(x.guard, too_big), COUNT_TOO_LARGE, o.const(0, 64), start, x.pos, x.nbytes))
        outs.append(Outcome(o.and_(x.guard, o.not_(too_big)), OK, x.value, x.at, x.pos, x.nbytes))
    return Run(tuple(outs), run.reads)


def model_control_len(n: int) -> int:
    """``svb.rs::control_len``."""
    return (n + 3) // 4


def model_value_len(o: Ops, ctrl: Sequence[Any], i: int) -> Any:
    """``svb.rs::value_len``: a byte (1..=4)."""
    return (o.lshr(ctrl[i // 4], 2 * (i % 4)) & 3) + 1


def model_data_len(o: Ops, ctrl: Sequence[Any], n: int) -> Any:
    """``svb.rs::data_len`` as an unbounded integer (the Rust sum is a usize; that it
    cannot wrap is part of ``z3:payload-loop-bounds``)."""
    full = n // 4
    total: Any = 0
    for c in ctrl[:full]:
        total = total + o.to_int(c & 3) + o.to_int(o.lshr(c, 2) & 3) + o.to_int(o.lshr(c, 4) & 3) + o.to_int(o.lshr(c, 6)) + 4
    for i in range(full * 4, n):
        total = total + o.to_int(model_value_len(o, ctrl, i))
    return total


@dataclass(frozen=True)
class DecodeRun:
    ok: Any
    """What ``decode_with`` returns."""
    values: tuple[Any, ...]
    """Value ``i`` passed to the callback (when ``ok``)."""
    reads: tuple[tuple[Any, Any], ...]
    """``(guard, index)`` of every ``data[index]`` read."""
    end: Any
    """``p`` after the loop."""


def model_decode_with(o: Ops, ctrl: Sequence[Any], data_at: Callable[[Any], Any], data_len: Any, n: int) -> DecodeRun:
    """``svb.rs::decode_with``: ``ctrl`` is the whole control slice, ``data_at(i)`` is ``data[i]``."""
    if len(ctrl) != model_control_len(n):
        return DecodeRun(False, (), (), 0)
    ok = data_len == model_data_len(o, ctrl, n)
    if o.is_false(ok):
        return DecodeRun(ok, (), (), 0)
    p: Any = 0
    values: list[Any] = []
    reads: list[tuple[Any, Any]] = []
    for i in range(n):
        ln = model_value_len(o, ctrl, i)
        b = [o.zext(data_at(p + k), 32) for k in range(4)]
        reads += [(ok, p), (o.and_(ok, o.uge(ln, 2)), p + 1), (o.and_(ok, o.uge(ln, 3)), p + 2), (o.and_(ok, ln == 4), p + 3)]
        two = b[0] | o.shl(b[1], 8, 32)
        three = two | o.shl(b[2], 16, 32)
        four = three | o.shl(b[3], 24, 32)
        values.append(o.ite(ln == 1, b[0], o.ite(ln == 2, two, o.ite(ln == 3, three, four))))
        p = p + o.to_int(ln)
    return DecodeRun(ok, tuple(values), tuple(reads), p)


def model_zigzag_decode(o: Ops, v: Any, bits: int) -> Any:
    """``varint.rs::zigzag_decode`` (64) / ``zigzag_decode32`` (32), on two's-complement words."""
    neg = o.const(0, bits) - (v & 1) if isinstance(o, Symbolic) else (-(v & 1)) & ((1 << bits) - 1)
    return o.lshr(v, 1) ^ neg


def run_concrete_varint(buf: bytes, start: int, limit: int | None = None, *, read_uvarint: VarintModel = model_read_uvarint) -> Outcome:
    """The model on actual bytes: ``read_uvarint`` (or ``read_count`` with ``limit``) at ``start``.
    Raises AssertionError if the model reads outside ``buf``."""
    o = Concrete()

    def byte_at(i: int) -> int:
        return buf[i] if 0 <= i < len(buf) else 0

    count = limit is not None
    run: Run = model_read_count(o, byte_at, len(buf), start, limit, read_uvarint=read_uvarint) if count else read_uvarint(o, byte_at, len(buf), start)
    for guard, idx in run.reads:
        if guard and not 0 <= idx < len(buf):
            raise AssertionError(f"model read buf[{idx}] of {len(buf)} bytes")
    taken = [x for x in run.outcomes if x.guard]
    assert len(taken) == 1, taken
    return taken[0]
