"""The proofs stage: what is known about the shared codec (``guest-rust/codec``), and how.

Every kernel decodes untrusted payloads with the codec, so its safety is argued once,
here, four ways. :func:`run_codec_checks` runs them all and returns one :class:`Check`
per property; a check that could not run says ``not-run`` and why, never ``passed``.

``verus`` (``verus:<module>``)
    Verus verifies ``verus/`` (see ``verus/README.md``): a copy of the codec's decoding
    functions with ``requires``/``ensures``/loop invariants. Passed means the copy is
    proved: every index in bounds, no arithmetic overflow, ``read_uvarint`` returns the
    exact LEB128 value of at most 10 bytes, ``data_len`` is the sum of the per-value
    lengths, and every payload-reader loop is bounded by its input. It proves the
    *copy*; the ``sync`` check ties the copy to the shipped code. Verus is not
    installable from any registry this project uses, so here these are ``not-run``.
``z3-model`` (``z3:<property>``)
    z3 proves the same properties of a bit-vector *model* of the decoder written in this
    file (:func:`model_read_uvarint`, :func:`model_data_len`, ...), statement for
    statement after the Rust, for every input of the stated shape: buffers of any length
    and any start position for varints, every control byte, 0..=16 (data_len) or 0..=12
    (decode) StreamVByte values, and the payload reader's count checks as an arithmetic
    lemma over 32- and 64-bit ``usize``. Passed says nothing about the compiled code by
    itself; the exhaustive checks tie the model to it.
``exhaustive``
    Runs the *compiled, shipped* codec (``guest-rust/codec-probe`` built to wasm, the
    target that ships) on every 1- and 2-byte varint input, a sample of longer ones,
    every control byte with ``n`` in 0..=8 values, and every count against every small
    number of bytes left, and requires the exact results of the model (and of
    ``actors/payload.py`` for whole payloads). A wasm trap (an out-of-bounds index in
    Rust panics and aborts) fails the check.
``sync``
    The executable bodies of the Verus copy equal the shipped functions token for token
    once comments, attributes and Verus-only text (specs, loop invariants, ``proof``
    blocks, ``assert``, ghost variables) are stripped; the few rewrites Verus needs are
    declared beside each function (``sync-rewrite-from``/``-to``) and must each apply
    exactly once. A copy that uses ``assume``/``admit``/``external_body`` fails.

What none of this proves: that decoded values are *semantically* right beyond the
varint value and the lengths (the round-trip tests in ``tests/integration`` cover
that), anything about the kernels' aggregation code, or the Rust compiler and wasmtime
themselves. The z3 and exhaustive checks together show the model and the compiled code
agree on the inputs tried and that the model is safe on all inputs; only Verus proves
the shipped code's (copy's) safety for all inputs.

Results are cached under ``<cache>/proofs/<codec_digest>.json`` with the versions of
every tool involved; a cached check keeps its status and says ``[cached ...]`` in its
reason.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import z3

from actors.errors import BuildFailed
from actors.kernel.build import REPO_ROOT, build, cache_dir, toolchain

CODEC_DIR = REPO_ROOT / "guest-rust" / "codec"
VERUS_DIR = REPO_ROOT / "verus"
VERUS_ROOT = "codec_proofs.rs"
VERUS_MODULES = ("error", "varint", "svb", "payload")
VERUS_TIMEOUT_S = 900.0
Z3_TIMEOUT_MS = 60_000

# Error codes of guest-rust/codec/src/error.rs (0 stands for Ok in the models and the probe).
OK, TRUNCATED, BAD_VARINT, COUNT_TOO_LARGE = 0, 2, 4, 5
U64 = (1 << 64) - 1

# The shipped functions the Verus copy must contain (`// sync: <file>::<fn>` markers).
REQUIRED_SYNC = (
    "src/varint.rs::read_uvarint",
    "src/varint.rs::read_count",
    "src/svb.rs::control_len",
    "src/svb.rs::value_len",
    "src/svb.rs::data_len",
    "src/svb.rs::decode_with",
    "src/payload.rs::new",
    "src/payload.rs::read_strings",
    "src/payload.rs::read_count_of",
    "src/payload.rs::read_id",
    "src/payload.rs::next_series",
    "src/payload.rs::read_timestamps",
)


@dataclass(frozen=True)
class Check:
    """One property and what is known about it."""

    name: str
    """e.g. ``verus:varint``, ``z3:varint``, ``exhaustive:svb-control-bytes``, ``sync:verus-copy``"""
    kind: str
    """``verus`` | ``z3-model`` | ``exhaustive`` | ``sync``"""
    status: str
    """``passed`` | ``failed`` | ``not-run``"""
    reason: str
    """Why it failed or did not run, or what passing means; one line."""
    seconds: float
    tool: str
    """The tool and its version, e.g. ``z3 4.15.4``."""


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


# --- z3 checks ---------------------------------------------------------------------------


def _z3_tool() -> str:
    return f"z3 {z3.get_version_string()}"


def _prove(claims: Iterable[tuple[str, Any]], assumptions: Sequence[Any] = ()) -> str | None:
    """None when every claim holds under the assumptions; else what failed (with a counterexample)."""
    s = z3.Solver()
    s.set("timeout", Z3_TIMEOUT_MS)
    s.add(*assumptions)
    for label, claim in claims:
        s.push()
        s.add(z3.Not(claim))
        r = s.check()
        if r == z3.sat:
            m = s.model()
            shown = ", ".join(f"{d.name()}={m[d]}" for d in sorted(m.decls(), key=lambda d: d.name())[:8])
            return f"{label}: counterexample {shown}"
        if r != z3.sat and r != z3.unsat:
            return f"{label}: z3 gave up ({s.reason_unknown()})"
        s.pop()
    return None


_MODEL = "proved on a bit-vector model of the decoder (not the shipped code)"


def _z3_check(name: str, what: str, build_claims: Callable[[], tuple[list[tuple[str, Any]], list[Any]]], label: str = _MODEL) -> Check:
    t0 = time.monotonic()
    try:
        claims, assumptions = build_claims()
        failure = _prove(claims, assumptions)
    except Exception as e:  # a bug in a model is a failed check, not a crash of the stage
        failure = f"internal error: {type(e).__name__}: {e}"
    status = "failed" if failure else "passed"
    reason = f"model (not the shipped code): {failure}" if failure else f"{label}: {what}"
    return Check(name, "z3-model", status, reason, time.monotonic() - t0, _z3_tool())


def _leb(mem: Any, start: Any, k: int) -> Any:
    return z3.Sum([z3.BV2Int(mem[start + j] & 0x7F) * (128**j) for j in range(k)]) if k else z3.IntVal(0)


def check_z3_varint(read_uvarint: VarintModel = model_read_uvarint) -> Check:
    """For every buffer (any length), every start position: the modelled ``read_uvarint``
    reads only ``buf[start..len]``, at most 10 bytes, ends in exactly one way, returns the
    exact (unbounded) LEB128 value of the bytes it consumed, which is below 2^64, leaves
    the position alone on errors, and reports ``bad_varint`` only for encodings longer than
    10 bytes or above 2^64-1 and ``truncated`` only when the buffer ends inside a varint."""

    def claims() -> tuple[list[tuple[str, Any]], list[Any]]:
        o = Symbolic()
        mem = z3.Array("buf", z3.IntSort(), z3.BitVecSort(8))
        length, start = z3.Ints("len start")
        run = read_uvarint(o, lambda i: mem[i], length, start)
        out: list[tuple[str, Any]] = [(f"read #{n} in bounds", z3.Implies(g, z3.And(idx >= 0, idx < length))) for n, (g, idx) in enumerate(run.reads)]
        out.append(("at most 10 bytes read", z3.BoolVal(len(run.reads) <= 10)))
        guards = [x.guard for x in run.outcomes]
        out.append(("some outcome", z3.Or(*guards)))
        out += [(f"outcomes {a} and {b} exclusive", z3.Not(z3.And(guards[a], guards[b]))) for a in range(len(guards)) for b in range(a)]
        for x in run.outcomes:
            k = x.nbytes
            if x.code == OK:
                value = _leb(mem, start, k)
                out.append((f"{k}-byte Ok: consumed {k} bytes inside buf", z3.Implies(x.guard, z3.And(x.pos == start + k, x.pos <= length, k <= 10))))
                out.append((f"{k}-byte Ok: value is the LEB128 value (< 2^64)", z3.Implies(x.guard, z3.And(z3.BV2Int(x.value) == value, value < 2**64))))
            else:
                out.append((f"{k}-byte error leaves the position", z3.Implies(x.guard, x.pos == start)))
            if x.code == BAD_VARINT:
                last = mem[start + k - 1]
                out.append(("bad_varint only beyond 64 bits", z3.Implies(x.guard, z3.Or(z3.UGE(last, 0x80), _leb(mem, start, k) >= 2**64))))
            if x.code == TRUNCATED:
                cont = [z3.UGE(mem[start + j], 0x80) for j in range(k)]
                out.append((f"truncated after {k} bytes only at the end", z3.Implies(x.guard, z3.And(x.at == start + k, start + k >= length, *cont))))
        return out, [start >= 0, length >= 0]

    return _z3_check(
        "z3:varint", "reads only buf[start..len] (<= 10 bytes), returns the exact LEB128 value < 2^64, errors exactly on overflow/truncation", claims
    )


def check_z3_read_count() -> Check:
    """``read_count`` returns at most ``limit``, and its ``as usize`` is exact on wasm32."""

    def claims() -> tuple[list[tuple[str, Any]], list[Any]]:
        o = Symbolic()
        mem = z3.Array("buf", z3.IntSort(), z3.BitVecSort(8))
        length, start = z3.Ints("len start")
        limit = z3.BitVec("limit", 64)
        run = model_read_count(o, lambda i: mem[i], length, start, limit)
        out: list[tuple[str, Any]] = []
        for x in run.outcomes:
            if x.code == OK:
                out.append((f"{x.nbytes}-byte count <= limit", z3.Implies(x.guard, z3.ULE(x.value, limit))))
                out.append((f"{x.nbytes}-byte count fits a 32-bit usize", z3.Implies(z3.And(x.guard, z3.ULT(limit, 2**32)), z3.ULT(x.value, 2**32))))
        return out, [start >= 0, length >= 0]

    return _z3_check("z3:read-count", "read_count returns a value <= limit (so `as usize` is exact)", claims)


def check_z3_zigzag() -> Check:
    def claims() -> tuple[list[tuple[str, Any]], list[Any]]:
        o = Symbolic()
        out: list[tuple[str, Any]] = []
        for bits in (64, 32):
            v = z3.BitVec(f"v{bits}", bits)
            x = z3.BitVec(f"x{bits}", bits)
            enc = (x << 1) ^ (x >> (bits - 1))
            out.append((f"{bits}-bit negation of v & 1 cannot overflow", z3.ULE(v & 1, 1)))
            out.append((f"{bits}-bit decode(encode(x)) == x", model_zigzag_decode(o, enc, bits) == x))
            dec = model_zigzag_decode(o, v, bits)
            out.append((f"{bits}-bit encode(decode(v)) == v", ((dec << 1) ^ (dec >> (bits - 1))) == v))
        return out, []

    return _z3_check("z3:zigzag", "zigzag decoding cannot overflow and inverts encoding, 64- and 32-bit", claims)


def check_z3_svb_control() -> Check:
    def claims() -> tuple[list[tuple[str, Any]], list[Any]]:
        o = Symbolic()
        c = z3.BitVec("c", 8)
        lens = [z3.BV2Int(model_value_len(o, [c], j)) for j in range(4)]
        group = z3.BV2Int(c & 3) + z3.BV2Int(z3.LShR(c, 2) & 3) + z3.BV2Int(z3.LShR(c, 4) & 3) + z3.BV2Int(z3.LShR(c, 6)) + 4
        out: list[tuple[str, Any]] = [(f"value {j} of a control byte has 1..=4 bytes", z3.And(lens[j] >= 1, lens[j] <= 4)) for j in range(4)]
        out.append(("a full group's formula is the sum of its 4 lengths", group == z3.Sum(lens)))
        out.append(("a full group has 4..=16 data bytes", z3.And(group >= 4, group <= 16)))
        n = z3.Int("n")
        cl = (n + 3) / 4  # integer division on Int
        out.append(("control_len(n) == ceil(n / 4)", z3.Implies(n >= 0, z3.And(4 * cl >= n, 4 * cl <= n + 3))))
        for w in (32, 64):
            nb = z3.BitVec(f"n{w}", w)
            clb = z3.UDiv(nb + 3, 4)
            ok = z3.ULE(nb, 2**w - 4)
            exact = _wide(clb) == z3.UDiv(_wide(nb) + 3, 4)
            out.append((f"{w}-bit control_len(n) == ceil(n / 4) for n <= usize::MAX - 3", z3.Implies(ok, exact)))
        return out, []

    return _z3_check("z3:svb-control", "every control byte gives lengths in 1..=4; control_len(n) == ceil(n/4)", claims)


def check_z3_svb_data_len(max_n: int = 16) -> Check:
    def claims() -> tuple[list[tuple[str, Any]], list[Any]]:
        o = Symbolic()
        ctrl = [z3.BitVec(f"c{k}", 8) for k in range(model_control_len(max_n))]
        out: list[tuple[str, Any]] = []
        for n in range(max_n + 1):
            c = ctrl[: model_control_len(n)]
            dl = model_data_len(o, c, n)
            lens = [z3.BV2Int(model_value_len(o, c, i)) for i in range(n)]
            out.append((f"data_len(ctrl, {n}) is the sum of the lengths", dl == (z3.Sum(lens) if lens else 0)))
            out.append((f"{n} <= data_len(ctrl, {n}) <= {4 * n}", z3.And(dl >= n, dl <= 4 * n)))
        return out, []

    return _z3_check("z3:svb-data-len", f"data_len(ctrl, n) == sum of per-value lengths and n <= it <= 4n, every ctrl, n in 0..={max_n}", claims)


def check_z3_svb_decode(max_n: int = 12) -> Check:
    def claims() -> tuple[list[tuple[str, Any]], list[Any]]:
        o = Symbolic()
        data = z3.Array("data", z3.IntSort(), z3.BitVecSort(8))
        dlen = z3.Int("data_len")
        ctrl = [z3.BitVec(f"c{k}", 8) for k in range(model_control_len(max_n))]
        out: list[tuple[str, Any]] = []
        for n in range(max_n + 1):
            c = ctrl[: model_control_len(n)]
            run = model_decode_with(o, c, lambda i: data[i], dlen, n)
            total = model_data_len(o, c, n)
            out.append((f"n={n}: accepts exactly data.len() == data_len", run.ok == (dlen == total)))
            out += [(f"n={n}: read #{k} inside data", z3.Implies(g, z3.And(idx >= 0, idx < dlen))) for k, (g, idx) in enumerate(run.reads)]
            out.append((f"n={n}: consumes all of data", z3.Implies(run.ok, run.end == dlen)))
        return out, [dlen >= 0]

    return _z3_check("z3:svb-decode", f"decode_with reads only data[0..len] and all of it, accepting exactly len == data_len; n in 0..={max_n}", claims)


def _wide(x: Any) -> Any:
    """``x`` zero-extended to 128 bits: sums and small multiples of it cannot wrap there."""
    return z3.ZeroExt(128 - x.size(), x)


def check_z3_payload_loop_bounds() -> Check:
    """The payload reader's argument as an arithmetic lemma over 32- and 64-bit usize
    ranges: a count that passes ``v > (left / min_bytes) as u64`` satisfies
    ``v * min_bytes <= left <= len``, so every loop runs at most ``len`` times (points:
    ``len / 8``), and none of the reader's sums reaches ``2^w`` (would wrap)."""

    def claims() -> tuple[list[tuple[str, Any]], list[Any]]:
        out: list[tuple[str, Any]] = []
        pre: list[Any] = []
        for w in (32, 64):
            buflen, pos, v, clen, dlen = z3.Ints(f"len{w} pos{w} v{w} clen{w} dlen{w}")
            pre += [pos >= 0, pos <= buflen, buflen < 2**w, v >= 0, v < 2**64, clen >= 0, clen < 2**w, dlen >= 0, dlen < 2**w]
            left = buflen - pos  # `self.buf.len() - self.pos`: pos <= len, so no wrap

            def accepted(min_bytes: int, left: Any = left, v: Any = v) -> Any:
                # read_count_of: `if v > (self.left() / min_bytes) as u64 { return Err(CountTooLarge) }`
                return z3.Not(v > left / min_bytes)

            for m in (1, 3, 8):
                out.append((f"{w}-bit: a count passing the check for {m}-byte items fits the bytes left", z3.Implies(accepted(m), v * m <= left)))
                out.append((f"{w}-bit: {m}-byte item count <= input length", z3.Implies(accepted(m), v <= buflen)))
                out.append((f"{w}-bit: {m}-byte item count `as usize` is exact", z3.Implies(accepted(m), v < 2**w)))
            # read_strings: &buf[pos..pos + len] after len passed the check for 1-byte items.
            out.append((f"{w}-bit: pos + len <= buf.len() (no wrap)", z3.Implies(accepted(1), pos + v <= buflen)))
            # next_series / read_timestamps with n points (checked for 8-byte items), deltas = n - 1.
            n_ok = z3.And(accepted(8), v >= 1)
            out.append((f"{w}-bit: 8 * npoints does not wrap", z3.Implies(accepted(8), 8 * v < 2**w)))
            out.append((f"{w}-bit: control_len(deltas) does not wrap", z3.Implies(n_ok, (v - 1) + 3 < 2**w)))
            out.append((f"{w}-bit: data_len <= 4 * deltas does not wrap", z3.Implies(n_ok, 4 * (v - 1) < 2**w)))
            out.append((f"{w}-bit: deltas < input length / 8", z3.Implies(n_ok, 8 * (v - 1) < buflen)))
            # The StreamVByte slices, after `left < clen` and `left - clen < dlen` were both false.
            fits = z3.And(left >= clen, left - clen >= dlen)
            out.append((f"{w}-bit: pos + clen + dlen <= buf.len() (no wrap)", z3.Implies(fits, pos + clen + dlen <= buflen)))
        return out, pre

    return _z3_check(
        "z3:payload-loop-bounds",
        "each count checked against bytes left bounds its loop by the input length; no usize sum wraps (32/64-bit)",
        claims,
        "proved as an arithmetic lemma about the reader's checks (a model, not the shipped code)",
    )


