"""Messages and their two encodings: the binary payload (``guest-rust/codec/PAYLOAD.md``)
that shards ingest and kernels decode, and JSONL, the human format. Also stream files.

The encoder is bit-identical to what the Rust codec expects and the decoder mirrors
the Rust reader check for check, so both reject the same bytes for the same reason.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.errors import PayloadError, StreamError

PAYLOAD_VERSION = 1
TS_ENC_SVB = 0
TS_ENC_VARINT = 1
MAX_ABS_TS = 1 << 62
STREAM_MAGIC = b"EVOAGGS1"
_U64 = (1 << 64) - 1

# Error codes of guest-rust/codec/src/error.rs, by name (the kernel reports codes).
REJECT_REASONS: dict[int, str] = {
    1: "empty",
    2: "truncated",
    3: "bad_version",
    4: "bad_varint",
    5: "count_too_large",
    6: "id_out_of_range",
    7: "wrong_org",
    8: "bad_utf8",
    9: "trailing_bytes",
    10: "bad_ts_encoding",
    11: "ts_out_of_range",
}


@dataclass(frozen=True)
class Series:
    """One series: a metric, its tags (``key:value`` or bare) and its points ``(ts, value)``."""

    metric: str
    tags: tuple[str, ...]
    points: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class Message:
    """One tenant's payload."""

    org: int
    series: tuple[Series, ...]

    @property
    def npoints(self) -> int:
        return sum(len(s.points) for s in self.series)


_U32 = struct.Struct("<I")


# --- primitives ---------------------------------------------------------------------------


def write_uvarint(out: bytearray, v: int) -> None:
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def zigzag(v: int) -> int:
    return ((v << 1) ^ (v >> 63)) & _U64


def unzigzag(v: int) -> int:
    return (v >> 1) ^ -(v & 1)


def _wrap64(v: int) -> int:
    v &= _U64
    return v - (1 << 64) if v >= 1 << 63 else v


