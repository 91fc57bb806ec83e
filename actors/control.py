"""The control plane: one named, detached actor that owns the running system, and the
handle a user drives it with, from any Ray client session::

    import actors
    ctl = actors.connect("ray://head:10001")    # or "auto", or None for a local Ray
    ctl.add_tenant("configs/tenants/1042.yaml")
    ctl.start_traffic(1042, "configs/workloads/w1.yaml")   # or ctl.ingest(1042, payloads)
    ctl.evolve(1042, generations=10, proposer="offline")
    ctl.status(); ctl.modules(1042); ctl.rollback(1042, version=3)

The actor (``evoagg-control`` in namespace ``evoagg``) starts the registry, the shards
and, on demand, traffic sources and evolution runs; because it is detached and named, a
second client session finds the same system. Each tenant's improvement runs in a thread
of the actor: verify the specialized kernel on the verifier pool (with the shard's
held-back sample as the shadow set), publish it signed, then evolve on the shard's
training sample and publish the confirmed winner; the registry pushes every version to
the shards, which check and swap it while traffic flows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray

from actors import metrics
from actors.config import TenantConfig
from actors.control_state import ControlState, admit, publish_decision, resumed_jobs
from actors.errors import ConfigError, EvoaggError, Unavailable
from actors.evolve.settings import EvolutionConfig
from actors.kernel.abi import config_hash
from actors.shard.router import Routing
from actors.shard.settings import ShardSettings
from actors.status import assemble as assemble_status
from actors.workload import Workload

CONTROL = "evoagg-control"
NAMESPACE = "evoagg"
REGISTRY = "evoagg-registry"
log = logging.getLogger("evoagg.control")


STATUS_TIMEOUT_S = 10.0
"""How long ``status`` waits for the shards and the registry before reporting them unreachable."""


def _answers(calls: dict[Any, Any], timeout_s: float) -> dict[Any, Any]:
    """Each call's result, or the error it raised, or ``TimeoutError`` when it did not
    finish in time (the calls run at once; the wait is for all of them together)."""
    refs = list(calls.values())
    ready = set(ray.wait(refs, num_returns=len(refs), timeout=timeout_s)[0]) if refs else set()
    out: dict[Any, Any] = {}
    for key, ref in calls.items():
        if ref not in ready:
            out[key] = TimeoutError(f"no answer in {timeout_s:.0f} s (restarting, dead or busy)")
            continue
        try:
            out[key] = ray.get(ref)
        except Exception as e:  # a dead actor, or an error it raised: reported, not raised
            out[key] = e
    return out


def _shard_name(i: int) -> str:
    return f"evoagg-shard-{i}"


_CONFIRMED = ("candidate_id", "ratio_to_generic", "ratio_to_generic_ci95", "ratio_to_specialized", "ratio_to_specialized_ci95")
"""What a job keeps of its evolution's winner, measured side by side with the generic and specialized kernels."""


def _source_name(org: int) -> str:
    return f"evoagg-traffic-{org}"


def _new_job() -> dict[str, Any]:
    return {"stage": "serving generic", "generation": None, "generations": None, "best_ratio": None, "built": 0, "rejected": {}}


