"""The aggregator shard as a Ray actor: a thin shell over :class:`ShardState`.

It adds what a pure core cannot do: a lock (ingest and swaps come from different
threads), a worker thread that compiles and rebuilds new modules off the ingest path,
a thread that polls the registry, the journal on disk, and the Parquet sink.

Ray restarts a dead shard (``max_restarts=-1``) with the same arguments; ``__init__``
then recovers from the checkpoint and journal in ``state_dir/<name>``. Calls are not
retried by Ray (``max_task_retries=0``): the client retries an unacknowledged batch
itself, under the same ``(source, seq)``, which the shard deduplicates.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ray

from actors import metrics, placement
from actors.config import TenantConfig
from actors.errors import ModuleRejected
from actors.kernel.host import KernelHost
from actors.shard.lane import Kernel, PendingSwap, Prepared, Swapped
from actors.shard.settings import ShardSettings
from actors.shard.state import Ack, OrgExport, ShardState
from actors.shard.store import ShardStore
from actors.signing import SignedManifest, TrustStore
from actors.sink import ParquetSink, Sink

log = logging.getLogger("evoagg.shard")
STARTUP_POLL_PAUSES_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
"""Pauses between tries of the first poll (about a minute in all), when the registry cannot be reached."""

SHARD_OPTIONS: dict[str, Any] = {"max_restarts": -1, "max_task_retries": 0, "max_concurrency": 8, "num_cpus": 1}
"""One CPU each on a cluster (``start_shard(num_cpus=...)`` lowers it on a laptop, where
builds and islands need the cores). Threads inside: ingest, swaps, the poll, status."""


class RayRegistryPeer:
    """Calls to the registry actor, fire and forget: a shard never waits on the registry to serve."""

    def __init__(self, registry_name: str) -> None:
        self.name = registry_name

    def _handle(self) -> Any:
        return ray.get_actor(self.name)

    def report_bad(self, org: int, config_hash: str, version: int, reason: str, reporter: str) -> None:
        try:
            self._handle().mark_bad.remote(org, config_hash, version, reason, reporter)
        except Exception as e:  # the registry being down must not take the shard with it
            log.warning(json.dumps({"event": "report_bad_failed", "org": org, "version": version, "error": str(e)}))

    def latest(self, org: int, config_hash: str) -> dict[str, Any] | None:
        return ray.get(self._handle().latest.remote(org, config_hash), timeout=30)  # type: ignore[no-any-return]

    def fetch(self, org: int, config_hash: str, version: int) -> tuple[dict[str, Any], bytes]:
        signed, ref = ray.get(self._handle().fetch.remote(org, config_hash, version), timeout=30)
        return signed, ray.get(ref, timeout=60)


def kernel_factory(settings: ShardSettings) -> Callable[[bytes, TenantConfig], Kernel]:
    def make(wasm: bytes, config: TenantConfig) -> Kernel:
        return KernelHost(wasm, config, settings.sandbox, name=f"org {config.org}")

    return make


def _structured(what: str, fields: dict[str, Any]) -> None:
    """One JSON line per event, naming the org and module version (and reason)."""
    log.info(json.dumps({"event": what, **fields}, default=str))
    if what in ("Swapped", "Promoted", "RolledBack", "SwapRejected") and "org" in fields:
        metrics.module_event(str(fields.get("shard", "")), int(fields["org"]), what, str(fields.get("reason", "")))


class ShardActor:
    def __init__(
        self,
        name: str,
        state_dir: str,
        settings: ShardSettings,
        sink: Callable[[], Sink] | str,
        registry_name: str | None = None,
        seed: int = 0,
    ) -> None:
        t0 = time.perf_counter()
        self.name = name
        self.settings = settings.validate()
        self.store = ShardStore(Path(state_dir) / name, settings.fsync)
        self.sink: Sink = ParquetSink(Path(sink)) if isinstance(sink, str) else sink()
        self.registry = RayRegistryPeer(registry_name) if registry_name else None
        self.state = ShardState(
            name,
            settings,
            kernel_factory(settings),
            TrustStore.from_entries(list(settings.trusted_keys)),
            time.time,
            random.Random(seed),
            self.store,
            self.sink,
            self.registry,
            _structured,
        )
        self.lock = threading.RLock()
        self.swapper = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-swap")
        self.swaps_running = 0
        self.pauses: list[float] = []
        snapshot, records = self.store.load()
        self.state.restore(snapshot, records)
        self.recovery = {"seconds": time.perf_counter() - t0, "checkpoint": snapshot is not None, "journal_records": len(records)}
        self._stop = threading.Event()
        if self.registry is not None:
            self._subscribe()
            threading.Thread(target=self._poll_loop, name=f"{name}-poll", daemon=True).start()

    # --- the data path -------------------------------------------------------------------

    def ingest(self, org: int, source: str, seq: int, payloads: list[bytes]) -> Ack:
        with self.lock:
            ack = self.state.ingest(org, source, seq, payloads)
            if not ack.duplicate and self.state.batches % 16 == 0:
                lane = self.state.lanes[org]
                metrics.rates(self.name, org, lane.account.msg_rate.rate(time.time()), lane.capacity(), lane.served.entry.version)
        if not ack.duplicate:
            metrics.batch(self.name, org, ack.messages, ack.accepted, ack.rejected)
        self._start_queued(org)
        return ack

    def last_seq(self, org: int, source: str) -> int:
        with self.lock:
            return self.state.last_seq(org, source)

    def drain(self, org: int) -> int:
        with self.lock:
            rows = self.state.drain(org)
        self._start_queued(org)
        return rows

    def _start_queued(self, org: int) -> None:
        """An offer that waited for a swap or a probation to end starts once they have."""
        with self.lock:
            lane = self.state.lanes.get(org)
            queued = lane.take_queued() if lane is not None and lane.queued is not None else None
        if queued is not None:
            self.offer(queued[0].to_dict(), queued[1])

    # --- tenants and modules ---------------------------------------------------------------

    def add_tenant(self, config: TenantConfig, signed: dict[str, Any], module: Any) -> dict[str, Any]:
        wasm = _bytes(module)
        with self.lock:
            status = self.state.add_tenant(config, SignedManifest.from_dict(signed), wasm)
        self._subscribe()
        return status

    def offer(self, signed: dict[str, Any], module: Any) -> dict[str, Any]:
        """A new version (pushed by the registry, or found by the poll). Returns at once;
        the swap completes on the worker thread."""
        try:
            s = SignedManifest.from_dict(signed)
            wasm = _bytes(module)
            with self.lock:
                pending = self.state.begin_swap(s, wasm)
        except ModuleRejected as e:
            _structured("offer_rejected", {"shard": self.name, "org": signed.get("manifest", {}).get("org"), "reason": e.reason, "detail": str(e)})
            return {"status": "rejected", "reason": e.reason, "detail": str(e)}
        except Exception as e:  # nothing an offer carries may take the shard down
            _structured("offer_failed", {"shard": self.name, "error": repr(e)})
            return {"status": "rejected", "reason": "bad_offer", "detail": repr(e)}
        if pending is None:
            return {"status": "queued"}
        with self.lock:
            self.swaps_running += 1
        self.swapper.submit(self._swap, s.manifest.org, pending)
        return {"status": "swapping", "version": s.manifest.version}

    def _swap(self, org: int, pending: PendingSwap) -> None:
        try:
            lane = self.state.lane(org)
            result: Prepared | ModuleRejected
            try:
                result = lane.prepare(pending)  # compile, shadow check, rebuild: no lock held
                # Catch up on the traffic that arrived meanwhile, still without the lock,
                # until at most one batch is left for the pause.
                for _ in range(50):
                    if lane.catch_up(result) <= 1:
                        break
            except ModuleRejected as e:
                result = e
            except Exception as e:
                result = ModuleRejected("prepare_error", repr(e))
            with self.lock:
                t0 = time.perf_counter()
                events = self.state.finish_swap(org, pending, result)
                pause = time.perf_counter() - t0
                if any(isinstance(e, Swapped) for e in events):
                    self.pauses.append(pause)
                    _structured("swap_pause", {"shard": self.name, "org": org, "version": pending.entry.version, "pause_ms": round(pause * 1000, 3)})
                queued = lane.take_queued()
        except Exception as e:
            _structured("swap_failed", {"shard": self.name, "org": org, "error": repr(e)})
            queued = None
        finally:
            with self.lock:
                self.swaps_running -= 1
        if queued is not None:
            self.offer(queued[0].to_dict(), queued[1])

    def revoke(self, org: int, config_hash: str, version: int, reason: str) -> list[str]:
        with self.lock:
            lane = self.state.lanes.get(org)
            if lane is None or lane.config_hash != config_hash:
                return []
            events = [type(e).__name__ for e in self.state.revoke(org, version, reason)]
            stuck = lane.serving_revoked
        if stuck:
            # Serving a revoked version with nothing to fall back on: ask the registry now.
            threading.Thread(target=self._poll_quietly, daemon=True).start()
        return events

    def _poll_quietly(self) -> bool:
        try:
            self.poll_now()
            return True
        except Exception as e:
            _structured("poll_failed", {"shard": self.name, "error": repr(e)})
            return False

    def swaps_idle(self, timeout_s: float = 60.0) -> bool:
        """Waits until no swap is being prepared or queued (tests and demos)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                busy = self.swaps_running or any(lane.pending or lane.queued for lane in self.state.lanes.values())
            if not busy:
                return True
            time.sleep(0.02)
        return False

    def poll_now(self) -> int:
        """Asks the registry for newer versions of every org; returns the offers made."""
        if self.registry is None:
            return 0
        made = 0
        with self.lock:
            wanted = [
                (org, lane.config_hash, max(lane.served.entry.version, lane.pending.entry.version if lane.pending else 0))
                for org, lane in self.state.lanes.items()
            ]
        for org, chash, have in wanted:
            latest = self.registry.latest(org, chash)
            if latest is None or latest["manifest"]["version"] == have:
                continue
            with self.lock:
                lane = self.state.lanes.get(org)
                revoked = lane is not None and lane.serving_revoked
            if latest["manifest"]["version"] < have and not revoked:
                continue
            signed, wasm = self.registry.fetch(org, chash, latest["manifest"]["version"])
            self.offer(signed, wasm)
            made += 1
        return made

    def _poll_loop(self) -> None:
        # The first poll runs at once: a shard that Ray restarted has missed the pushes made
        # while it was down, and a module it had on probation (never checkpointed) must come
        # back now, not a poll interval (5 minutes by default) later. The registry may be
        # restarting too (the same node died): a failed first poll is tried again, for a while.
        for pause_s in (*STARTUP_POLL_PAUSES_S, None):
            if self._poll_quietly() or pause_s is None or self._stop.wait(pause_s):
                break
        while not self._stop.wait(self.settings.poll_interval_s):
            try:
                self._subscribe()  # again: a restarted registry has forgotten its subscribers
                self.poll_now()
            except Exception as e:
                _structured("poll_failed", {"shard": self.name, "error": repr(e)})

    def _subscribe(self) -> None:
        if self.registry is None:
            return
        try:
            me = ray.get_runtime_context().current_actor
            with self.lock:
                orgs = sorted(self.state.lanes)
            ray.get_actor(self.registry.name).subscribe.remote(self.name, me, orgs)
        except Exception as e:
            _structured("subscribe_failed", {"shard": self.name, "error": repr(e)})

    # --- moving, checkpoints, reading --------------------------------------------------------

    def export_org(self, org: int) -> OrgExport:
        with self.lock:
            out = self.state.export_org(org)
        self._subscribe()
        return out

    def import_org(self, export: OrgExport) -> dict[str, Any]:
        with self.lock:
            status = self.state.import_org(export)
        self._subscribe()
        return status

    def checkpoint(self) -> None:
        with self.lock:
            self.state.checkpoint()

    def status(self) -> dict[str, Any]:
        with self.lock:
            st = self.state.status()
        st["recovery"] = self.recovery
        st["swap_pauses_ms"] = [round(p * 1000, 3) for p in self.pauses]
        st["journal_bytes"] = self.store.bytes_written
        return st

    def training(self, org: int) -> list[bytes]:
        with self.lock:
            return self.state.training(org)

    def holdout(self, org: int) -> list[bytes]:
        with self.lock:
            return self.state.holdout(org)

    def pid(self) -> int:
        import os

        return os.getpid()


