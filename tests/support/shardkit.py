"""What shard tests share: a small tenant, its traffic, signed test modules, an
in-memory journal and a fake registry, and the oracle run on the shard's schedule."""

from __future__ import annotations

import pickle
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from actors.config import TenantConfig
from actors.errors import PayloadError
from actors.oracle import FLUSH_ALL, LiteralView, OracleResult
from actors.payload import decode, encode
from actors.shard.settings import ShardSettings
from actors.shard.state import ShardSnapshot, ShardState
from actors.signing import Signer, TrustStore
from actors.sink import MemorySink, Sink
from actors.workload import TrafficShape, Workload, generate
from tests.support.pykernel import make_pykernel
from tests.support.signed import sign_module

SMALL = TenantConfig.from_mapping(
    {
        "org": 77,
        "interval_s": 30,
        "queries": [
            {"id": "cpu_all", "q": "sum:cpu.usage{*}"},
            {"id": "cpu_svc1_max", "q": "max:cpu.usage{service:svc-1} by {region}"},
            {"id": "mem_avg", "q": "avg:mem.used{*} by {service}"},
        ],
    }
)
SMALL_TRAFFIC = TrafficShape.from_mapping(
    {
        "series_per_message": 6,
        "points_per_series": 6,
        "messages_per_window": 8,
        "hosts": 20,
        "tags": {"service": 3, "region": 2},
        "metrics": {"cpu.usage": 0.7, "mem.used": 0.3},
        "nonfinite_rate": 0.01,
    }
)


def traffic(n: int, seed: int = 1, config: TenantConfig = SMALL) -> list[bytes]:
    return [encode(m) for m in generate(Workload("small", config, SMALL_TRAFFIC), n, seed)]


def batches_of(payloads: Sequence[bytes], size: int) -> list[list[bytes]]:
    return [list(payloads[i : i + size]) for i in range(0, len(payloads), size)]


def expected(config: TenantConfig, batches: Sequence[Sequence[bytes]], lateness: int, drain: bool = True) -> OracleResult:
    """The oracle on the shard's schedule: after each batch, flush to the watermark
    (largest timestamp seen minus ``lateness``, down to a bucket boundary)."""
    view = LiteralView(config)
    rejected: dict[str, int] = {}
    flushed: int | None = None
    iv = config.interval_s
    for batch in batches:
        for p in batch:
            try:
                view.add(decode(p, expect_org=config.org))
            except PayloadError as e:
                rejected[e.reason] = rejected.get(e.reason, 0) + 1
        if view.max_ts is not None:
            wm = (view.max_ts - lateness) // iv * iv
            if flushed is None or wm > flushed:
                view.flush(wm)
                flushed = wm
    if drain:
        view.flush(FLUSH_ALL)
    view.result.rejected = rejected
    return view.result


@dataclass
class MemJournal:
    """A journal in memory, pickled like the real one so nothing is shared by accident."""

    records: list[bytes] = field(default_factory=list)
    snapshot: bytes | None = None
    checkpoints: int = 0

    def append(self, record: tuple[Any, ...]) -> None:
        self.records.append(pickle.dumps(record))

    def checkpoint(self, snapshot: ShardSnapshot) -> None:
        self.snapshot = pickle.dumps(snapshot)
        self.records.clear()
        self.checkpoints += 1

    def load(self) -> tuple[ShardSnapshot | None, list[tuple[Any, ...]]]:
        return (pickle.loads(self.snapshot) if self.snapshot else None), [pickle.loads(r) for r in self.records]


@dataclass
class FakeRegistry:
    bad: list[tuple[int, str, int, str, str]] = field(default_factory=list)

    def report_bad(self, org: int, config_hash: str, version: int, reason: str, reporter: str) -> None:
        self.bad.append((org, config_hash, version, reason, reporter))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 0.001
        return self.t


SIGNER = Signer.generate()
TRUST = TrustStore([SIGNER.public_raw])


def module(config: TenantConfig, wasm: bytes, version: int, signer: Signer = SIGNER) -> tuple[Any, bytes]:
    return sign_module(signer, config, wasm, version, origin=wasm.decode(errors="replace")), wasm


def new_state(
    settings: ShardSettings | None = None,
    journal: MemJournal | None = None,
    sink: Sink | None = None,
    registry: FakeRegistry | None = None,
    name: str = "shard-a",
    seed: int = 5,
) -> ShardState:
    return ShardState(
        name,
        settings or ShardSettings(allowed_lateness_s=0, probation_batches=2, checkpoint_every_batches=0, checkpoint_every_s=1e9),
        make_pykernel,
        TRUST,
        Clock(),
        random.Random(seed),
        journal if journal is not None else MemJournal(),
        sink if sink is not None else MemorySink(),
        registry,
    )
