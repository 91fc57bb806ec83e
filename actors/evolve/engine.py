"""The evolution engine on Ray: thin actor shells over the pure core.

    driver (run_evolution) ── per generation ──► IslandActor × I (in parallel)
        │  migration, stagnation, resume            │ choose parent + inspirations (island.py)
        │                                           │ propose (offline | anthropic)
        ▼                                           │ novelty check, then the verifier pool (Ray tasks)
    CandidateStore (one writer) ◄───────────────────┘ record: SQLite row, git commit if accepted

Everything an island decides is in ``island.py`` and ``selection.py`` (no Ray); an island
actor only translates: it asks the store, calls the proposer and the pool, and hands the
record back. Island state that must survive (generation, RNG) is saved in the database
after every generation, so a killed island is recreated and redoes only the generation
it was in: accepted candidates are never lost (they are written before the island moves
on), and a redone generation's candidates get fresh ids.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from actors import placement
from actors.config import TenantConfig
from actors.errors import BudgetExhausted, EvoaggError, ProposalFailed
from actors.evolve import island as isl
from actors.evolve.archive import Archive
from actors.evolve.confirm import confirm
from actors.evolve.database import CandidateDB, decode_rng_state, encode_rng_state
from actors.evolve.lineage import Lineage
from actors.evolve.proposers.base import Proposal, Proposer
from actors.evolve.record import CandidateRecord, hash_source
from actors.evolve.selection import migrate, reseed_from, stagnant
from actors.evolve.settings import EvolutionConfig
from actors.evolve.stats import workload_stats
from actors.evolve.transforms import template_genome
from actors.kernel.build import build
from actors.specialize import materialize, package_name, template_kernel
from actors.verify.stages import Candidate, Context, Report
from actors.verify.tasks import VerifierPool

_confirm = ray.remote(num_cpus=1)(confirm)
DUPLICATE_RETRIES = 4
"""Proposals an offline island may draw per child before a repeat is recorded as a duplicate."""


@ray.remote(num_cpus=0)
class CandidateStore:
    """The one writer of a tenant's candidate database, lineage and archive."""

    def __init__(self, db_path: str, repo_dir: str, cfg: TenantConfig, archive_size: int) -> None:
        self.db = CandidateDB(db_path)
        self.lineage = Lineage(repo_dir, clock=time.time)
        self.cfg = cfg
        saved = self.db.run_state(cfg.org, "archive")
        self.archive = Archive.from_json(saved) if saved else Archive(archive_size)

    def seed(self, record: CandidateRecord) -> CandidateRecord:
        existing = self.db.get(record.id)
        if existing is not None:
            return existing
        record = replace(record, commit=self.lineage.init(self.cfg, record.source))
        self.db.add(record)
        self._admit(record)
        return record

    def add(self, record: CandidateRecord) -> CandidateRecord:
        existing = self.db.get(record.id)
        if existing is not None:  # a step redone after a crash: recorded once
            return existing
        if record.status == "accepted":
            record = replace(record, commit=self.lineage.commit(record, record.island))
            self._admit(record)
        self.db.add(record)
        return record

    def _admit(self, record: CandidateRecord) -> None:
        self.archive = self.archive.admit(record).archive
        self.db.save_run_state(self.cfg.org, "archive", self.archive.to_json())

    def view(self, island: int) -> tuple[list[CandidateRecord], Archive, dict[str, CandidateRecord], dict[str, int]]:
        """What an island needs to choose: its population, the archive, the archive's records, child counts."""
        org = self.cfg.org
        pop = self.db.island_population(org, island)
        seed = self.db.get(f"{org}-seed")
        if seed is not None and all(r.source_hash != seed.source_hash for r in pop):
            pop.append(seed)
        recs = {i: r for i in self.archive.ids() if (r := self.db.get(i)) is not None}
        return pop, self.archive, recs, self.db.children_counts(org, [r.id for r in pop])

    def get(self, cid: str) -> CandidateRecord | None:
        return self.db.get(cid)

    def by_source_hash(self, h: str) -> CandidateRecord | None:
        return self.db.by_source_hash(self.cfg.org, h)

    def fresh_id(self, island: int, generation: int) -> str:
        n = 0
        while self.db.get(isl.candidate_id(self.cfg.org, island, generation, n)) is not None:
            n += 1
        return isl.candidate_id(self.cfg.org, island, generation, n)

    def run_state(self, key: str) -> Any:
        return self.db.run_state(self.cfg.org, key)

    def save_run_state(self, key: str, value: Any) -> None:
        self.db.save_run_state(self.cfg.org, key, value)

    def populations(self, islands: int) -> list[list[CandidateRecord]]:
        return [self.db.island_population(self.cfg.org, i) for i in range(islands)]

    def summary(self) -> dict[str, Any]:
        return self.db.snapshot(self.cfg.org).to_json()

    def records(self) -> list[CandidateRecord]:
        return self.db.records(self.cfg.org)