def _bytes(module: Any) -> bytes:
    """Module bytes from bytes, or from an object reference (wrapped in a list so Ray
    passes the reference itself): a module travels through the object store once."""
    if isinstance(module, list | tuple) and len(module) == 1:
        module = module[0]
    if isinstance(module, ray.ObjectRef):
        module = ray.get(module, timeout=60)
    if not isinstance(module, bytes | bytearray | memoryview):
        raise ModuleRejected("bad_offer", f"module must be bytes or an object reference, found {type(module).__name__}")
    return bytes(module)


RemoteShard = ray.remote(**SHARD_OPTIONS)(ShardActor)


def start_shard(
    name: str,
    state_dir: str | Path,
    settings: ShardSettings,
    sink: Callable[[], Sink] | str | Path,
    registry_name: str | None = None,
    seed: int = 0,
    namespace: str | None = None,
    num_cpus: float = 1,
    detached: bool = False,
) -> Any:
    """A named shard actor (found again by name; restarted by Ray when it dies)."""
    sink_arg: Callable[[], Sink] | str = str(sink) if isinstance(sink, Path) else sink
    options = RemoteShard.options(  # type: ignore[attr-defined]
        name=name,
        namespace=namespace,
        get_if_exists=True,
        num_cpus=num_cpus,
        lifetime="detached" if detached else None,
        resources=placement.resources("shard"),
    )
    return options.remote(name, str(state_dir), settings, sink_arg, registry_name, seed)