# --- exhaustive checks against the compiled codec ----------------------------------------


class Probe:
    """The compiled ``codec-probe`` module (the shipped codec, built for wasm32)."""

    def __init__(self, wasm: bytes) -> None:
        import wasmtime

        engine = wasmtime.Engine()
        self.store = wasmtime.Store(engine)
        inst = wasmtime.Instance(self.store, wasmtime.Module(engine, wasm), [])
        self.ex = inst.exports(self.store)
        self.memory: Any = self.ex["memory"]
        self._buf = 0
        self._cap = 0

    def _fn(self, name: str) -> Any:
        return self.ex[name]

    def call(self, export: str, payload: bytes) -> int:
        """Writes ``payload`` into guest memory and calls ``export(ptr, len)``."""
        if len(payload) > self._cap:
            self._cap = max(len(payload), 1 << 16)
            self._buf = self._fn("probe_alloc")(self.store, self._cap)
        self.memory.write(self.store, payload, self._buf)
        return int(self._fn(export)(self.store, self._buf, len(payload)))

    def result(self, n: int) -> bytes:
        start = int(self._fn("probe_result_ptr")(self.store))
        return bytes(self.memory.read(self.store, start, start + n))

    def batch(self, export: str, payload: bytes) -> bytes:
        n = self.call(export, payload)
        if n < 0:
            raise AssertionError(f"{export} rejected its input framing")
        return self.result(n)

    def roundtrip(self, payload: bytes) -> int | bytes:
        """``probe_roundtrip``: the re-encoded payload, or the error code."""
        n = self.call("probe_roundtrip", payload)
        return -n if n < 0 else self.result(n)