def make_proposer(cfg: EvolutionConfig) -> Proposer:
    """The configured proposer of one island. A budget object lives in one process, so the
    run's budget is split evenly between the islands (each island is its own actor)."""
    if cfg.proposer == "offline":
        from actors.evolve.proposers.offline import OfflineProposer

        return OfflineProposer()
    from actors.evolve.proposers.anthropic import AnthropicProposer
    from actors.evolve.proposers.base import Budget

    share = Budget(
        max_tokens=cfg.max_tokens // cfg.islands if cfg.max_tokens is not None else None,
        max_usd=cfg.max_usd / cfg.islands if cfg.max_usd is not None else None,
        max_seconds=cfg.max_seconds,
        name="island share of the run",
    )
    return AnthropicProposer(cfg.model, budget=share)


@ray.remote(num_cpus=0, max_restarts=0)
class IslandActor:
    """One island: proposes, verifies and records its children, one generation per call."""

    def __init__(self, index: int, tenant: TenantConfig, cfg: EvolutionConfig, store: Any, ctx_ref: Any, proposer: Proposer | None = None) -> None:
        self.index, self.tenant, self.cfg, self.store = index, tenant, cfg, store
        self.pool = VerifierPool(ctx_ref)
        self.proposer = proposer or make_proposer(cfg)
        # Ray hands an actor the value of a reference passed as an argument.
        ctx: Context = ctx_ref if isinstance(ctx_ref, Context) else ray.get(ctx_ref)
        self.workload = workload_stats(tenant, ctx.training)
        state = ray.get(store.run_state.remote(f"island-{index}"))
        self.rng = decode_rng_state(state["rng"]) if state else random.Random(cfg.seed * 1000 + index)
        # Per parent, its last child that failed: what the next proposal from it is told.
        self.failures: dict[str, CandidateRecord] = {}
        self.crate = Path(tempfile.mkdtemp(prefix=f"evoagg-island{index}-"))

    def run_generation(self, generation: int) -> dict[str, Any]:
        seed = ray.get(self.store.get.remote(f"{self.tenant.org}-seed"))
        out: dict[str, Any] = {"island": self.index, "generation": generation, "built": 0, "accepted": 0, "rejected": {}, "duplicates": 0}
        for _ in range(self.cfg.children):
            t0 = time.monotonic()
            pop, archive, recs, counts = ray.get(self.store.view.remote(self.index))
            choice = isl.choose(pop, archive, recs, counts, self.cfg, self.rng)
            materialize(self.tenant, self.crate, choice.parent.source)
            req = isl.request(self.tenant.org, self.crate, choice, self.failures.get(choice.parent.id), None, self.workload)
            try:
                # A cheap proposer (offline) may ask again for a source not evaluated yet;
                # a costly one (a model) is asked once, and a repeat is recorded as such.
                for _ in range(DUPLICATE_RETRIES if self.proposer.name == "offline" else 1):
                    proposal = self.proposer.propose(req, self.rng)
                    dup = ray.get(self.store.by_source_hash.remote(hash_source(proposal.source)))
                    if dup is None:
                        break
            except BudgetExhausted as e:
                out["budget_exhausted"] = str(e)
                if e.tokens_in or e.tokens_out:  # spent on this proposal before the budget ran out
                    failed = Proposal(choice.parent.source, "", str(e), self.proposer.name, e.model, e.tokens_in, e.tokens_out, e.cost_usd)
                    cid = ray.get(self.store.fresh_id.remote(self.index, generation))
                    rec = isl.record(cid, self.tenant.org, self.index, generation, choice.parent.id, failed, None, None, time.time(),
                                     time.monotonic() - t0, failure=f"BudgetExhausted: {e}")  # fmt: skip
                    ray.get(self.store.add.remote(rec))
                break
            except EvoaggError as e:
                # A proposal that could not be made is recorded (what it spent, why), with the
                # parent's source: it produced none of its own.
                spent = e if isinstance(e, ProposalFailed) else ProposalFailed(str(e))
                failed = Proposal(choice.parent.source, "", str(e), self.proposer.name, spent.model, spent.tokens_in, spent.tokens_out, spent.cost_usd)
                cid = ray.get(self.store.fresh_id.remote(self.index, generation))
                rec = isl.record(cid, self.tenant.org, self.index, generation, choice.parent.id, failed, None, None, time.time(),
                                 time.monotonic() - t0, failure=f"{type(e).__name__}: {e}")  # fmt: skip
                ray.get(self.store.add.remote(rec))
                out["rejected"]["proposal"] = out["rejected"].get("proposal", 0) + 1
                continue
            cid = ray.get(self.store.fresh_id.remote(self.index, generation))
            report: dict[str, Any] | None = None
            if dup is None:
                rep: Report = ray.get(self.pool.submit(Candidate(cid, self.tenant, kernel_src=proposal.source)))
                report = rep.to_json()
                out["built"] += 1
            rec = isl.record(
                cid, self.tenant.org, self.index, generation, choice.parent.id, proposal, report,
                seed.ratio_to_generic if seed else None, time.time(), time.monotonic() - t0, dup.id if dup else None,
            )  # fmt: skip
            ray.get(self.store.add.remote(rec))
            if rec.status == "accepted":
                out["accepted"] += 1
                self.failures.pop(choice.parent.id, None)
            elif rec.status == "duplicate":
                out["duplicates"] += 1
            else:
                out["rejected"][rec.rejected_stage or rec.status] = out["rejected"].get(rec.rejected_stage or rec.status, 0) + 1
                self.failures[choice.parent.id] = rec
        ray.get(self.store.save_run_state.remote(f"island-{self.index}", {"generation": generation + 1, "rng": encode_rng_state(self.rng)}))
        return out