class ControlActor:
    def __init__(
        self,
        root: str,
        shards: int = 1,
        shard_cpus: float = 0.0,
        shard_settings: ShardSettings | None = None,
        evolution: EvolutionConfig | None = None,
        detached: bool = True,
    ) -> None:
        """Starts (or, on a root that holds a control plane's state, takes over) the system
        under ``root``: its saved tenants, shards and improvements are adopted, and the
        shards recover what they served from their own checkpoints and journals."""
        from actors.registry_actor import start_registry
        from actors.shard.actor import start_shard
        from actors.signing import keygen

        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        keys = self.root / "keys"
        if not (keys / "evoagg.key").exists():
            keygen(keys)
        self.public_key = (keys / "evoagg.pub").read_text().strip()
        self.registry = start_registry(self.root / "registry", keys / "evoagg.key", name=REGISTRY, detached=detached)
        self.settings = replace(shard_settings or ShardSettings(), trusted_keys=(self.public_key,)).validate()
        self.evolution = (evolution or EvolutionConfig()).validate()
        self.detached = detached
        saved = ControlState.load(self.root)
        names = list(saved.shards) if saved is not None and saved.shards else [_shard_name(i) for i in range(shards)]
        self.routing = Routing(names)
        self.shards = {
            name: start_shard(
                name, self.root / "state", self.settings, self.root / "sink", registry_name=REGISTRY, seed=i, num_cpus=shard_cpus, detached=detached
            )
            for i, name in enumerate(self.routing.shards)
        }
        self.tenants: dict[int, TenantConfig] = dict(saved.tenants) if saved is not None else {}
        self.jobs: dict[int, dict[str, Any]] = resumed_jobs(saved.jobs) if saved is not None else {}
        for org in self.tenants:
            self.jobs.setdefault(org, _new_job())
        self.sources: dict[int, Any] = {}
        for org in self.tenants:  # traffic sources outlive a control actor that died: adopt them
            with contextlib.suppress(ValueError):
                self.sources[org] = ray.get_actor(_source_name(org))
        self.clients: dict[str, Any] = {}
        self.lock = threading.RLock()
        self._generic: bytes | None = None
        self._save()

    def _save(self) -> None:
        """Writes the control plane's state under its root (after every change)."""
        with self.lock:
            jobs = {org: {k: v for k, v in j.items() if k != "thread"} for org, j in self.jobs.items()}
            ControlState(tuple(self.routing.shards), dict(self.tenants), jobs).save(self.root)

    # --- tenants and traffic ---------------------------------------------------------------

    def _generic_wasm(self) -> bytes:
        from actors.kernel.build import build

        if self._generic is None:
            self._generic = build().wasm
        return self._generic

    def _lane(self, org: int) -> dict[str, Any] | None:
        """The org's lane as its shard reports it; None when the shard does not serve it."""
        shard = self.shards[self.routing.shard_for(org)]
        lane: dict[str, Any] | None = ray.get(shard.status.remote(), timeout=120)["orgs"].get(org)
        return lane

    def add_tenant(self, config: TenantConfig) -> dict[str, Any]:
        """Serves ``config.org`` with the generic kernel, published signed as version 1. A
        repeated call with the same config changes nothing, and an org its shard already
        serves with this config is adopted as it is; another config for a served org is a
        :class:`ConfigError` naming the way to change it (``remove_tenant`` first)."""
        config.validate()
        with self.lock:
            lane = self._lane(config.org)
            what = admit(self.tenants.get(config.org), config, lane["config_hash"] if lane else None)
            if what == "add":
                chash = config_hash(config)
                signed = ray.get(self.registry.publish.remote(config.org, chash, self._generic_wasm(), {"origin": "generic"}))
                got = ray.get(self.registry.fetch.remote(config.org, chash, signed["manifest"]["version"]))
                shard = self.shards[self.routing.shard_for(config.org)]
                lane = ray.get(shard.add_tenant.remote(config, got[0], got[1]))
            assert lane is not None
            self.tenants[config.org] = config
            if what == "add" or config.org not in self.jobs:
                self.jobs[config.org] = _new_job()
            self._save()
            return {**lane, "admitted": what}

    def remove_tenant(self, org: int) -> dict[str, Any]:
        """Stops serving ``org``: its traffic source stops, its open buckets are flushed to
        the sink, its shard lets it go, and the control plane forgets it (its registry
        versions stay). Then ``add_tenant`` may serve it with another config."""
        with self.lock:
            job = self.jobs.get(org) or {}
            if job.get("thread") is not None and job["thread"].is_alive():
                raise ConfigError(f"org {org} is being improved ({job.get('stage')}); remove it once that ends")
            lane = self._lane(org)
            if org not in self.tenants and lane is None:
                raise ConfigError(f"org {org} is not a tenant")
        traffic = self.stop_traffic(org)
        shard = self.shards[self.routing.shard_for(org)]
        rows = 0
        if lane is not None:
            rows = int(ray.get(shard.drain.remote(org)))
            ray.get(shard.export_org.remote(org))
        with self.lock:
            self.tenants.pop(org, None)
            self.jobs.pop(org, None)
            self._save()
        return {"org": org, "rows_flushed": rows, "traffic": traffic}

    def _shard(self, org: int) -> Any:
        if org not in self.tenants:
            raise ConfigError(f"org {org} is not a tenant; add it first")
        return self.shards[self.routing.shard_for(org)]

    def ingest(self, org: int, payloads: list[bytes], source: str) -> dict[str, Any]:
        """Sends one batch (exactly once per ``source`` and batch number)."""
        from actors.shard.client import ShardClient

        self._shard(org)
        with self.lock:
            client = self.clients.get(source)
            if client is None:
                client = self.clients[source] = ShardClient(source, lambda o: self.shards[self.routing.shard_for(o)])
        return vars(client.send(org, payloads))

    def start_traffic(self, workload: Workload, seed: int = 1, max_msg_per_s: float | None = None) -> str:
        """Starts a traffic source for the workload's org. Its timeline continues the
        org's: a shard that served the org before (a restarted system) has closed buckets
        up to its watermark, and traffic from before it would all be late."""
        from actors.traffic_source import TrafficSource

        org = workload.tenant.org
        self._shard(org)
        lane = self._lane(org)
        if lane is not None and lane.get("max_ts") is not None:
            t = workload.traffic
            workload = replace(workload, traffic=replace(t, start_ts=max(t.start_ts, int(lane["max_ts"]) + 1)))
        with self.lock:
            if org in self.sources:
                raise ConfigError(f"org {org} already has a traffic source")
            name = _source_name(org)
            opts = TrafficSource.options(name=name, lifetime="detached" if self.detached else None)  # type: ignore[attr-defined]
            self.sources[org] = opts.remote(workload, self.routing.shard_for(org), f"traffic-{org}-{time.time_ns()}", seed, max_msg_per_s=max_msg_per_s)
            return name

    def stop_traffic(self, org: int) -> dict[str, Any]:
        with self.lock:
            src = self.sources.pop(org, None)
        if src is None:
            return {"sent": 0}
        stats: dict[str, Any] = ray.get(src.stop.remote())
        ray.kill(src)
        return stats

    def traffic(self) -> dict[int, dict[str, Any]]:
        with self.lock:
            sources = dict(self.sources)
        return {org: ray.get(s.stats.remote()) for org, s in sources.items()}

    def drain(self, org: int) -> int:
        return int(ray.get(self._shard(org).drain.remote(org)))

    # --- improving a tenant's kernel ---------------------------------------------------------

    def evolve(self, org: int, generations: int | None = None, islands: int | None = None, proposer: str | None = None, within_s: float | None = None) -> str:
        """Starts improving ``org``'s kernel (specialize, then evolve) in the background;
        with ``within_s``, no generation starts after that many seconds."""
        self._shard(org)
        with self.lock:
            job = self.jobs[org]
            if job.get("thread") is not None and job["thread"].is_alive():
                raise ConfigError(f"org {org} is already being improved ({job['stage']})")
            changes: dict[str, Any] = {k: v for k, v in {"generations": generations, "islands": islands, "proposer": proposer}.items() if v is not None}
            cfg = replace(self.evolution, **changes).validate()
            deadline = time.monotonic() + within_s if within_s is not None else None
            t = threading.Thread(target=self._improve, args=(org, cfg, deadline), name=f"improve-{org}", daemon=True)
            job.update(
                {"thread": t, "stage": "waiting for samples", "error": None, "generations": cfg.generations, "generation": None, "started": time.monotonic()}
            )
            job["timeline"] = [{"stage": "waiting for samples", "at_s": 0.0}]
            t.start()
        return f"improving org {org}: {cfg.generations} generations, {cfg.islands} islands, proposer {cfg.proposer}"

    def _progress(self, org: int, **fields: Any) -> None:
        with self.lock:
            job = self.jobs[org]
            if "stage" in fields and fields["stage"] != job.get("stage") and job.get("started") is not None:
                # Where the improvement's time goes: each stage and when it began.
                job.setdefault("timeline", []).append({"stage": fields["stage"], "at_s": round(time.monotonic() - job["started"], 1)})
            job.update(fields)
            self._save()

    def _improve(self, org: int, evo: EvolutionConfig, deadline: float | None) -> None:
        """Verifies the specialized kernel and publishes it when it clears the margin over
        the serving module, then evolves and publishes the confirmed winner on the same
        rule. Every speed here is measured in the org's own regime on its shard: its batch
        size, its lateness, the pace of its event time (``actors.kernel.measure``)."""
        from actors.evolve.engine import run_evolution
        from actors.kernel.build import build
        from actors.specialize import materialize, package_name, template_kernel
        from actors.verify.stages import Candidate, Context
        from actors.verify.tasks import VerifierPool

        cfg = self.tenants[org]
        chash = config_hash(cfg)
        shard = self._shard(org)
        try:
            samples_by = time.monotonic() + 600
            while True:  # the shard's samples of live traffic: training for the evolver, held back for the shadow stage
                training, held_back = ray.get(shard.training.remote(org)), ray.get(shard.holdout.remote(org))
                lane = self._lane(org) or {}
                if len(training) >= 64 and len(held_back) >= 16 and lane.get("event_s_per_message"):
                    break
                if time.monotonic() > samples_by:
                    raise EvoaggError(f"org {org}: no traffic to learn from after 600 s")
                time.sleep(0.5)
            generic = self._generic_wasm()
            batch = max(1, round(lane.get("mean_batch_messages") or 64))
            regime = evo.regime(self.settings.allowed_lateness_s, batch, lane["event_s_per_message"])
            # Bounded samples: the shadow stage runs every held-back message through two kernels.
            ctx = Context(cfg, self.settings.sandbox, generic, generic, tuple(held_back[:64]), tuple(training[:256]), regime=regime)
            self._progress(
                org,
                stage="verifying the specialized kernel",
                samples={"training": len(training), "held_back": len(held_back)},
                regime={"batch": batch, "lateness_s": regime.lateness_s, "pace_s": regime.pace_s},
            )
            t_verify = time.monotonic()
            rep = ray.get(VerifierPool(ctx).submit(Candidate(f"{org}-specialized", cfg, kernel_src=template_kernel())))
            self._progress(org, specialized_stages={st.name: round(st.seconds, 2) for st in rep.stages}, verify_seconds=round(time.monotonic() - t_verify, 1))
            if not rep.accepted:
                failed = rep.failed_stage()
                raise EvoaggError(f"org {org}: the specialized kernel was rejected at {failed.name if failed else '?'}: {failed.reason if failed else ''}")
            serving = "generic"
            spec = publish_decision(rep.ratio, rep.ratio_ci95, evo.publish_margin, "specialized")
            self._progress(org, specialized={"ratio": rep.ratio, "ci95": rep.ratio_ci95, "published": spec.publish, "why": spec.reason})
            if spec.publish:
                with tempfile.TemporaryDirectory(prefix="evoagg-spec-") as tmp:
                    wasm = build(materialize(cfg, Path(tmp)), package_name(cfg)).wasm
                meta = {"origin": "specialized", "report": rep.to_json(), **({"ratio": rep.ratio} if rep.ratio and rep.ratio > 0 else {})}
                ray.get(self.registry.publish.remote(org, chash, wasm, meta))
                serving = "specialized"
            self._progress(org, stage=f"evolving ({evo.proposer})", generation=0)

            def progress(p: dict[str, Any]) -> None:
                metrics.candidates(org, p["built"], p["accepted"], p["rejected"])
                log.info(json.dumps({"event": "generation", "org": org, **p}))
                with self.lock:  # one update, saved once
                    job = self.jobs[org]
                    rejected = dict(job["rejected"])
                    for k, v in p["rejected"].items():
                        rejected[k] = rejected.get(k, 0) + v
                    self._progress(
                        org,
                        stage=f"evolving ({evo.proposer}): generation {p['generation'] + 1} of {p['generations']} done",
                        generation=p["generation"] + 1,
                        best_ratio=p["best_ratio"],
                        built=job.get("built", 0) + p["built"],
                        rejected=rejected,
                    )

            workdir = Path(tempfile.mkdtemp(prefix=f"evolve-{org}-", dir=self.root))
            # Fitness is the ratio to the generic kernel (the same scale for every candidate);
            # the confirmation measures the winner against the specialized kernel too.
            summary = run_evolution(cfg, evo, ctx, workdir, progress=progress, deadline=deadline)
            best = summary["best"]
            self._progress(
                org,
                summary={k: summary[k] for k in ("candidates", "accepted", "rejections_by_stage", "seconds", "specialized_ratio_to_generic", "stopped")},
                # The winner measured side by side with the generic and specialized kernels.
                confirmed={k: best.get(k) for k in _CONFIRMED},
                workdir=str(workdir),
            )
            if best["candidate_id"].endswith("-seed"):
                self._progress(org, stage=f"done: no candidate beat the specialized kernel; serving {serving}")
                return
            if serving == "specialized":
                decision = publish_decision(best["ratio_to_specialized"], best.get("ratio_to_specialized_ci95"), evo.publish_margin, "evolved")
            else:
                decision = publish_decision(best["ratio_to_generic"], best.get("ratio_to_generic_ci95"), evo.publish_margin, "evolved")
            self._progress(org, evolved={"candidate": best["candidate_id"], "published": decision.publish, "why": decision.reason})
            if not decision.publish:
                self._progress(org, stage=f"done: {decision.reason}; serving {serving}")
                return
            evolved = Path(best["wasm"]).read_bytes()
            meta = {
                "origin": f"evolved gen {best['generation']}",
                "report": best["report"],
                "source_commit": best["commit"],
                "parent": best["candidate_id"],
                **({"ratio": float(best["ratio_to_generic"])} if best.get("ratio_to_generic") else {}),
            }
            ray.get(self.registry.publish.remote(org, chash, evolved, meta))
            self._progress(org, stage=f"done: evolved x{best['ratio_to_generic']:.2f} published")
        except Exception as e:
            log.error("org %s: improvement failed: %s", org, traceback.format_exc())
            self._progress(org, stage="failed", error=repr(e))

    # --- reading and operating ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Tenants, shards and the orgs they serve, modules, evolution progress, throughput.
        Answers within ``STATUS_TIMEOUT_S`` whatever the shards do: one that does not answer
        (dead, restarting) is reported unreachable with its tenants (``actors.status``)."""
        with self.lock:
            tenants = dict(self.tenants)
            jobs = {org: {k: v for k, v in j.items() if k != "thread"} for org, j in self.jobs.items()}
        calls: dict[tuple[str, Any], Any] = {("shard", name): h.status.remote() for name, h in self.shards.items()}
        calls |= {("latest", org): self.registry.latest.remote(org, config_hash(cfg)) for org, cfg in tenants.items()}
        answers = _answers(calls, STATUS_TIMEOUT_S)  # one wait for all: 10 s at most in all
        shard_answers = {name: a for (kind, name), a in answers.items() if kind == "shard"}
        latest = {org: a if isinstance(a, BaseException) else {"latest": a} for (kind, org), a in answers.items() if kind == "latest"}
        return assemble_status(self.routing.mapping(tenants), shard_answers, latest, jobs)

    def modules(self, org: int) -> list[dict[str, Any]]:
        cfg = self.tenants.get(org)
        if cfg is None:
            raise ConfigError(f"org {org} is not a tenant")
        return list(ray.get(self.registry.versions.remote(org, config_hash(cfg))))

    def rollback(self, org: int, version: int) -> list[int]:
        """Makes ``version`` the one served: every newer version is marked bad in the
        registry (for every shard), and shards fall back to the newest good one."""
        versions = self.modules(org)
        if not any(v["manifest"]["version"] == version and v["status"] == "ok" for v in versions):
            raise ConfigError(f"org {org} has no good version {version}")
        newer = [v["manifest"]["version"] for v in versions if v["manifest"]["version"] > version and v["status"] == "ok"]
        for v in sorted(newer, reverse=True):
            ray.get(self.registry.mark_bad.remote(org, config_hash(self.tenants[org]), v, f"rollback to version {version}", "operator"))
        return newer

    def shutdown(self) -> None:
        """Stops the traffic sources and the actors this control plane started."""
        for org in list(self.sources):
            self.stop_traffic(org)
        for h in self.shards.values():
            ray.kill(h, no_restart=True)
        ray.kill(self.registry, no_restart=True)


CONTROL_OPTIONS: dict[str, Any] = {"num_cpus": 0, "max_concurrency": 32, "max_restarts": 0}
RemoteControl = ray.remote(**CONTROL_OPTIONS)(ControlActor)


class Control:
    """The handle a user holds: every call goes to the control actor and waits for it."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def add_tenant(self, config: TenantConfig | str | Path) -> dict[str, Any]:
        if not isinstance(config, TenantConfig):
            from actors.loading import load_tenant

            config = load_tenant(Path(config))
        return ray.get(self.actor.add_tenant.remote(config))  # type: ignore[no-any-return]

    def remove_tenant(self, org: int) -> dict[str, Any]:
        return ray.get(self.actor.remove_tenant.remote(org))  # type: ignore[no-any-return]

    def ingest(self, org: int, payloads: list[bytes], source: str = "client") -> dict[str, Any]:
        return ray.get(self.actor.ingest.remote(org, payloads, source))  # type: ignore[no-any-return]

    def start_traffic(self, org: int, workload: Workload | str | Path, seed: int = 1, max_msg_per_s: float | None = None) -> str:
        if not isinstance(workload, Workload):
            from actors.loading import load_workload

            workload = load_workload(Path(workload))
        if workload.tenant.org != org:
            raise ConfigError(f"workload is for org {workload.tenant.org}, not {org}")
        return ray.get(self.actor.start_traffic.remote(workload, seed, max_msg_per_s))  # type: ignore[no-any-return]

    def stop_traffic(self, org: int) -> dict[str, Any]:
        return ray.get(self.actor.stop_traffic.remote(org))  # type: ignore[no-any-return]

    def evolve(self, org: int, generations: int | None = None, islands: int | None = None, proposer: str | None = None, within_s: float | None = None) -> str:
        return ray.get(self.actor.evolve.remote(org, generations, islands, proposer, within_s))  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        return ray.get(self.actor.status.remote())  # type: ignore[no-any-return]

    def traffic(self) -> dict[int, dict[str, Any]]:
        return ray.get(self.actor.traffic.remote())  # type: ignore[no-any-return]

    def modules(self, org: int) -> list[dict[str, Any]]:
        return ray.get(self.actor.modules.remote(org))  # type: ignore[no-any-return]

    def rollback(self, org: int, version: int) -> list[int]:
        return ray.get(self.actor.rollback.remote(org, version))  # type: ignore[no-any-return]

    def drain(self, org: int) -> int:
        return ray.get(self.actor.drain.remote(org))  # type: ignore[no-any-return]

    def shutdown(self) -> None:
        ray.get(self.actor.shutdown.remote())
        ray.kill(self.actor, no_restart=True)