def _varint_inputs(seed: int = 20_240_601, n_random: int = 3000) -> list[tuple[bytes, int, int]]:
    """(buf, start, limit): every 1-byte buffer at starts 0..2, every 2-byte buffer, the
    10-/11-byte edges, and a seeded sample of longer buffers (mostly continuation bytes)."""
    rng = random.Random(seed)
    out: list[tuple[bytes, int, int]] = [(b"", 0, 0), (b"", 1, 0)]
    out += [(bytes([b]), s, (b * 3) % 200) for b in range(256) for s in (0, 1, 2)]
    out += [(bytes([a, b]), 0, (a * 131 + b * 7) % 20_000) for a in range(256) for b in range(256)]
    for prefix in (b"\xff" * 9, b"\x80" * 9, b"\x81" * 9):
        out += [(prefix + bytes([last]), 0, U64 >> 32) for last in range(256)]
        out += [(b"\x00" + prefix + bytes([last]), 1, 2**31) for last in (0, 1, 2, 0x7F, 0x80, 0xFF)]
    out += [(b"\x80" * 10 + b"\x00", 0, 5), (b"\xff" * 10 + b"\x01", 0, 5), (b"\xff" * 12, 3, 5)]
    for _ in range(n_random):
        ln = rng.randint(3, 12)
        buf = bytes(rng.randrange(0x80, 0x100) if rng.random() < 0.75 else rng.randrange(0, 0x100) for _ in range(ln))
        out.append((buf, rng.randint(0, ln), rng.choice((0, 1, 127, 128, 2**14, 2**32 - 1, rng.randrange(0, 2**32)))))
    return out


