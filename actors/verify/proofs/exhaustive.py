"""The exhaustive checks: the compiled, shipped codec (through :class:`.probe.Probe`) against the model."""

from __future__ import annotations

import importlib.metadata
import random
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from actors.errors import BuildFailed
from actors.kernel.build import build
from actors.verify.proofs.check import Check, one_line
from actors.verify.proofs.model import U64, Concrete, VarintModel, model_control_len, model_data_len, model_decode_with, model_read_uvarint, run_concrete_varint
from actors.verify.proofs.probe import Probe, probe_workspace


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


def exhaustive_checks(codec_dir: Path) -> tuple[list[Check], bool]:
    """The exhaustive checks, and whether their outcome may be cached (it may not when
    the probe could not be built: that says nothing about the codec)."""
    names = ("exhaustive:varint", "exhaustive:svb-control-bytes", "exhaustive:payload-counts")
    ws = probe_workspace(codec_dir)
    if ws is None:
        return [Check(n, "exhaustive", "not-run", f"no codec-probe workspace beside {codec_dir}", 0.0, "wasmtime") for n in names], False
    t0 = time.monotonic()
    try:
        built = build(workspace=ws, package="codec-probe")
        probe = Probe(built.wasm)
    except BuildFailed as e:
        reason = f"codec-probe did not build: {one_line(str(e), 300)}"
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
            failure = f"{type(e).__name__}: {one_line(str(e), 300)}"
        status = "failed" if failure else "passed"
        t1 = time.monotonic()
        checks.append(Check(name, "exhaustive", status, failure or meaning, t1 - t0, tool))  # the first includes loading the probe
        t0 = t1
    return checks, True