def svb_encode(out: bytearray, values: Sequence[int]) -> None:
    """StreamVByte: control bytes (2 bits a value: length-1), then little-endian data."""
    ctrl = bytearray((len(values) + 3) // 4)
    data = bytearray()
    for i, v in enumerate(values):
        n = 1 if v < 1 << 8 else 2 if v < 1 << 16 else 3 if v < 1 << 24 else 4
        ctrl[i >> 2] |= (n - 1) << (2 * (i & 3))
        data += v.to_bytes(n, "little")
    out += ctrl
    out += data


# --- binary payload -------------------------------------------------------------------------


def encode(msg: Message) -> bytes:
    """The binary payload of ``msg``. Raises :class:`PayloadError` for unencodable input."""
    if not 0 <= msg.org <= _U64:
        raise PayloadError("bad_org", f"org {msg.org} does not fit in 64 bits")
    index: dict[str, int] = {}
    for s in msg.series:
        index.setdefault(s.metric, len(index))
        for t in s.tags:
            index.setdefault(t, len(index))
    out = bytearray([PAYLOAD_VERSION])
    write_uvarint(out, msg.org)
    write_uvarint(out, len(index))
    for text in index:
        try:
            b = text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise PayloadError("bad_utf8", f"string {text!r} cannot be UTF-8 encoded: {e.reason}") from None
        write_uvarint(out, len(b))
        out += b
    write_uvarint(out, len(msg.series))
    for s in msg.series:
        write_uvarint(out, index[s.metric])
        write_uvarint(out, len(s.tags))
        for t in s.tags:
            write_uvarint(out, index[t])
        n = len(s.points)
        write_uvarint(out, n)
        if n == 0:
            continue
        stamps = [p[0] for p in s.points]
        for stamp in stamps:
            if not -(1 << 63) <= stamp < 1 << 63:
                raise PayloadError("ts_out_of_range", f"timestamp {stamp} does not fit in 64 bits")
        write_uvarint(out, zigzag(stamps[0]))
        deltas = [_wrap64(b - a) for a, b in itertools.pairwise(stamps)]
        if all(-(1 << 31) <= d < 1 << 31 for d in deltas):
            out.append(TS_ENC_SVB)
            svb_encode(out, [((d << 1) ^ (d >> 31)) & 0xFFFFFFFF for d in deltas])
        else:
            out.append(TS_ENC_VARINT)
            for d in deltas:
                write_uvarint(out, zigzag(d))
        out += struct.pack(f"<{n}d", *(p[1] for p in s.points))
    return bytes(out)


class _Reader:
    """Mirror of guest-rust/codec/src/payload.rs: same checks, same order, same codes."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def fail(self, reason: str, offset: int) -> PayloadError:
        return PayloadError(reason, offset=offset)

    def left(self) -> int:
        return len(self.buf) - self.pos

    def uvarint(self) -> int:
        start = self.pos
        result = 0
        shift = 0
        buf = self.buf
        while True:
            if self.pos >= len(buf):
                raise self.fail("truncated", self.pos)
            byte = buf[self.pos]
            self.pos += 1
            if shift == 63:
                if byte > 1:
                    raise self.fail("bad_varint", start)
                return result | (byte << 63)
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    def count(self, min_bytes: int) -> int:
        at = self.pos
        v = self.uvarint()
        if v > self.left() // min_bytes:
            raise self.fail("count_too_large", at)
        return v

    def ident(self, nstrings: int) -> int:
        at = self.pos
        v = self.uvarint()
        if v >= nstrings:
            raise self.fail("id_out_of_range", at)
        return v


def _opened(buf: bytes) -> _Reader:
    """A reader past the version byte, after the checks every walk of a payload starts with."""
    if not buf:
        raise PayloadError("empty", offset=0)
    if buf[0] != PAYLOAD_VERSION:
        raise PayloadError("bad_version", f"version byte {buf[0]}", offset=0)
    r = _Reader(buf)
    r.pos = 1
    return r


def decode(buf: bytes, expect_org: int | None = None) -> Message:
    """Decodes one payload; raises :class:`PayloadError` with the kernel's reason."""
    r = _opened(buf)
    org = r.uvarint()
    if expect_org is not None and org != expect_org:
        raise PayloadError("wrong_org", f"org {org}, expected {expect_org}", offset=1)
    strings: list[str] = []
    for _ in range(r.count(1)):
        at = r.pos
        n = r.count(1)
        try:
            strings.append(buf[r.pos : r.pos + n].decode("utf-8"))
        except UnicodeDecodeError:
            raise r.fail("bad_utf8", at) from None
        r.pos += n
    series = []
    for _ in range(r.count(3)):
        metric = strings[r.ident(len(strings))]
        tags = tuple(strings[r.ident(len(strings))] for _ in range(r.count(1)))
        n = r.count(8)
        ts: list[int] = []
        if n:
            ts = _read_timestamps(r, n)
        if r.left() < 8 * n:
            raise r.fail("truncated", r.pos)
        values = struct.unpack_from(f"<{n}d", buf, r.pos)
        r.pos += 8 * n
        series.append(Series(metric, tags, tuple(zip(ts, values, strict=False))))
    if r.pos != len(buf):
        raise r.fail("trailing_bytes", r.pos)
    return Message(org, tuple(series))


def _read_timestamps(r: _Reader, n: int) -> list[int]:
    at0 = r.pos
    first = unzigzag(r.uvarint())
    if not -MAX_ABS_TS <= first <= MAX_ABS_TS:
        raise r.fail("ts_out_of_range", at0)
    if r.pos >= len(r.buf):
        raise r.fail("truncated", r.pos)
    enc_at = r.pos
    enc = r.buf[r.pos]
    r.pos += 1
    ts = [first]
    cur = first
    deltas = n - 1
    if enc == TS_ENC_SVB:
        clen = (deltas + 3) // 4
        if r.left() < clen:
            raise r.fail("truncated", r.pos)
        ctrl = r.buf[r.pos : r.pos + clen]
        lens = [((ctrl[i >> 2] >> (2 * (i & 3))) & 3) + 1 for i in range(deltas)]
        dlen = sum(lens)
        if r.left() - clen < dlen:
            raise r.fail("truncated", r.pos + clen)
        p = r.pos + clen
        for ln in lens:
            z = int.from_bytes(r.buf[p : p + ln], "little")
            p += ln
            cur = _wrap64(cur + ((z >> 1) ^ -(z & 1)))
            ts.append(cur)
        r.pos = p
    elif enc == TS_ENC_VARINT:
        for _ in range(deltas):
            cur = _wrap64(cur + unzigzag(r.uvarint()))
            ts.append(cur)
    else:
        raise r.fail("bad_ts_encoding", enc_at)
    if any(not -MAX_ABS_TS <= t <= MAX_ABS_TS for t in ts):
        raise r.fail("ts_out_of_range", at0)
    return ts


# --- moving a payload in time -------------------------------------------------------------

# Bytes of StreamVByte data described by one full control byte (four values).
_SVB_CTRL_LEN = bytes(sum(((c >> (2 * k)) & 3) + 1 for k in range(4)) for c in range(256))


def first_timestamps(buf: bytes) -> list[tuple[int, int, int]]:
    """Each series' first timestamp as ``(start, end, value)``: where its svarint lies in
    ``buf`` and what it says. Only what the walk needs is checked (structure, counts);
    raises :class:`PayloadError` when the payload cannot be walked. Deltas are relative,
    so these fields alone place a payload in time (:func:`shift_timestamps`)."""
    r = _opened(buf)
    r.uvarint()
    for _ in range(r.count(1)):
        n = r.count(1)
        r.pos += n
    out: list[tuple[int, int, int]] = []
    for _ in range(r.count(3)):
        r.uvarint()
        for _ in range(r.count(1)):
            r.uvarint()
        n = r.count(8)
        if not n:
            continue
        start = r.pos
        first = unzigzag(r.uvarint())
        out.append((start, r.pos, first))
        if r.pos >= len(buf):
            raise r.fail("truncated", r.pos)
        enc = buf[r.pos]
        r.pos += 1
        deltas = n - 1
        if enc == TS_ENC_SVB:
            full, rest = divmod(deltas, 4)
            ctrl = buf[r.pos : r.pos + full + (1 if rest else 0)]
            dlen = sum(_SVB_CTRL_LEN[c] for c in ctrl[:full])
            if rest:
                dlen += sum(((ctrl[full] >> (2 * k)) & 3) + 1 for k in range(rest))
            r.pos += len(ctrl) + dlen
        elif enc == TS_ENC_VARINT:
            for _ in range(deltas):
                r.uvarint()
        else:
            raise r.fail("bad_ts_encoding", r.pos - 1)
        r.pos += 8 * n
        if r.pos > len(buf):
            raise r.fail("truncated", len(buf))
    return out


def shift_timestamps(buf: bytes, delta: int, fields: list[tuple[int, int, int]] | None = None) -> bytes:
    """``buf`` with every timestamp moved by ``delta`` seconds (``fields``: its
    :func:`first_timestamps`, when known). Everything else is byte for byte the same."""
    if delta == 0:
        return buf
    fields = first_timestamps(buf) if fields is None else fields
    parts: list[bytes] = []
    at = 0
    for start, end, first in fields:
        parts.append(buf[at:start])
        out = bytearray()
        write_uvarint(out, zigzag(first + delta))
        parts.append(bytes(out))
        at = end
    parts.append(buf[at:])
    return b"".join(parts)


# --- JSONL --------------------------------------------------------------------------------


def to_json(msg: Message) -> dict[str, Any]:
    def val(v: float) -> Any:
        # JSON has no NaN/inf; keep them as strings so they survive the round trip.
        return v if math.isfinite(v) else repr(v)

    return {
        "org": msg.org,
        "series": [{"metric": s.metric, "tags": list(s.tags), "points": [[t, val(v)] for t, v in s.points]} for s in msg.series],
    }


_VALUE_WORDS = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}