def _encode_varint_records(inputs: Sequence[tuple[bytes, int, int]]) -> bytes:
    return b"".join(struct.pack("<BBI", len(buf), start, limit) + buf for buf, start, limit in inputs)


def _decode_outcome(raw: bytes, off: int) -> tuple[int, int, int, int]:
    code, at, pos, _, value = struct.unpack_from("<IIIIQ", raw, off)
    return code, at, pos, value


def _chunks(xs: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(xs), size):
        yield xs[i : i + size]


def exhaustive_varint(probe: Probe, inputs: Sequence[tuple[bytes, int, int]] | None = None, *, read_uvarint: VarintModel = model_read_uvarint) -> str | None:
    """None when the compiled ``read_uvarint``/``read_count`` agree with the model on every input."""
    inputs = _varint_inputs() if inputs is None else inputs
    for chunk in _chunks(inputs, 8192):
        raw = probe.batch("probe_uvarint_batch", _encode_varint_records(chunk))
        if len(raw) != 48 * len(chunk):
            return f"probe returned {len(raw)} bytes for {len(chunk)} records"
        for k, (buf, start, limit) in enumerate(chunk):
            for j, lim in enumerate((None, limit)):
                got = _decode_outcome(raw, 48 * k + 24 * j)
                m = run_concrete_varint(buf, start, lim, read_uvarint=read_uvarint)
                want = (m.code, m.at, m.pos, m.value)
                if got != want:
                    fn = "read_uvarint" if lim is None else f"read_count(limit={lim})"
                    return f"{fn} of {buf.hex() or '(empty)'} at {start}: compiled (code, at, pos, value) = {got}, model = {want}"
    return None


