"""Decoder fuzzing: damaged payloads that every kernel must refuse exactly as the shared
reader does (same reason, same byte offset) or accept and aggregate the same way. The
differential stage runs them against the baseline; a kernel with its own message walk
(``actors/evolve/decode_rewrites.py``) is checked by them and by nothing weaker.

Three kinds, all deterministic in the seed:

- every prefix of a few valid payloads (a truncation inside each field);
- targeted damage: each field of a valid payload (``codec/PAYLOAD.md``) set to the values
  at the edges of its check: ids at and past the string count, counts one over what the
  bytes left allow, timestamps at and past ±2^62 (first and later points), varints of 10
  and 11 bytes, encodings other than 0 and 1, UTF-8 broken inside a string, lengths one
  off, a byte left over at the end;
- random damage: bit flips, bytes set to varint edges, continuation bytes inserted.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from actors.payload import write_uvarint, zigzag

Field = tuple[str, int, int, int]
"""(kind, start, end, value): a field of a valid payload, its bytes and what it says."""

_MAX_TS = 1 << 62


def _uvarint_at(buf: bytes, pos: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, pos
        shift += 7


def fields(buf: bytes) -> list[Field]:
    """The fields of a valid payload, front to back (a malformed one raises IndexError)."""
    out: list[Field] = []
    pos = 1

    def var(kind: str) -> int:
        nonlocal pos
        v, end = _uvarint_at(buf, pos)
        out.append((kind, pos, end, v))
        pos = end
        return v

    var("org")
    for _ in range(var("nstrings")):
        n = var("strlen")
        out.append(("string", pos, pos + n, n))
        pos += n
    for _ in range(var("nseries")):
        var("metric")
        for _ in range(var("ntags")):
            var("tag")
        n = var("npoints")
        if n:
            var("ts0")
            enc = buf[pos]
            out.append(("enc", pos, pos + 1, enc))
            pos += 1
            if enc == 0:
                clen = (n - 1 + 3) // 4
                ctrl = buf[pos : pos + clen]
                dlen = sum(((ctrl[i >> 2] >> (2 * (i & 3))) & 3) + 1 for i in range(n - 1))
                out.append(("ctrl", pos, pos + clen, n - 1))
                out.append(("svb_data", pos + clen, pos + clen + dlen, n - 1))
                pos += clen + dlen
            else:
                for _ in range(n - 1):
                    var("delta")
        out.append(("values", pos, pos + 8 * n, n))
        pos += 8 * n
    return out


def _var(v: int) -> bytes:
    out = bytearray()
    write_uvarint(out, v)
    return bytes(out)


def _edges(kind: str, value: int, nstrings: int) -> list[bytes]:
    """Replacements for a field at the edges of its check."""
    ten = bytes([0xFF] * 9 + [0x01])  # 2^64 - 1 in ten bytes: valid, and huge
    long = [ten, bytes([0xFF] * 9 + [0x02]), bytes([0x80] * 10 + [0x00])]  # bad 10th byte; 11 bytes
    if kind in ("metric", "tag"):
        return [_var(nstrings), _var(nstrings - 1 if nstrings else 0), _var(nstrings + 1), ten, long[1]]
    if kind in ("nstrings", "nseries", "ntags", "npoints", "strlen"):
        return [_var(value + 1), _var(max(0, value - 1)), _var(value + 1000), ten, long[2]]
    if kind == "org":
        return [_var(value + 1), long[1], long[2]]
    if kind == "ts0":
        return [_var(zigzag(v)) for v in (_MAX_TS, _MAX_TS + 1, -_MAX_TS, -_MAX_TS - 1, _MAX_TS - 1)] + [long[1]]
    if kind == "delta":
        return [_var(zigzag(_MAX_TS)), _var(zigzag(-_MAX_TS)), long[1], _var(zigzag(-(1 << 63)))]
    if kind == "enc":
        return [bytes([2]), bytes([255]), bytes([1 - value]) if value in (0, 1) else bytes([0])]
    return []


def targeted(buf: bytes, rng: random.Random, per_kind: int = 2) -> list[bytes]:
    """Damage at the edges of each kind of field of ``buf`` (a valid payload)."""
    fs = fields(buf)
    nstrings = next(v for k, _, _, v in fs if k == "nstrings")
    by_kind: dict[str, list[Field]] = {}
    for f in fs:
        by_kind.setdefault(f[0], []).append(f)
    out: list[bytes] = []
    for _, found in sorted(by_kind.items()):
        for k, a, b, v in rng.sample(found, min(per_kind, len(found))):
            for new in _edges(k, v, nstrings):
                out.append(buf[:a] + new + buf[b:])
            if k == "string" and b > a:
                at = rng.randrange(a, b)
                for bad in (b"\xff", b"\xc0", b"\xe2\x82"):
                    out.append(buf[:at] + bad + buf[at + 1 :])
            if k == "ctrl" and b > a:
                out += [buf[:a] + bytes([0xFF]) + buf[a + 1 :], buf[:a] + bytes([0x00]) + buf[a + 1 :]]
            if k == "svb_data" and b > a:
                # Deltas that carry a later timestamp past the range from a first one near it.
                t0 = next((f for f in fs if f[0] == "ts0" and f[2] <= a), None)
                if t0 is not None:
                    near = buf[: t0[1]] + _var(zigzag(_MAX_TS - 1)) + buf[t0[2] : a]
                    out.append(near + bytes([0xFF] * (b - a)) + buf[b:])
            if k == "values" and b > a:
                for bits in (b"\x00\x00\x00\x00\x00\x00\xf8\x7f", b"\x00\x00\x00\x00\x00\x00\xf0\xff"):
                    out.append(buf[:a] + bits + buf[a + 8 :])
    out.append(buf + b"\x00")
    return out


def damaged(base: Sequence[bytes], seed: int = 0, n: int = 240, cut_bytes: int = 1200) -> list[bytes]:
    """Prefixes, targeted and random damage of the valid payloads ``base`` (module docstring)."""
    rng = random.Random(seed + 2)
    base = [p for p in base if len(p) > 4]
    out: list[bytes] = []
    budget = cut_bytes
    for p in sorted(base, key=len, reverse=True):
        if len(p) <= budget // 2 or (not out and len(p) <= budget):
            out += [p[:k] for k in range(len(p))]
            budget -= len(p)
        if budget < 64:
            break
    rich = sorted(base, key=lambda p: len(fields(p)), reverse=True)[:4]
    for p in rich:
        out += targeted(p, rng)
    for _ in range(n):
        d = bytearray(rng.choice(base))
        kind = rng.randrange(4)
        at = rng.randrange(len(d))
        if kind == 0:
            d[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            d[at] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF))
        elif kind == 2:
            d[at:at] = bytes([0x80] * rng.randint(1, 10))
        else:
            del d[at:]
        out.append(bytes(d))
    return out