def _json_value(v: Any) -> float:
    if isinstance(v, str) and v.lower() in _VALUE_WORDS:
        return _VALUE_WORDS[v.lower()]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"value {v!r} is not a number")
    return float(v)  # OverflowError for an int beyond the float range


def from_json(obj: Any, where: str = "message") -> Message:
    """Builds a message from its JSON form; raises :class:`PayloadError` naming what is wrong."""
    try:
        if not isinstance(obj, dict) or set(obj) - {"org", "series"} or "series" not in obj:
            raise ValueError("expected an object with 'org' and 'series'")
        org = obj["org"]
        if isinstance(org, bool) or not isinstance(org, int):
            raise ValueError("org: expected an integer")
        if not isinstance(obj["series"], list):
            raise ValueError("series: expected a list")
        series = []
        for i, s in enumerate(obj["series"]):
            if not isinstance(s, dict) or set(s) - {"metric", "tags", "points"}:
                raise ValueError(f"series[{i}]: expected an object with 'metric', 'tags', 'points'")
            metric, tags, points = s["metric"], s.get("tags", []), s["points"]
            if not isinstance(metric, str) or not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise ValueError(f"series[{i}]: metric must be a string and tags a list of strings")
            if not isinstance(points, list):
                raise ValueError(f"series[{i}]: points: expected a list of [ts, value]")
            pts = []
            for p in points:
                if not isinstance(p, list) or len(p) != 2:
                    raise ValueError(f"series[{i}]: point {p!r} is not [ts, value]")
                t, v = p
                if isinstance(t, bool) or not isinstance(t, int):
                    raise ValueError(f"series[{i}]: timestamp {t!r} is not an integer")
                pts.append((t, _json_value(v)))
            series.append(Series(metric, tuple(tags), tuple(pts)))
        return Message(org, tuple(series))
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise PayloadError("bad_json", f"{where}: {e}") from None


