"""A kernel written in Python on the oracle's literal view, for testing shard logic
without wasm. Its "module bytes" name its behaviour::

    b"py:<tag>"            correct (any tag: distinct tags are distinct modules)
    b"py-wrong:<tag>"      every row's value is off by one
    b"py-trap:<tag>"       traps on its first batch
    b"py-invalid:<tag>"    refused when started (like a module that fails validation)
    b"py-small:<tag>"      traps on any call with more than 4 messages (a size limit)

and any kernel traps on a payload equal to ``POISON``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from actors.config import TenantConfig
from actors.errors import KernelTrap, ModuleRejected, PayloadError
from actors.kernel.abi import FLUSH_ALL, BatchResult, Rejection
from actors.oracle import LiteralView
from actors.output import Row
from actors.payload import decode

POISON = b"\x01POISON"


class PyKernel:
    def __init__(self, wasm: bytes, config: TenantConfig) -> None:
        kind = wasm.split(b":", 1)[0]
        if kind == b"py-invalid":
            raise ModuleRejected("invalid", "this test module is invalid")
        if kind not in (b"py", b"py-wrong", b"py-trap", b"py-small"):
            raise ModuleRejected("invalid", f"not a test module: {wasm[:20]!r}")
        self.kind = kind
        self.view = LiteralView(config)
        self.calls = 0
        self.poisoned = False

    def process(self, payloads: Sequence[bytes], batch: str = "") -> BatchResult:
        if self.poisoned:
            raise KernelTrap("instance unusable", batch)
        self.calls += 1
        if self.kind == b"py-trap" or POISON in payloads or (self.kind == b"py-small" and len(payloads) > 4):
            self.poisoned = True
            raise KernelTrap("test module trapped", batch)
        res = BatchResult()
        before = (self.view.result.points, self.view.result.nonfinite, self.view.result.late)
        for i, p in enumerate(payloads):
            try:
                msg = decode(p, expect_org=self.view.config.org)
            except PayloadError as e:
                res.rejections.append(Rejection(i, e.reason, e.offset or 0))
                continue
            self.view.add(msg)
            res.accepted += 1
            for s in msg.series:
                for ts, _ in s.points:
                    res.max_ts = ts if res.max_ts is None else max(res.max_ts, ts)
        r = self.view.result
        res.points, res.nonfinite, res.late = r.points - before[0], r.nonfinite - before[1], r.late - before[2]
        return res

    def flush(self, watermark: int = FLUSH_ALL, batch: str = "flush") -> list[Row]:
        if self.poisoned:
            raise KernelTrap("instance unusable", batch)
        rows = self.view.flush(watermark)
        if self.kind == b"py-wrong":
            rows = [r._replace(value=r.value + 1.0 if math.isfinite(r.value) else r.value) for r in rows]
        return rows


def make_pykernel(wasm: bytes, config: TenantConfig) -> PyKernel:
    return PyKernel(wasm, config)