def _svb_inputs() -> list[tuple[int, bytes, bytes]]:
    """(n, ctrl, data): every control byte for n in 0..=8 (second control byte varied),
    data of the exact length and one byte short or long, and control slices one too long."""
    o = Concrete()
    out: list[tuple[int, bytes, bytes]] = []
    for n in range(9):
        cl = model_control_len(n)
        ctrls = {bytes([c] * cl) for c in range(256)}
        if cl == 2:
            ctrls |= {bytes([c, 255 - c]) for c in range(256)} | {bytes([c, (c * 37 + 11) & 255]) for c in range(256)}
        for ctrl in sorted(ctrls):
            dl = model_data_len(o, ctrl, n)
            data = bytes((i * 13 + 7) & 255 for i in range(dl + 1))
            out += [(n, ctrl, data[:dl]), (n, ctrl, data), (n, ctrl + b"\x00", data[:dl])]
            if dl:
                out.append((n, ctrl, data[: dl - 1]))
    return out


def exhaustive_svb(probe: Probe, inputs: Sequence[tuple[int, bytes, bytes]] | None = None) -> str | None:
    """None when the compiled ``control_len``/``data_len``/``decode_with`` agree with the model."""
    o = Concrete()
    inputs = _svb_inputs() if inputs is None else inputs
    for chunk in _chunks(inputs, 4096):
        payload = b"".join(struct.pack("<HHH", n, len(c), len(d)) + c + d for n, c, d in chunk)
        raw = probe.batch("probe_svb_batch", payload)
        off = 0
        for n, ctrl, data in chunk:
            cl, dl, ok, delivered = struct.unpack_from("<IIII", raw, off)
            got_values = list(struct.unpack_from(f"<{delivered}I", raw, off + 16))
            off += 16 + 4 * delivered
            where = f"n={n} ctrl={ctrl.hex()} data={len(data)} bytes"
            if cl != model_control_len(n):
                return f"control_len({n}): compiled {cl}, model {model_control_len(n)}"
            want_dl = model_data_len(o, ctrl, n) if len(ctrl) == model_control_len(n) else 0xFFFF_FFFF
            if dl != want_dl:
                return f"data_len, {where}: compiled {dl}, model {want_dl}"

            def data_at(i: int, data: bytes = data) -> int:
                return data[i] if 0 <= i < len(data) else 0

            run = model_decode_with(o, ctrl, data_at, len(data), n)
            bad = [idx for g, idx in run.reads if g and not 0 <= idx < len(data)]
            if bad:
                return f"model read data[{bad[0]}], {where}"
            want_values = list(run.values) if run.ok else []
            if bool(ok) != bool(run.ok) or got_values != want_values:
                return f"decode_with, {where}: compiled ({bool(ok)}, {got_values}), model ({bool(run.ok)}, {want_values})"
        if off != len(raw):
            return f"probe returned {len(raw)} bytes, parsed {off}"
    return None


def _uvarint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


# Where each count sits in a payload and the minimum bytes per item the reader assumes.
_COUNT_SITES = (
    ("strings", bytes([1, 0]), 1),
    ("series", bytes([1, 0, 0]), 3),
    ("tags", bytes([1, 0, 1, 1]) + b"m" + bytes([1, 0]), 1),
    ("points", bytes([1, 0, 1, 1]) + b"m" + bytes([1, 0, 0]), 8),
)


def exhaustive_payload_counts(probe: Probe, max_count: int = 40, max_left: int = 24) -> str | None:
    """Every count 0..=max_count (and huge ones) before every 0..=max_left bytes, at each
    count of the payload: the compiled reader rejects with ``count_too_large`` exactly when
    ``count > bytes_left // min_bytes`` (what bounds its loops), for the same reason as
    ``actors/payload.py``."""
    from actors.errors import PayloadError
    from actors.payload import REJECT_REASONS, decode

    counts = [*range(max_count + 1), 2**32 - 1, 2**32, 2**63, U64]
    for site, prefix, min_bytes in _COUNT_SITES:
        reached = 0
        for c in counts:
            for left in range(max_left + 1):
                payload = prefix + _uvarint(c) + bytes(left)
                got = probe.roundtrip(payload)
                got_reason = REJECT_REASONS.get(got, str(got)) if isinstance(got, int) else "ok"
                py_reason, py_offset = "ok", len(payload)
                try:
                    decode(payload)
                except PayloadError as e:
                    py_reason, py_offset = e.reason, e.offset if e.offset is not None else -1
                if got_reason != py_reason:
                    return f"{site} count {c} before {left} bytes: compiled {got_reason}, python {py_reason}"
                if py_offset < len(prefix):
                    continue  # an earlier field (e.g. the series count for a short tail) already failed
                reached += 1
                rejected_here = py_reason == "count_too_large" and py_offset == len(prefix)
                if rejected_here != (c > left // min_bytes):
                    rule = c > left // min_bytes
                    return f"{site} count {c} before {left} bytes: {got_reason} at {py_offset}, but count > bytes_left // {min_bytes} is {rule}"
        if reached == 0:
            return f"no input reached the {site} count"
    return None


# --- sync: the Verus copy's executable bodies equal the shipped functions ----------------

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<comment>//[^\n]*)
      | (?P<str>b?"(?:\\.|[^"\\])*")
      | (?P<char>b?'(?:\\.|[^'\\])')
      | (?P<lifetime>'[A-Za-z_][A-Za-z0-9_]*)
      | (?P<num>\d[0-9_]*(?:\.\d[0-9_]*)?[A-Za-z0-9_]*)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct><<=|>>=|\.\.=|\.\.\.|::|->|=>|==|!=|<=|>=|&&|\|\||\+=|-=|\*=|/=|%=|\^=|&=|\|=|<<|>>|\.\.|[^\sA-Za-z0-9_])""",
    re.VERBOSE,
)
_SPEC_CLAUSES = {"requires", "ensures", "recommends", "decreases", "returns", "opens_invariants", "no_unwind", "invariant", "invariant_except_break"}
_CHEATS = {"assume", "admit", "external_body", "external", "assume_specification"}


@dataclass(frozen=True)
class Tok:
    text: str
    line: int


def tokenize(src: str) -> list[Tok]:
    """Rust (and Verus) tokens without whitespace and comments (nested block comments too)."""
    toks: list[Tok] = []
    i, line = 0, 1
    while i < len(src):
        if src.startswith("/*", i):
            depth, j = 0, i
            while j < len(src):
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                    if depth == 0:
                        break
                else:
                    j += 1
            line += src.count("\n", i, j)
            i = j
            continue
        m = _TOKEN.match(src, i)
        if m is None:  # pragma: no cover - the last alternative matches any character
            raise ValueError(f"cannot tokenize at line {line}")
        if m.lastgroup not in ("ws", "comment"):
            toks.append(Tok(m.group(), line))
        line += m.group().count("\n")
        i = m.end()
    return toks


def _skip_balanced(toks: Sequence[Tok], i: int) -> int:
    """Index after the bracket group opening at ``toks[i]``."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[toks[i].text]]
    i += 1
    while stack:
        t = toks[i].text
        if t in pairs:
            stack.append(pairs[t])
        elif t == stack[-1]:
            stack.pop()
        i += 1
    return i