# --- stream files --------------------------------------------------------------------------


def frame(payloads: Iterable[bytes]) -> bytes:
    """Length-prefixed concatenation (u32 LE length, payload): the batch and stream framing.
    (One join: growing a bytearray message by message costs a shard about 1 µs a message.)"""
    parts: list[bytes] = []
    for p in payloads:
        parts.append(_U32.pack(len(p)))
        parts.append(p)
    return b"".join(parts)


def write_stream(path: Path, messages: Iterable[Message]) -> int:
    """Writes ``.bin`` (magic, then framed payloads) or ``.jsonl``; returns the count."""
    if path.suffix not in (".bin", ".jsonl"):
        raise StreamError(f"{path}: expected a .bin or .jsonl file")
    n = 0
    with open(path, "wb") as f:
        if path.suffix == ".jsonl":
            for m in messages:
                f.write(json.dumps(to_json(m), separators=(",", ":")).encode() + b"\n")
                n += 1
        elif path.suffix == ".bin":
            f.write(STREAM_MAGIC)
            for m in messages:
                p = encode(m)
                f.write(struct.pack("<I", len(p)) + p)
                n += 1
    return n


def read_payloads(path: Path) -> Iterator[bytes | PayloadError]:
    """Yields binary payloads from a ``.bin`` or ``.jsonl`` stream file.

    ``.bin`` payloads are yielded as stored (malformed ones included: rejecting them
    is the kernel's job); JSONL lines are validated and encoded, and a line that is
    not a valid message is yielded as its :class:`PayloadError` so the caller can
    count it and go on. A ``.bin`` frame running past the end is a damaged file:
    :class:`StreamError`.
    """
    if path.suffix == ".bin":
        data = path.read_bytes()
        if not data.startswith(STREAM_MAGIC):
            raise StreamError(f"{path}: not an evoagg stream (bad magic)")
        pos = len(STREAM_MAGIC)
        while pos < len(data):
            if pos + 4 > len(data):
                raise StreamError(f"{path}: truncated frame header at byte {pos}")
            (n,) = struct.unpack_from("<I", data, pos)
            if pos + 4 + n > len(data):
                raise StreamError(f"{path}: frame at byte {pos} runs past the end of the file")
            yield data[pos + 4 : pos + 4 + n]
            pos += 4 + n
    elif path.suffix == ".jsonl":
        with open(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield encode(from_json(json.loads(line), f"{path}:{lineno}"))
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    yield PayloadError("bad_json", f"{path}:{lineno}: {e}")
                except PayloadError as e:
                    yield e
    else:
        raise StreamError(f"{path}: expected a .bin or .jsonl file")
