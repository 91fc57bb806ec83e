"""A shard's state: the orgs it serves (one :class:`Lane` each), what it has
acknowledged, its samples of traffic, and its journal. No Ray: the actor shell
(:mod:`actors.shard.actor`) translates remote calls into these methods.

**What an acknowledgement means.** ``ingest`` returns only after the batch was run
and appended to the journal; only then are the rows it flushed handed to the sink.
A restarted shard loads its last checkpoint and replays the journal after it, through
the same code, so it ends in the state it had after its last acknowledged batch: no
acknowledged message is lost, and none is counted twice. A batch the shard never
acknowledged (it died first) is sent again by the client, under the same
``(source, seq)``; a batch already journaled is recognised by that pair and
acknowledged again without being counted (``duplicate``). Rows reach the sink only
for journaled batches, so a replay emits exactly the rows emitted before, under the
same flush numbers, and the sink (idempotent per org and flush number) ends the same.

Journal records (tuples; the first item names them)::

    ("add", config, entry)                  an org starts being served
    ("batch", org, source, seq, payloads, trapped)  a batch acknowledged; ``trapped``: the
                                            indices of messages that trapped the module
    ("module", org, entry, fallback)        the module whose results count changed
    ("bad", org, version)                   a version is bad (rolled back, rejected, revoked)
    ("drain", org)                          every bucket flushed
    ("out", org) / ("in", export)           an org moved away / arrived
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from actors.config import TenantConfig
from actors.errors import ModuleRejected, NotServed, PayloadError
from actors.kernel.abi import by_reason, config_hash
from actors.reservoir import ShadowSampler
from actors.shard.lane import Event, Flushed, KernelFactory, Lane, LaneState, ModuleEntry, PendingSwap, Prepared, Promoted, RolledBack, SwapRejected
from actors.shard.settings import ShardSettings
from actors.signing import SignedManifest, TrustStore, check_module
from actors.sink import Sink


class Journal(Protocol):
    """Where acknowledged work is made durable (:class:`actors.shard.store.ShardStore`)."""

    def append(self, record: tuple[Any, ...]) -> None: ...

    def checkpoint(self, snapshot: ShardSnapshot) -> None: ...


class RegistryPeer(Protocol):
    """The one call a shard makes to the registry on its own: a version is bad."""

    def report_bad(self, org: int, config_hash: str, version: int, reason: str, reporter: str) -> None: ...


@dataclass
class OrgExport:
    """An org with everything it needs elsewhere: its lane, its samples, what it acknowledged."""

    lane: LaneState
    samples: dict[str, Any]
    seen: dict[str, int]


@dataclass
class ShardSnapshot:
    """A checkpoint: every org's export and the random generator's state."""

    name: str
    orgs: dict[int, OrgExport]
    rng_state: Any
    batches: int


@dataclass
class Ack:
    """What the caller of ``ingest`` gets back: the batch is durable and counted (once)."""

    org: int
    source: str
    seq: int
    messages: int
    accepted: int
    rejected: dict[str, int]
    duplicate: bool
    version: int
    rows: int = 0
    events: list[str] = field(default_factory=list)


class ShardState:
    def __init__(
        self,
        name: str,
        settings: ShardSettings,
        make_kernel: KernelFactory,
        trust: TrustStore,
        clock: Callable[[], float],
        rng: random.Random,
        journal: Journal,
        sink: Sink,
        registry: RegistryPeer | None = None,
        log: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.make_kernel = make_kernel
        self.trust = trust
        self.clock = clock
        self.rng = rng
        self.journal = journal
        self.sink = sink
        self.registry = registry
        self.log = log or (lambda what, fields: None)
        self.lanes: dict[int, Lane] = {}
        self.sampler = ShadowSampler(settings.shadow)
        self.seen: dict[int, dict[str, int]] = {}
        self.batches = 0
        self.since_checkpoint = 0
        self.last_checkpoint = clock()
        self.replaying = False
        self.history: list[dict[str, Any]] = []
        """Swaps, rejections and rollbacks, newest last (bounded)."""

    # --- tenants ---------------------------------------------------------------------------

    def add_tenant(self, config: TenantConfig, signed: SignedManifest, wasm: bytes) -> dict[str, Any]:
        """Starts serving ``config.org`` with a signed module (checked like any other)."""
        if config.org in self.lanes:
            raise ModuleRejected("already_served", f"org {config.org} is already served by {self.name}")
        check_module(signed, wasm, self.trust)
        entry = ModuleEntry.of(signed, wasm)
        lane = Lane(config, entry, self.settings, self.make_kernel, self.trust, self.clock)
        if signed.manifest.org != config.org or signed.manifest.config_hash != lane.config_hash:
            raise ModuleRejected("wrong_tenant", f"module is for org {signed.manifest.org}, not for org {config.org} with this config")
        self.lanes[config.org] = lane
        self.seen.setdefault(config.org, {})
        self._journal(("add", config, entry))
        return lane.status()

    def lane(self, org: int) -> Lane:
        try:
            return self.lanes[org]
        except KeyError:
            raise NotServed(org, self.name) from None

    # --- the data path ---------------------------------------------------------------------

    def last_seq(self, org: int, source: str) -> int:
        """The highest batch number acknowledged for ``source`` on ``org`` (-1: none): where a
        restarted client resumes its numbering, so its first batches are not taken for repeats."""
        self.lane(org)  # NotServed when the org is not here (the client asks the right shard)
        return self.seen.get(org, {}).get(source, -1)

    def ingest(self, org: int, source: str, seq: int, payloads: Sequence[bytes], skip: frozenset[int] = frozenset()) -> Ack:
        lane = self.lane(org)
        if len(payloads) > self.settings.max_batch_messages:
            raise PayloadError("batch_too_large", f"{len(payloads)} messages in one call; at most {self.settings.max_batch_messages}")
        seen = self.seen.setdefault(org, {})
        if seq <= seen.get(source, -1):
            return Ack(org, source, seq, len(payloads), 0, {}, True, lane.served.entry.version)
        res, events = lane.ingest(payloads, f"{source}#{seq}", skip)
        self.sampler.offer(org, payloads, self.rng)
        seen[source] = seq
        self.batches += 1
        trapped = tuple(r.index for r in res.rejections if r.reason == "kernel_trap")
        self._journal(("batch", org, source, seq, tuple(payloads), trapped))
        rows = self._handle(lane, events)
        ack = Ack(
            org, source, seq, len(payloads), res.accepted, by_reason(res.rejections), False, lane.served.entry.version, rows, [type(e).__name__ for e in events]
        )
        self._maybe_checkpoint()
        return ack

    def drain(self, org: int) -> int:
        """Flushes every open bucket of ``org`` downstream; returns the rows emitted."""
        lane = self.lane(org)
        events = lane.drain()
        self._journal(("drain", org))
        return self._handle(lane, events)

    def _handle(self, lane: Lane, events: list[Event]) -> int:
        """Acts on a lane's events, after the work that caused them is journaled."""
        rows = 0
        # Journal records and reports first: a failing sink must not skip them.
        for e in sorted(events, key=lambda e: isinstance(e, Flushed)):
            if isinstance(e, Flushed):
                self.sink.write(e.org, e.flush_seq, e.rows)
                rows += len(e.rows)
            elif isinstance(e, Promoted):
                self._journal(("module", e.org, e.entry, lane.fallback))
            elif isinstance(e, RolledBack | SwapRejected):
                version = e.bad_version if isinstance(e, RolledBack) else e.version
                report = isinstance(e, RolledBack) or e.report_bad
                if report:
                    self._journal(("bad", e.org, version))
                    if self.registry is not None and not self.replaying:
                        self.registry.report_bad(e.org, lane.config_hash, version, getattr(e, "reason", ""), self.name)
            if not isinstance(e, Flushed):
                self._remember(e)
        return rows

    def _remember(self, e: Event) -> None:
        if self.replaying:
            return
        entry = {"event": type(e).__name__, "at": self.clock(), **{k: v for k, v in vars(e).items() if k != "entry"}}
        if isinstance(e, Promoted):
            entry["version"] = e.entry.version
        self.history.append(entry)
        del self.history[:-200]
        self.log(type(e).__name__, {"shard": self.name, **entry})

    # --- swaps -------------------------------------------------------------------------------

    def begin_swap(self, signed: SignedManifest, wasm: bytes) -> PendingSwap | None:
        """Checks an offered module; returns the swap to prepare, or None (queued or
        already served). Raises ``ModuleRejected`` for a module that must not be used;
        the rejection is counted against the org it names."""
        org = signed.manifest.org
        lane = self.lane(org)
        try:
            return lane.begin_swap(signed, wasm, self.sampler.holdout(org)[: self.settings.swap_check_messages])
        except ModuleRejected as e:
            lane.account.record_swap_rejection(e.reason)
            self._remember(SwapRejected(org, signed.manifest.version, e.reason, str(e), False))
            raise

    def finish_swap(self, org: int, pending: PendingSwap, prepared: Prepared | ModuleRejected) -> list[Event]:
        """Commits a prepared swap (this is the pause) or records why it failed."""
        lane = self.lane(org)
        if isinstance(prepared, ModuleRejected):
            events = lane.abort(pending, prepared.reason, str(prepared))
        else:
            try:
                events = lane.commit(prepared)
            except ModuleRejected as e:
                events = lane.abort(pending, e.reason, str(e))
        self._handle(lane, events)
        return events

    def revoke(self, org: int, version: int, reason: str) -> list[Event]:
        lane = self.lanes.get(org)
        if lane is None:
            return []
        events = lane.revoke(version, reason)
        self._journal(("bad", org, version))
        self._handle(lane, events)
        return events

    # --- moving orgs, checkpoints, recovery ---------------------------------------------------

    def export_org(self, org: int) -> OrgExport:
        """Stops serving ``org`` and returns its state, for another shard's ``import_org``."""
        lane = self.lane(org)
        out = OrgExport(lane.export(), self.sampler.export(org), dict(self.seen.get(org, {})))
        del self.lanes[org]
        self.sampler.drop(org)
        self.seen.pop(org, None)
        self._journal(("out", org))
        return out

    def import_org(self, export: OrgExport) -> dict[str, Any]:
        st = export.lane
        if st.config.org in self.lanes:
            raise ModuleRejected("already_served", f"org {st.config.org} is already served by {self.name}")
        chash = config_hash(st.config)
        for entry in (st.entry, st.fallback):
            if entry is None:
                continue
            # Nothing reaches a lane unsigned, even from another shard.
            if entry.signed is None:
                raise ModuleRejected("unsigned", f"org {st.config.org} version {entry.version} arrives without a signed manifest")
            check_module(entry.signed, entry.wasm, self.trust)
            if entry.signed.manifest.org != st.config.org or entry.signed.manifest.config_hash != chash:
                raise ModuleRejected("wrong_tenant", f"version {entry.version} is not signed for org {st.config.org} with this config")
        lane = Lane(st.config, st.entry, self.settings, self.make_kernel, self.trust, self.clock, st)
        self.lanes[st.config.org] = lane
        self.sampler.import_(st.config.org, export.samples)
        self.seen[st.config.org] = dict(export.seen)
        self._journal(("in", export))
        return lane.status()

    def snapshot(self) -> ShardSnapshot:
        orgs = {org: OrgExport(lane.export(), self.sampler.export(org), dict(self.seen.get(org, {}))) for org, lane in self.lanes.items()}
        return ShardSnapshot(self.name, orgs, self.rng.getstate(), self.batches)

    def checkpoint(self) -> None:
        self.journal.checkpoint(self.snapshot())
        self.since_checkpoint = 0
        self.last_checkpoint = self.clock()

    def _maybe_checkpoint(self) -> None:
        if self.replaying:
            return
        every = self.settings.checkpoint_every_batches
        if (every and self.since_checkpoint >= every) or (self.since_checkpoint and self.clock() - self.last_checkpoint >= self.settings.checkpoint_every_s):
            self.checkpoint()

    def _journal(self, record: tuple[Any, ...]) -> None:
        if not self.replaying:
            self.journal.append(record)
            self.since_checkpoint += 1

    def restore(self, snapshot: ShardSnapshot | None, records: Sequence[tuple[Any, ...]]) -> None:
        """Rebuilds the state a crashed shard had after its last journaled record."""
        self.replaying = True
        try:
            if snapshot is not None:
                for export in snapshot.orgs.values():
                    self.import_org(export)
                self.rng.setstate(snapshot.rng_state)
                self.batches = snapshot.batches
            for rec in records:
                self._apply(rec)
        finally:
            self.replaying = False

    def _apply(self, rec: tuple[Any, ...]) -> None:
        kind = rec[0]
        if kind == "add":
            _, config, entry = rec
            self.lanes[config.org] = Lane(config, entry, self.settings, self.make_kernel, self.trust, self.clock)
            self.seen.setdefault(config.org, {})
        elif kind == "batch":
            _, org, source, seq, payloads, trapped = rec
            self.ingest(org, source, seq, payloads, frozenset(trapped))
        elif kind == "module":
            self.lane(rec[1]).adopt(rec[2], rec[3])
        elif kind == "bad":
            self.lane(rec[1]).bad_versions.add(rec[2])
        elif kind == "drain":
            self.drain(rec[1])
        elif kind == "out":
            self.export_org(rec[1])
        elif kind == "in":
            self.import_org(rec[1])
        else:
            raise ValueError(f"unknown journal record {kind!r}")

    # --- reading -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "shard": self.name,
            "batches": self.batches,
            "orgs": {org: {**lane.status(), "samples": self.sampler.stats(org)} for org, lane in sorted(self.lanes.items())},
            "history": list(self.history[-50:]),
        }

    def training(self, org: int) -> list[bytes]:
        """Sampled messages the evolver may see (never the held-back ones)."""
        self.lane(org)
        return self.sampler.training(org)

    def holdout(self, org: int) -> list[bytes]:
        """Held-back messages: for the verifier's shadow stage, never for the evolver."""
        self.lane(org)
        return self.sampler.holdout(org)