def _skip_to_block(toks: Sequence[Tok], i: int) -> int:
    """Index of the next ``{`` outside parentheses and brackets (where a spec clause ends)."""
    while toks[i].text != "{":
        i = _skip_balanced(toks, i) if toks[i].text in "([" else i + 1
    return i


def _strip_verus(toks: Sequence[Tok]) -> list[str]:
    """Token texts with attributes and Verus-only text removed (a no-op on plain Rust)."""
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i].text
        nxt = toks[i + 1].text if i + 1 < len(toks) else ""
        if t == "#" and nxt in ("[", "!"):
            i = _skip_balanced(toks, i + (1 if nxt == "[" else 2))
        elif t == "proof" and nxt == "{":
            i = _skip_balanced(toks, i + 1)
        elif t in ("assert", "assume") and nxt == "(":
            i = _skip_balanced(toks, i + 1)
            if i < len(toks) and toks[i].text == "by":
                i += 1
                if toks[i].text == "(":
                    i = _skip_balanced(toks, i)
            if i < len(toks) and toks[i].text == "requires":
                while toks[i].text != ";":
                    i = _skip_balanced(toks, i) if toks[i].text in "([{" else i + 1
            if i < len(toks) and toks[i].text == "{":
                i = _skip_balanced(toks, i)
            if i < len(toks) and toks[i].text == ";":
                i += 1
        elif t == "let" and nxt in ("ghost", "tracked"):
            while toks[i].text != ";":
                i = _skip_balanced(toks, i) if toks[i].text in "([{" else i + 1
            i += 1
        elif t in _SPEC_CLAUSES:
            i = _skip_to_block(toks, i)
        elif t == "in" and i + 2 < len(toks) and re.fullmatch(r"[A-Za-z_]\w*", nxt) and toks[i + 2].text == ":":
            out.append("in")  # `for x in iter: e` names the ghost iterator
            i += 3
        elif t == "->" and nxt == "(" and i + 3 < len(toks) and re.fullmatch(r"[A-Za-z_]\w*", toks[i + 2].text) and toks[i + 3].text == ":":
            end = _skip_balanced(toks, i + 1)  # `-> (r: T)` names the return value
            out.append("->")
            out += _strip_verus(toks[i + 4 : end - 1])
            i = end
        else:
            out.append(t)
            i += 1
    return out


def _function(toks: Sequence[Tok], name: str) -> tuple[int, int] | None:
    """(start, end) token span of ``fn name ... { body }``; None when absent; ValueError when ambiguous."""
    starts = [i for i in range(len(toks) - 1) if toks[i].text == "fn" and toks[i + 1].text == name]
    if len(starts) > 1:
        raise ValueError(f"{len(starts)} functions named {name}")
    if not starts:
        return None
    body = _skip_to_block(toks, starts[0])
    return starts[0], _skip_balanced(toks, body)


@dataclass(frozen=True)
class SyncMarker:
    target: str
    """``src/<file>.rs::<fn>``"""
    line: int
    rewrites: tuple[tuple[str, str], ...]


def sync_markers(src: str) -> list[SyncMarker]:
    """``// sync: src/x.rs::f`` lines, each with the ``sync-rewrite-from``/``-to`` pairs after it."""
    markers: list[SyncMarker] = []
    pending: list[tuple[str, str]] = []
    current: tuple[str, int] | None = None
    frm: str | None = None

    def close() -> None:
        if current is not None:
            markers.append(SyncMarker(current[0], current[1], tuple(pending)))

    for n, raw in enumerate(src.splitlines(), 1):
        line = raw.strip()
        if line.startswith("// sync:"):
            close()
            current, pending, frm = (line.removeprefix("// sync:").strip(), n), [], None
        elif line.startswith("// sync-rewrite-from:"):
            frm = line.removeprefix("// sync-rewrite-from:").strip()
        elif line.startswith("// sync-rewrite-to:"):
            if frm is None:
                raise ValueError(f"line {n}: sync-rewrite-to without sync-rewrite-from")
            pending.append((frm, line.removeprefix("// sync-rewrite-to:").strip()))
            frm = None
    close()
    return markers


def _replace_once(seq: list[str], old: list[str], new: list[str]) -> list[str] | None:
    hits = [i for i in range(len(seq) - len(old) + 1) if seq[i : i + len(old)] == old] if old else []
    if len(hits) != 1:
        return None
    return seq[: hits[0]] + new + seq[hits[0] + len(old) :]