CLIENT_ATTEMPTS = 3
"""How often a Ray client session is tried before ``connect`` gives up."""


def _attach(address: str, attempts: int = CLIENT_ATTEMPTS, pause_s: float = 2.0) -> None:
    """``ray.init`` on an existing cluster. A Ray client session is retried when the head
    aborts its start (``ConnectionAbortedError``: Ray's name for any failed session start on
    the server). The case it is for: the head's proxy forks one server process per session,
    and with gRPC's fork handlers on that process sometimes dies at birth (README); the next
    try gets a new one on the next port. A lasting failure costs a few seconds more before
    it is raised. Connection errors (refused token, wrong address) are not retried."""
    for attempt in range(1, attempts + 1):
        try:
            ray.init(address=address, namespace=NAMESPACE)
            return
        except ConnectionAbortedError as exc:
            if not address.startswith("ray://") or attempt == attempts:
                raise
            log.warning(json.dumps({"event": "client_session_retry", "address": address, "attempt": attempt, "error": str(exc).strip().splitlines()[-1][:200]}))
            time.sleep(pause_s * attempt)


def connect(address: str | None = "auto", root: str | Path | None = None, start: bool = True, **options: Any) -> Control:
    """Attaches to the running system (``address``: ``ray://host:10001``, ``auto``, or None
    for a new local Ray), starting its control plane with ``options`` when it is not
    running yet and ``start`` is true. ``root`` holds keys, registry, shard state and sink
    (on a cluster: an absolute path on storage every node mounts at that path).

    Ray's token authentication: a client session must run with ``RAY_AUTH_MODE=token`` in
    its environment *before Python starts* (Ray reads it once) and hold the cluster's
    token (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN_PATH`` or ``RAY_AUTH_TOKEN``)."""
    if not ray.is_initialized():
        if address is None:
            ray.init(namespace=NAMESPACE, include_dashboard=False)
        else:
            _attach(address)
    try:
        return Control(ray.get_actor(CONTROL, namespace=NAMESPACE))
    except ValueError:
        if not start:
            raise ConfigError(f"no evoagg control plane runs on this Ray cluster (actor {CONTROL!r} in namespace {NAMESPACE!r})") from None
    detached = options.pop("detached", True)
    where = str(Path(root or "evoagg-state").resolve())
    opts = RemoteControl.options(name=CONTROL, namespace=NAMESPACE, get_if_exists=True, lifetime="detached" if detached else None)  # type: ignore[attr-defined]
    actor = opts.remote(where, detached=detached, **options)
    _wait_until_serving(actor)
    return Control(actor)


def _wait_until_serving(actor: Any, within_s: float = 120.0) -> None:
    """Returns once the new control plane's shards and registry answer (a shard recovering
    a long journal may take a while); raises what is wrong when they do not in ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        st = ray.get(actor.status.remote())
        down = {name: sh["error"] for name, sh in st["shards"].items() if not sh["reachable"]}
        if not st["registry"]["reachable"]:
            down["registry"] = st["registry"]["error"]
        if not down:
            return
        if time.monotonic() > deadline:
            raise Unavailable(f"the control plane started, but these do not answer after {within_s:.0f} s: {down}")
        time.sleep(1.0)
