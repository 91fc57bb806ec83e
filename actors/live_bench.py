"""``evoagg bench --live``: what a swap and a crash cost a shard serving real traffic.

On a local Ray: a registry, one shard, one tenant; the driver sends the workload's
messages in batches, each acknowledged before the next (as a client does), and times
every acknowledgement. Then, in one run:

1. **steady**: the generic kernel serves; msg/s is measured.
2. **swaps**: ``swaps`` versions of the same kernel (distinct bytes, equal behaviour,
   so only the swap's own cost shows) are published one after the other, each pushed,
   checked, compiled, rebuilt, swapped and watched on probation while traffic flows.
   Reported: the pause (the time ingest waits on the shard's lock while the swap
   commits; median and max), msg/s from each publication to the end of its probation
   compared with steady msg/s, and the longest gap between acknowledgements.
3. **specialized**: the tenant's specialized kernel is swapped in; msg/s after vs before.
4. **kill** (``kill=True``): the shard process is killed (SIGKILL) under load; reported:
   the time until the next acknowledgement, and the shard's own state-rebuild time.

Every message is accounted for at the end, and the rows in the sink equal a replay of
the same batches on the generic kernel (checked, not assumed).
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import ray

from actors.kernel.abi import config_hash
from actors.workload import Workload


def variant(wasm: bytes, tag: int) -> bytes:
    """The module with a custom section naming the variant: new bytes, same code."""
    name = b"evoagg.variant"
    body = bytes([len(name)]) + name + tag.to_bytes(4, "little")
    return wasm + bytes([0, len(body)]) + body


@ray.remote(num_cpus=1)
def _generate_chunk(w: Workload, start: int, n: int, seed: int) -> list[bytes]:
    from actors.payload import encode
    from actors.workload import generate

    # Chunks continue one timeline: a chunk's first message is message ``start`` of it.
    return [encode(m) for m in generate(w, n, seed + start, first=start)]


def _shard() -> Any:
    """The shard's handle now (after a kill, Ray's restarted actor under the same name)."""
    return ray.get_actor("bench-shard")


class _Sender(threading.Thread):
    def __init__(self, shard: Any, org: int, batches: list[list[bytes]]) -> None:
        super().__init__(daemon=True)
        from actors.shard.client import ShardClient

        self.client = ShardClient("bench", lambda _org: ray.get_actor("bench-shard"), retry_for_s=300)
        self.org, self.batches = org, batches
        self.acks: list[tuple[float, int]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for b in self.batches:
                self.client.send(self.org, b)
                self.acks.append((time.perf_counter(), len(b)))
        except BaseException as e:
            self.error = e

    def rate(self, t0: float, t1: float) -> float:
        n = sum(k for t, k in self.acks if t0 < t <= t1)
        return n / (t1 - t0) if t1 > t0 else 0.0

    def max_gap(self, t0: float, t1: float) -> float:
        ts = [t for t, _ in self.acks if t0 <= t <= t1]
        return max((b - a for a, b in itertools.pairwise(ts)), default=0.0)

    def wait_acks(self, n: int, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acks) < n:
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline or not self.is_alive():
                raise RuntimeError(f"traffic stopped after {len(self.acks)} batches")
            time.sleep(0.005)


def run_live_bench(workload: Workload, messages: int = 20_000, batch: int = 64, swaps: int = 10, kill: bool = True, seed: int = 1) -> dict[str, Any]:
    from actors.kernel.build import build
    from actors.registry_actor import start_registry
    from actors.shard.actor import start_shard
    from actors.shard.settings import ShardSettings
    from actors.signing import keygen
    from actors.specialize import materialize, package_name

    cfg = workload.tenant
    chash = config_hash(cfg)
    root = Path(tempfile.mkdtemp(prefix="evoagg-live-"))
    generic = build().wasm
    specialized = build(materialize(cfg, root / "specialized"), package_name(cfg)).wasm
    chunk = max(workload.traffic.messages_per_window, 1) * max(1, 2000 // max(workload.traffic.messages_per_window, 1))
    refs = [_generate_chunk.remote(workload, s, min(chunk, messages - s), seed) for s in range(0, messages, chunk)]
    payloads = [p for part in ray.get(refs) for p in part]
    batches = [payloads[i : i + batch] for i in range(0, len(payloads), batch)]

    key, pub = keygen(root / "keys")
    registry = start_registry(root / "registry", key, name="bench-registry")
    settings = ShardSettings(
        allowed_lateness_s=60, probation_batches=4, checkpoint_every_batches=50, trusted_keys=(pub.read_text().strip(),), poll_interval_s=3600.0
    ).validate()
    shard = start_shard("bench-shard", root / "state", settings, root / "sink", registry_name="bench-registry")

    def publish(wasm: bytes, origin: str) -> int:
        return int(ray.get(registry.publish.remote(cfg.org, chash, wasm, {"origin": origin}))["manifest"]["version"])

    def status() -> dict[str, Any]:
        return ray.get(_shard().status.remote(), timeout=60)["orgs"][cfg.org]  # type: ignore[no-any-return]

    def wait_promoted(version: int, timeout_s: float = 120.0) -> float:
        deadline = time.monotonic() + timeout_s
        while True:
            if not sender.is_alive():
                raise RuntimeError(f"traffic ended before version {version} passed probation; use more --messages")
            if time.monotonic() > deadline:
                raise RuntimeError(f"version {version} not serving after {timeout_s} s: {status()}")
            s = status()
            if s["module"]["version"] == version and s["probation"] is None:
                return time.perf_counter()
            if version in s["bad_versions"]:
                raise RuntimeError(f"version {version} was rejected: {s['swap_rejections']}")
            time.sleep(0.01)

    v1 = publish(generic, "generic")
    signed, ref = ray.get(registry.fetch.remote(cfg.org, chash, v1))
    ray.get(shard.add_tenant.remote(cfg, signed, ref))
    sender = _Sender(shard, cfg.org, batches)
    sender.start()
    n = len(batches)
    window = max(10, n // 20)  # batches per measurement window
    sender.wait_acks(5)  # warm up
    steady0 = time.perf_counter()
    sender.wait_acks(5 + window)
    steady1 = time.perf_counter()
    windows = []
    for i in range(swaps):
        t0 = time.perf_counter()
        v = publish(variant(generic, i), f"generic variant {i}")
        t1 = wait_promoted(v)
        windows.append((t0, t1))
    pauses = [p / 1000 for p in ray.get(shard.status.remote())["swap_pauses_ms"]]
    b0 = len(sender.acks)
    sender.wait_acks(b0 + window)
    before_spec = sender.rate(sender.acks[b0][0], sender.acks[b0 + window - 1][0])
    t_spec = time.perf_counter()
    v_spec = publish(specialized, "specialized")
    spec_promoted = wait_promoted(v_spec)
    a0 = len(sender.acks)
    sender.wait_acks(a0 + window)
    after_spec = sender.rate(sender.acks[a0][0], sender.acks[a0 + window - 1][0])
    result: dict[str, Any] = {
        "workload": workload.name,
        "org": cfg.org,
        "messages": len(payloads),
        "batch": batch,
        "steady_msg_per_s": round(sender.rate(steady0, steady1), 1),
        "steady_max_ack_gap_ms": round(sender.max_gap(steady0, steady1) * 1000, 2),
        "swaps": len(windows),
        "swap_pause_ms": {"median": round(statistics.median(pauses) * 1000, 3), "max": round(max(pauses) * 1000, 3)} if pauses else None,
        "swap_window_s": {"median": round(statistics.median(t1 - t0 for t0, t1 in windows), 3)} if windows else None,
        "during_swaps_msg_per_s": round(sum(sender.rate(a, b) * (b - a) for a, b in windows) / sum(b - a for a, b in windows), 1) if windows else None,
        "during_swaps_max_ack_gap_ms": round(max(sender.max_gap(a, b) for a, b in windows) * 1000, 2) if windows else None,
        "specialized": {
            "swap_to_promoted_s": round(spec_promoted - t_spec, 3),
            "msg_per_s_before": round(before_spec, 1),
            "msg_per_s_after": round(after_spec, 1),
            "ratio": round(after_spec / before_spec, 3) if before_spec else None,
        },
    }
    steady = result["steady_msg_per_s"]
    if windows and steady:
        result["during_swaps_vs_steady"] = round(result["during_swaps_msg_per_s"] / steady, 3)
    if kill and len(sender.acks) < n - 10:
        pid = ray.get(shard.pid.remote())
        before = len(sender.acks)
        t_kill = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        sender.wait_acks(before + 1)
        next_ack = sender.acks[before][0] - t_kill
        rec: dict[str, Any] = ray.get(_shard().status.remote(), timeout=120)["recovery"]
        result["kill"] = {"next_ack_after_s": round(next_ack, 3), "state_rebuilt_s": round(rec["seconds"], 3), "journal_records": rec["journal_records"]}
    sender.join(600)
    if sender.error is not None:
        raise sender.error
    final: int = ray.get(_shard().drain.remote(cfg.org))
    s = status()
    accounted = s["messages_accepted"] + sum(s["rejected"].values())
    result["accounted"] = {"sent": len(payloads), "received": s["messages_received"], "accepted_plus_rejected": accounted}
    result["rows_emitted"] = s["rows_emitted"]
    result["final_flush_rows"] = final
    result["checked"] = _check_sink(root / "sink", cfg, batches, generic, settings.allowed_lateness_s)
    return result


def _check_sink(sink: Path, cfg: Any, batches: list[list[bytes]], generic: bytes, lateness: int) -> dict[str, Any]:
    """The sink's rows against ``evoagg replay`` of the generic kernel on the same batches,
    flushing to the same watermark after each (largest timestamp seen - lateness)."""
    from actors.kernel.host import KernelHost
    from actors.output import output_hash
    from actors.replay import replay
    from actors.sink import read_rows

    rows = replay(KernelHost(generic, cfg), [p for b in batches for p in b], len(batches[0]), flush_lag=lateness).rows
    got = read_rows(sink, cfg.org)
    return {"sink_rows": len(got), "replay_rows": len(rows), "equal": output_hash(rows) == output_hash(got)}