def _first_difference(a: Sequence[str], b: Sequence[str]) -> str:
    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    lo = max(0, i - 6)
    return f"shipped `{' '.join(a[lo : i + 6])}` vs verus `{' '.join(b[lo : i + 6])}`"


def compare_sync(codec_dir: Path, verus_dir: Path) -> tuple[list[str], list[str]]:
    """(problems, functions compared) for every ``// sync:`` marker in ``verus_dir``."""
    problems: list[str] = []
    compared: list[str] = []
    shipped_cache: dict[str, list[Tok]] = {}
    for vfile in sorted(verus_dir.glob("*.rs")):
        vsrc = vfile.read_text()
        vtoks = tokenize(vsrc)
        for m in sync_markers(vsrc):
            file, _, name = m.target.partition("::")
            where = f"{m.target} ({vfile.name}:{m.line})"
            nxt = next((i for i, t in enumerate(vtoks) if t.line > m.line and t.text == "fn"), None)
            if nxt is None or nxt + 1 >= len(vtoks) or vtoks[nxt + 1].text != name:
                problems.append(f"{where}: the marker is not followed by `fn {name}`")
                continue
            if not (codec_dir / file).is_file():
                problems.append(f"{where}: no shipped file {file}")
                continue
            stoks = shipped_cache.setdefault(file, tokenize((codec_dir / file).read_text()))
            try:
                span = _function(stoks, name)
            except ValueError as e:
                problems.append(f"{where}: shipped {e}")
                continue
            if span is None:
                problems.append(f"{where}: no `fn {name}` in shipped {file}")
                continue
            vend = _skip_balanced(vtoks, _skip_to_block(vtoks, nxt))
            head = nxt  # the attributes and qualifiers before `fn` count for the cheat scan
            while head > 0 and vtoks[head - 1].text not in ("}", ";", "{"):
                head -= 1
            vraw = [t.text for t in vtoks[head:vend]]
            cheats = sorted(_CHEATS.intersection(vraw))
            if cheats:
                problems.append(f"{where}: the verus copy uses {', '.join(cheats)}")
                continue
            shipped = _strip_verus(stoks[span[0] : span[1]])
            for k, (frm, to) in enumerate(m.rewrites, 1):
                rewritten = _replace_once(shipped, [t.text for t in tokenize(frm)], [t.text for t in tokenize(to)])
                if rewritten is None:
                    problems.append(f"{where}: sync-rewrite #{k} `{frm}` does not occur exactly once in the shipped function")
                    break
                shipped = rewritten
            else:
                copy = _strip_verus(vtoks[nxt:vend])
                if copy != shipped:
                    problems.append(f"{where}: bodies differ: {_first_difference(shipped, copy)}")
                else:
                    compared.append(m.target)
    seen = {m.target for f in verus_dir.glob("*.rs") for m in sync_markers(f.read_text())}
    problems += [f"{t}: no verus copy (no `// sync: {t}` marker)" for t in REQUIRED_SYNC if t not in seen]
    return problems, compared


def check_sync(codec_dir: Path = CODEC_DIR, verus_dir: Path = VERUS_DIR) -> Check:
    t0 = time.monotonic()
    try:
        problems, compared = compare_sync(codec_dir, verus_dir)
    except (OSError, ValueError, IndexError) as e:
        problems, compared = [f"cannot compare: {type(e).__name__}: {e}"], []
    py = f"python {sys.version.split()[0]}"
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return Check("sync:verus-copy", "sync", "failed", problems[0] + more, time.monotonic() - t0, py)
    reason = (
        f"the executable bodies of {len(compared)} verus functions equal the shipped codec's token for token"
        " (specs and proof code stripped, declared rewrites applied)"
    )
    return Check("sync:verus-copy", "sync", "passed", reason, time.monotonic() - t0, py)


# --- verus -------------------------------------------------------------------------------