def seed_candidate(tenant: TenantConfig, pool: VerifierPool) -> CandidateRecord:
    """The specialized kernel, verified: the starting point of every island."""
    src = template_kernel()
    rep: Report = ray.get(pool.submit(Candidate(f"{tenant.org}-seed", tenant, kernel_src=src)))
    proposal = Proposal(src, "", "evoagg specialize", "specialize", None, 0, 0, 0.0, genome=template_genome())
    rec = isl.record(f"{tenant.org}-seed", tenant.org, 0, 0, None, proposal, rep.to_json(), None, time.time(), 0.0)
    if rec.status != "accepted":
        raise EvoaggError(f"org {tenant.org}: the specialized kernel itself was rejected ({rec.rejected_stage}: {rec.reason})")
    return replace(rec, ratio_to_specialized=1.0)


def run_evolution(
    tenant: TenantConfig,
    cfg: EvolutionConfig,
    ctx: Context,
    workdir: Path,
    resume: bool = False,
    log: Callable[[str], None] = lambda s: None,
    proposer: Proposer | None = None,
    progress: Callable[[dict[str, Any]], None] = lambda p: None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Evolves ``tenant``'s kernel for ``cfg.generations`` generations on ``cfg.islands``
    islands; returns the summary. ``workdir`` holds ``candidates.sqlite`` and ``lineage/``.
    ``progress`` gets, after each generation, its number, the best fitness so far and the
    generation's counts (built, accepted, rejected by stage). No generation starts after
    ``deadline`` (``time.monotonic()``); the run then confirms and returns what it has."""
    t0 = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "candidates.sqlite"
    if not resume and db_path.exists():
        raise EvoaggError(f"{db_path} exists: pass --resume to continue that run, or use another directory")
    # The store and the islands go where the cluster keeps evolution (its local disk: SQLite WAL).
    store = CandidateStore.options(resources=placement.resources("island")).remote(str(db_path), str(workdir / "lineage"), tenant, cfg.archive_size)  # type: ignore[attr-defined]
    ctx_ref = ray.put(ctx)
    seed = ray.get(store.get.remote(f"{tenant.org}-seed"))
    if seed is None:
        log(f"org {tenant.org}: verifying the specialized starting point")
        seed = ray.get(store.seed.remote(seed_candidate(tenant, VerifierPool(ctx_ref))))
    log(f"org {tenant.org}: specialized kernel x{seed.ratio_to_generic:.2f} over generic")
    start = ray.get(store.run_state.remote("generation")) or 0
    # Racing: a candidate gets more than the screen's rounds only if it may beat the seed.
    if seed.ratio_to_generic and ctx.bar is None:
        ctx_ref = ray.put(replace(ctx, bar=seed.ratio_to_generic))

    def spawn(i: int) -> Any:
        return IslandActor.options(resources=placement.resources("island")).remote(i, tenant, cfg, store, ctx_ref, proposer)  # type: ignore[attr-defined]

    islands = [spawn(i) for i in range(cfg.islands)]
    history: list[list[float | None]] = ray.get(store.run_state.remote("history")) or [[] for _ in range(cfg.islands)]
    restarts = 0
    stopped: str | None = None
    for g in range(start, cfg.generations):
        if deadline is not None and time.monotonic() > deadline:
            log(f"deadline reached before generation {g}: stopping")
            stopped = "deadline"
            break
        results: list[dict[str, Any]] = []
        for i, ref in enumerate([a.run_generation.remote(g) for a in islands]):
            try:
                results.append(ray.get(ref))
            except RayActorError:
                # The island died mid-generation: recreate it from its saved state and redo
                # the generation (what it had recorded stays recorded).
                restarts += 1
                log(f"island {i} died in generation {g}; restarting it")
                islands[i] = spawn(i)
                results.append(ray.get(islands[i].run_generation.remote(g)))
            except RayTaskError as e:
                # A bug in this island's generation (not a bad candidate: those are records)
                # costs that island the generation, not the run.
                log(f"island {i} failed in generation {g}: {e}")
                results.append({"island": i, "generation": g, "built": 0, "accepted": 0, "rejected": {"island_error": 1}, "duplicates": 0})
        pops = ray.get(store.populations.remote(cfg.islands))
        for i in range(cfg.islands):
            best = max((r.fitness for r in pops[i] if r.fitness is not None), default=None)
            history[i].append(best)
        if cfg.migration_every and (g + 1) % cfg.migration_every == 0:
            for i, arrivals in enumerate(migrate(pops)):
                for n, r in enumerate(arrivals):
                    ray.get(store.add.remote(isl.migrant(r, i, g, n)))
        for i in range(cfg.islands):
            if stagnant(history[i], cfg.stagnation):
                donor = reseed_from(pops, i)
                if donor is not None:
                    ray.get(store.add.remote(replace(isl.migrant(donor, i, g, 99), id=f"{tenant.org}-i{i}-g{g:04d}-reseed")))
                    history[i] = [donor.fitness]
        ray.get(store.save_run_state.remote("history", history))
        ray.get(store.save_run_state.remote("generation", g + 1))
        best_now = max((h[-1] for h in history if h and h[-1] is not None), default=None)
        rejected_now: dict[str, int] = {}
        for res in results:
            for k, v in (res["rejected"] or {}).items():
                rejected_now[k] = rejected_now.get(k, 0) + v
        progress(
            {
                "generation": g,
                "generations": cfg.generations,
                "best_ratio": best_now,
                "built": sum(r["built"] for r in results),
                "accepted": sum(r["accepted"] for r in results),
                "rejected": rejected_now,
            }
        )
        exhausted = [r for r in results if "budget_exhausted" in r]
        if exhausted and len(exhausted) == len(results):
            log(f"every island's proposal budget is spent ({exhausted[0]['budget_exhausted']}): stopping after generation {g}")
            stopped = "budget exhausted"
            break
        for res in results:
            rej = res["rejected"] or {}
            head = f"gen {g} island {res['island']}: built {res['built']}, accepted {res['accepted']}"
            log(f"{head}, rejected {rej}, duplicates {res['duplicates']}; best x{best_now or 0:.2f}")
    # The few best by their search fitness, and the seed, measured again side by side:
    # the best of that measurement is the result (see confirm.py: the winner's curse).
    records: list[CandidateRecord] = ray.get(store.records.remote())
    top = sorted((r for r in records if r.fitness is not None and r.proposer not in ("migration", "specialize")), key=lambda r: -(r.fitness or 0))[:3]
    confirmed: dict[str, dict[str, Any]] = ray.get(_confirm.remote([seed, *top], ctx_ref, cfg.confirm_rounds, seed.id)) if cfg.confirm_rounds else {}  # type: ignore[call-arg]
    summary = summarize(tenant, store, seed, time.monotonic() - t0, restarts, confirmed)
    summary["stopped"] = stopped or "generations done"
    # The winner as a module, rebuilt from its source (a build-cache hit: it was verified).
    winner: CandidateRecord = ray.get(store.get.remote(summary["best"]["candidate_id"]))
    with tempfile.TemporaryDirectory(prefix="evoagg-best-") as tmp:
        wasm = build(materialize(tenant, Path(tmp), winner.source), package_name(tenant)).wasm
    (workdir / "best.wasm").write_bytes(wasm)
    summary["best"]["wasm"] = str(workdir / "best.wasm")
    summary["best"]["report"] = winner.report
    summary["best"]["generation"] = winner.generation
    return summary


def run_many(
    tenants: list[tuple[TenantConfig, Context]],
    cfg: EvolutionConfig,
    workdir: Path,
    resume: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> list[dict[str, Any]]:
    """Evolves several tenants at once: one driver thread each (Ray calls are thread-safe);
    their islands and verification tasks share the cluster's CPUs through Ray's scheduler."""
    from concurrent.futures import ThreadPoolExecutor

    def tagged(org: int) -> Callable[[str], None]:
        return lambda m: log(f"[org {org}] {m}")

    with ThreadPoolExecutor(max_workers=len(tenants)) as ex:
        futures = [ex.submit(run_evolution, t, cfg, c, workdir / f"org-{t.org}", resume, tagged(t.org)) for t, c in tenants]
        return [f.result() for f in futures]


def summarize(tenant: TenantConfig, store: Any, seed: CandidateRecord, seconds: float, restarts: int, confirmed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    records: list[CandidateRecord] = ray.get(store.records.remote())
    accepted = [r for r in records if r.status == "accepted" and r.proposer not in ("migration", "specialize")]
    if confirmed:
        best = next(r for r in [seed, *accepted] if r.id == max(confirmed, key=lambda k: (confirmed[k]["ratio"], k)))
    else:
        best = max([*accepted, seed], key=lambda r: (r.fitness or 0.0, r.id))
    by_stage: dict[str, int] = {}
    for r in records:
        if r.status == "rejected":
            by_stage[r.rejected_stage or "?"] = by_stage.get(r.rejected_stage or "?", 0) + 1
    lineage: list[dict[str, Any]] = []
    cur: CandidateRecord | None = best
    while cur is not None:
        lineage.append({"id": cur.id, "ratio_to_generic": cur.ratio_to_generic, "genome": cur.genome, "commit": cur.commit})
        cur = next((r for r in records if r.id == cur.parent_id), None) if cur.parent_id else None
    gens = max((r.generation for r in records), default=0)
    return {
        "org": tenant.org,
        "best": {
            "candidate_id": best.id,
            # Confirmed (measured again beside the others, in the shard's regime) when the
            # run confirms; else as found.
            "ratio_to_generic": confirmed[best.id]["ratio"] if best.id in confirmed else best.ratio_to_generic,
            "ratio_to_generic_ci95": confirmed[best.id]["ci95"] if best.id in confirmed else None,
            "ratio_to_specialized": confirmed[best.id]["to_seed"]["ratio"]
            if best.id in confirmed and "to_seed" in confirmed[best.id]
            else best.ratio_to_specialized,
            "ratio_to_specialized_ci95": confirmed[best.id]["to_seed"]["ci95"] if best.id in confirmed and "to_seed" in confirmed[best.id] else None,
            "ratio_found_in_search": best.ratio_to_generic,
            "commit": best.commit,
            "msg_per_s": best.msg_per_s,
            "genome": best.genome,
        },
        "confirmed": confirmed,
        "specialized_ratio_to_generic": confirmed[seed.id]["ratio"] if seed.id in confirmed else seed.ratio_to_generic,
        "lineage": lineage,
        "generations": gens + 1 if records else 0,
        "candidates": len([r for r in records if r.proposer not in ("migration", "specialize")]),
        "accepted": len(accepted),
        "duplicates": len([r for r in records if r.status == "duplicate"]),
        "rejections_by_stage": by_stage,
        "tokens": sum(r.tokens_in + r.tokens_out for r in records),
        "cost_usd": round(sum(r.cost_usd for r in records), 6),
        "island_restarts": restarts,
        "seconds": round(seconds, 1),
    }
