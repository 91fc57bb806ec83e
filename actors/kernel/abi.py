"""The host side of the kernel ABI (``guest-rust/ABI.md``): what is encoded for the
guest and how its results are decoded. Pure functions over bytes."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from actors.config import TenantConfig
from actors.errors import KernelError
from actors.output import Row
from actors.payload import REJECT_REASONS, write_uvarint
from actors.query import AGGS

ABI_VERSION = 1
CONFIG_VERSION = 1

# name -> (params, results), in wasm value types.
EXPORTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "evoagg_abi_version": ((), ("i32",)),
    "evoagg_alloc": (("i32",), ("i32",)),
    "evoagg_free": (("i32", "i32"), ()),
    "evoagg_init": (("i32", "i32"), ("i32",)),
    "evoagg_process": (("i32", "i32"), ("i64",)),
    "evoagg_flush": (("i64",), ("i64",)),
}
ERR_BAD_FRAME = -1
ERR_NOT_INITIALIZED = -2
ERR_BAD_CONFIG = -3
FLUSH_ALL = 2**63 - 1


def _string(out: bytearray, s: str) -> None:
    b = s.encode()
    write_uvarint(out, len(b))
    out += b


def encode_config(cfg: TenantConfig) -> bytes:
    """The tenant configuration as ``evoagg_init`` expects it."""
    out = bytearray([CONFIG_VERSION])
    write_uvarint(out, cfg.org)
    write_uvarint(out, cfg.interval_s)
    write_uvarint(out, len(cfg.queries))
    for q in cfg.queries:
        out.append(AGGS.index(q.agg))
        _string(out, q.metric)
        write_uvarint(out, len(q.filter))
        for t in q.filter:
            out.append(int(t.negated) | (2 if t.is_prefix else 0))
            if t.is_prefix:
                _string(out, t.key or "")
                _string(out, t.prefix or "")
            else:
                _string(out, t.tag or "")
        write_uvarint(out, len(q.by))
        for k in q.by:
            _string(out, k)
    return bytes(out)


def config_hash(cfg: TenantConfig) -> str:
    """SHA-256 (hex) of the encoded config: names the config a module was built and signed for."""
    return hashlib.sha256(encode_config(cfg)).hexdigest()


@dataclass
class Rejection:
    index: int
    reason: str
    offset: int


def by_reason(rejections: list[Rejection]) -> dict[str, int]:
    """How many messages were rejected for each reason."""
    counts: dict[str, int] = {}
    for r in rejections:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    return counts


def watermark(max_ts: int, lateness_s: int, interval_s: int) -> int:
    """Where a shard flushes to: the largest event time seen minus the lateness, down to a
    bucket boundary (every bucket ending at or before it is closed)."""
    return (max_ts - lateness_s) // interval_s * interval_s


NO_TS = -(2**63)
RESULT_HEADER = 40


@dataclass
class BatchResult:
    """What a kernel reports for one batch."""

    accepted: int = 0
    points: int = 0
    nonfinite: int = 0
    late: int = 0
    """Finite points dropped because their bucket had already been flushed."""
    max_ts: int | None = None
    """Largest timestamp among the accepted messages' points; None without points."""
    rejections: list[Rejection] = field(default_factory=list)


def decode_batch_result(buf: bytes, batch_size: int) -> BatchResult:
    if len(buf) < RESULT_HEADER:
        raise KernelError(f"batch result of {len(buf)} bytes is shorter than its {RESULT_HEADER}-byte header")
    ok, nrej, points, nonfinite, late, max_ts = struct.unpack_from("<IIQQQq", buf, 0)
    if len(buf) != RESULT_HEADER + 12 * nrej or ok + nrej != batch_size:
        raise KernelError(f"batch result inconsistent: {ok} ok + {nrej} rejected for {batch_size} messages, {len(buf)} bytes")
    rej = []
    last = -1
    for i in range(nrej):
        index, code, offset = struct.unpack_from("<III", buf, RESULT_HEADER + 12 * i)
        if not last < index < batch_size:
            raise KernelError(f"batch result names message {index} out of order or outside a batch of {batch_size}")
        last = index
        rej.append(Rejection(index, REJECT_REASONS.get(code, f"unknown_code_{code}"), offset))
    return BatchResult(ok, points, nonfinite, late, None if max_ts == NO_TS else max_ts, rej)


def decode_rows(buf: bytes, query_ids: list[str]) -> list[Row]:
    """Rows flushed by ``evoagg_flush``; group texts must be UTF-8."""
    try:
        (n,) = struct.unpack_from("<I", buf, 0)
        pos = 4
        rows = []
        for _ in range(n):
            q, bucket, value, glen = struct.unpack_from("<IqdI", buf, pos)
            pos += 24
            group = buf[pos : pos + glen].decode()
            if len(group.encode()) != glen:
                raise ValueError("group text runs past the end")
            pos += glen
            rows.append(Row(query_ids[q], bucket, group, value))
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as e:
        raise KernelError(f"malformed flush output: {e}") from None
    if pos != len(buf):
        raise KernelError(f"malformed flush output: {len(buf) - pos} trailing bytes")
    return rows