def _verus_version(verus: str) -> str:
    try:
        out = subprocess.run([verus, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "verus (version unknown)"
    first = out.splitlines()[0] if out else "version unknown"
    return first if first.lower().startswith("verus") else f"verus {first}"


def _one_line(text: str, limit: int = 400) -> str:
    flat = " | ".join(x.strip() for x in text.strip().splitlines() if x.strip())
    return flat if len(flat) <= limit else "..." + flat[-limit:]


def check_verus(verus_dir: Path = VERUS_DIR, verus: str | None = None) -> list[Check]:
    """One check per module of the Verus crate; ``not-run`` without a ``verus`` on PATH."""
    verus = verus or shutil.which("verus")
    if verus is None:
        return [Check(f"verus:{m}", "verus", "not-run", "verus not on PATH", 0.0, "verus (not installed)") for m in VERUS_MODULES]
    tool = _verus_version(verus)
    checks: list[Check] = []
    for m in VERUS_MODULES:
        t0 = time.monotonic()
        cmd = [verus, str(verus_dir / VERUS_ROOT), "--verify-module", m]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=VERUS_TIMEOUT_S, cwd=verus_dir)
        except subprocess.TimeoutExpired:
            checks.append(Check(f"verus:{m}", "verus", "failed", f"verus timed out after {VERUS_TIMEOUT_S:.0f} s", time.monotonic() - t0, tool))
            continue
        except OSError as e:
            checks.append(Check(f"verus:{m}", "verus", "not-run", f"cannot run verus: {e}", time.monotonic() - t0, tool))
            continue
        out = proc.stdout + proc.stderr
        summary = next((x.strip() for x in reversed(out.splitlines()) if "verification results" in x), "")
        if proc.returncode == 0:
            reason = f"verified module {m} of {VERUS_ROOT}" + (f" ({summary})" if summary else "")
            checks.append(Check(f"verus:{m}", "verus", "passed", reason, time.monotonic() - t0, tool))
        else:
            checks.append(Check(f"verus:{m}", "verus", "failed", f"exit {proc.returncode}: {_one_line(out)}", time.monotonic() - t0, tool))
    return checks


# --- the stage ---------------------------------------------------------------------------


def _hash_tree(h: Any, root: Path, label: str) -> None:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not {"target", ".git", "__pycache__"}.intersection(rel.parts):
            h.update(f"{label}/{rel.as_posix()}".encode() + b"\0" + path.read_bytes() + b"\0")


def codec_digest(codec_dir: Path = CODEC_DIR, verus_dir: Path = VERUS_DIR) -> str:
    """SHA-256 of the codec sources and the Verus sources (paths and contents)."""
    h = hashlib.sha256()
    _hash_tree(h, codec_dir, "codec")
    _hash_tree(h, verus_dir, "verus")
    return h.hexdigest()


def _probe_workspace(codec_dir: Path) -> Path | None:
    ws = codec_dir.resolve().parent
    return ws if (ws / "Cargo.toml").is_file() and (ws / "codec-probe" / "Cargo.toml").is_file() else None


def _tool_versions(codec_dir: Path) -> dict[str, str]:
    verus = shutil.which("verus")
    try:
        rustc = toolchain().version
    except BuildFailed:
        rustc = "absent"
    ws = _probe_workspace(codec_dir)
    probe = "absent"
    if ws is not None:
        h = hashlib.sha256()
        for part in ("codec-probe", "abi"):
            if (ws / part).is_dir():
                _hash_tree(h, ws / part, part)
        for f in ("Cargo.toml", "Cargo.lock"):
            if (ws / f).is_file():
                h.update((ws / f).read_bytes())
        probe = h.hexdigest()
    return {
        "z3": z3.get_version_string(),
        "verus": _verus_version(verus) if verus else "absent",
        "rustc": rustc,
        "wasmtime": importlib.metadata.version("wasmtime"),
        "python": sys.version.split()[0],
        "harness": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "probe_sources": probe,
    }


def _exhaustive_checks(codec_dir: Path) -> tuple[list[Check], bool]:
    """The exhaustive checks, and whether their outcome may be cached (it may not when
    the probe could not be built: that says nothing about the codec)."""
    names = ("exhaustive:varint", "exhaustive:svb-control-bytes", "exhaustive:payload-counts")
    ws = _probe_workspace(codec_dir)
    if ws is None:
        return [Check(n, "exhaustive", "not-run", f"no codec-probe workspace beside {codec_dir}", 0.0, "wasmtime") for n in names], False
    t0 = time.monotonic()
    try:
        built = build(workspace=ws, package="codec-probe")
        probe = Probe(built.wasm)
    except BuildFailed as e:
        reason = f"codec-probe did not build: {_one_line(str(e), 300)}"
        return [Check(n, "exhaustive", "not-run", reason, time.monotonic() - t0, "wasmtime") for n in names], False
    tool = f"codec-probe.wasm ({built.toolchain.version}), wasmtime {importlib.metadata.version('wasmtime')}"
    what: dict[str, tuple[Callable[[Probe], str | None], str]] = {
        "exhaustive:varint": (
            exhaustive_varint,
            "compiled read_uvarint/read_count equal the model on every 1- and 2-byte input, the 10/11-byte edges and 3000 longer ones",
        ),
        "exhaustive:svb-control-bytes": (
            exhaustive_svb,
            "compiled control_len/data_len/decode_with equal the model for all 256 control bytes, n in 0..=8, exact and wrong data lengths",
        ),
        "exhaustive:payload-counts": (
            exhaustive_payload_counts,
            "the compiled reader rejects a count exactly when it exceeds bytes_left // min_bytes, at all four counts, as actors/payload.py does",
        ),
    }
    checks: list[Check] = []
    for name, (fn, meaning) in what.items():
        try:
            failure = fn(probe)
        except Exception as e:  # a wasm trap is an out-of-bounds access or a panic in the codec
            failure = f"{type(e).__name__}: {_one_line(str(e), 300)}"
        status = "failed" if failure else "passed"
        t1 = time.monotonic()
        checks.append(Check(name, "exhaustive", status, failure or meaning, t1 - t0, tool))  # the first includes loading the probe
        t0 = t1
    return checks, True


def _load_cache(path: Path, key: str) -> list[Check] | None:
    try:
        doc = json.loads(path.read_text())
        if doc.get("key") != key:
            return None
        when = doc.get("created", "?")
        return [replace(Check(**c), reason=f"{c['reason']} [cached {when}]") for c in doc["checks"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_codec_checks(codec_dir: Path = CODEC_DIR, verus_dir: Path = VERUS_DIR, cache: Path | None = None) -> list[Check]:
    """Runs every check of the codec (see the module docstring); cached by
    :func:`codec_digest` and the tool versions under ``<cache>/proofs/``."""
    digest = codec_digest(codec_dir, verus_dir)
    tools = _tool_versions(codec_dir)
    key = hashlib.sha256(json.dumps(tools, sort_keys=True).encode()).hexdigest()
    path = (cache if cache is not None else cache_dir()) / "proofs" / f"{digest}.json"
    cached = _load_cache(path, key)
    if cached is not None:
        return cached
    checks = check_verus(verus_dir)
    checks += [check_z3_varint(), check_z3_read_count(), check_z3_zigzag(), check_z3_svb_control(), check_z3_svb_data_len(), check_z3_svb_decode()]
    checks.append(check_z3_payload_loop_bounds())
    exhaustive, cacheable = _exhaustive_checks(codec_dir)
    checks += exhaustive
    checks.append(check_sync(codec_dir, verus_dir))
    transient = any("internal error" in c.reason or "timed out" in c.reason or c.reason.startswith("cannot run verus") for c in checks)
    if cacheable and not transient:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"key": key, "tools": tools, "created": datetime.now(UTC).isoformat(timespec="seconds"), "checks": [asdict(c) for c in checks]}
        tmp = path.with_suffix(f".tmp{os.getpid()}-{time.monotonic_ns()}")  # concurrent writers each write their own file
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(path)
    return checks
