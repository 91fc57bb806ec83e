"""The z3 checks: properties of the decoder model (:mod:`.model`) for every input of a shape."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import z3

from actors.verify.proofs.check import Check
from actors.verify.proofs.model import (
    BAD_VARINT,
    OK,
    TRUNCATED,
    Symbolic,
    VarintModel,
    model_control_len,
    model_data_len,
    model_decode_with,
    model_read_count,
    model_read_uvarint,
    model_value_len,
    model_zigzag_decode,
)

Z3_TIMEOUT_MS = 60_000


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
