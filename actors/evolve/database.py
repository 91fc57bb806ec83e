"""The candidate database: every evaluated candidate of every tenant, in one SQLite file.

Why SQLite in WAL mode: the run must survive a restart (resume from the file), and the
dashboards, CLI and other actors want to read while the engine writes. WAL lets readers
proceed during a write without blocking it.

**One writer.** Exactly one process, the owner actor of the run, opens the database
writable and performs every ``add``, ``set_commit`` and ``save_run_state``; everyone
else opens it with ``CandidateDB(path, readonly=True)``, a ``mode=ro`` URI connection
that SQLite itself refuses to write through. Nothing here locks across processes beyond
what SQLite does, so two writers would interleave generations unpredictably; keeping
a single writer is what makes a run replay from its seed. A ``CandidateDB`` is used from
the thread that opened it (``sqlite3``'s default check), as a Ray actor's one thread does.

Readers that want a summary call ``snapshot(org)``: a small frozen value (bests, counts,
totals), not the table, so it can be sent between actors cheaply.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any

from actors.evolve.record import STATUSES, CandidateRecord

SCHEMA_VERSION = 1

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS candidates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    org INTEGER NOT NULL,
    parent_id TEXT,
    island INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    proposer TEXT NOT NULL,
    model TEXT,
    prompt TEXT NOT NULL,
    patch TEXT NOT NULL,
    source TEXT NOT NULL,
    source_hash TEXT NOT NULL,
    commit_sha TEXT,
    report TEXT,
    status TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
    rejected_stage TEXT,
    reason TEXT NOT NULL,
    msg_per_s REAL,
    ratio_to_generic REAL,
    ratio_to_specialized REAL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    created_at REAL NOT NULL,
    seconds REAL NOT NULL,
    genome TEXT
);
CREATE INDEX IF NOT EXISTS candidates_island ON candidates (org, island, status);
CREATE INDEX IF NOT EXISTS candidates_hash ON candidates (org, source_hash);
CREATE INDEX IF NOT EXISTS candidates_parent ON candidates (parent_id);
CREATE TABLE IF NOT EXISTS run_state (
    org INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (org, key)
);
"""

_FIELDS = tuple(f.name for f in fields(CandidateRecord))
_COLUMNS = tuple("commit_sha" if f == "commit" else f for f in _FIELDS)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM candidates"
_BEST_ORDER = "ORDER BY ratio_to_generic DESC, id ASC"
_ACCEPTED = "status = 'accepted' AND ratio_to_generic IS NOT NULL"


class SchemaMismatch(RuntimeError):
    """The file was written by another schema version; resuming from it would misread it."""


@dataclass(frozen=True)
class IslandSummary:
    """One island at a glance."""

    island: int
    candidates: int
    accepted: int
    generations: int
    """Highest generation recorded on the island (the starting point is generation 0)."""
    best_id: str | None
    best_fitness: float | None
    best_commit: str | None


@dataclass(frozen=True)
class Snapshot:
    """What readers of a run get: bests and counts, never the table itself."""

    org: int
    candidates: int
    by_status: dict[str, int]
    by_rejected_stage: dict[str, int]
    islands: tuple[IslandSummary, ...]
    best_id: str | None
    best_island: int | None
    best_fitness: float | None
    best_commit: str | None
    tokens_in: int
    tokens_out: int
    cost_usd: float
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def encode_rng_state(rng: random.Random) -> list[Any]:
    """``rng``'s state as JSON (tuples become lists), so ``save_run_state`` can store it."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def decode_rng_state(state: list[Any]) -> random.Random:
    """A ``random.Random`` that continues exactly where the encoded one stopped."""
    rng = random.Random()
    rng.setstate((state[0], tuple(state[1]), state[2]))
    return rng


def _row_to_record(row: tuple[Any, ...]) -> CandidateRecord:
    data = dict(zip(_FIELDS, row, strict=True))
    for key in ("report", "genome"):
        if data[key] is not None:
            data[key] = json.loads(data[key])
    return CandidateRecord(**data)


def _record_to_row(record: CandidateRecord) -> tuple[Any, ...]:
    values = []
    for name in _FIELDS:
        value = getattr(record, name)
        if name in ("report", "genome") and value is not None:
            value = json.dumps(value, sort_keys=True, allow_nan=True)
        values.append(value)
    return tuple(values)


class CandidateDB:
    """The candidate table of a run (all tenants), its run state, and the summaries readers need.

    ``readonly=True`` opens a ``mode=ro`` connection: for everyone but the owner actor.
    """

    def __init__(self, path: Path | str, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"candidate database {self.path} does not exist")
            # Autocommit: a stray write fails without leaving a transaction open that would pin
            # this reader to an old snapshot of the file.
            self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across process crashes in WAL mode (only power loss may lose the last commits).
            self._conn.execute("PRAGMA synchronous=NORMAL")
            with self._conn:
                self._conn.executescript(_SCHEMA)
                self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        found = self.schema_version()
        if found != SCHEMA_VERSION:
            self._conn.close()
            raise SchemaMismatch(f"{self.path}: schema version {found}, this code reads {SCHEMA_VERSION}")

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> CandidateDB:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection, for ad-hoc reads (and for tests to show a reader cannot write)."""
        return self._conn

    def schema_version(self) -> int | None:
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:  # no meta table: not one of ours
            return None
        return int(row[0]) if row else None

    def journal_mode(self) -> str:
        return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])

    # -- writes (owner actor only) -----------------------------------------------------

    def add(self, record: CandidateRecord) -> None:
        """Stores ``record``; an id already present is an error (ids are never reused)."""
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._conn:
            self._conn.execute(f"INSERT INTO candidates ({', '.join(_COLUMNS)}) VALUES ({placeholders})", _record_to_row(record))

    def set_commit(self, id: str, commit: str) -> None:
        """Records the lineage commit of an accepted candidate (committed after it was added)."""
        with self._conn:
            cur = self._conn.execute("UPDATE candidates SET commit_sha = ? WHERE id = ?", (commit, id))
        if cur.rowcount != 1:
            raise KeyError(id)

    def save_run_state(self, org: int, key: str, value: Any) -> None:
        """Stores a JSON-serialisable value (e.g. an island's generation counter, an RNG
        state from ``encode_rng_state``) under ``(org, key)``, replacing the previous one."""
        text = json.dumps(value, sort_keys=True)
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO run_state (org, key, value) VALUES (?, ?, ?)", (org, key, text))

    # -- reads -----------------------------------------------------------------------

    def get(self, id: str) -> CandidateRecord | None:
        row = self._conn.execute(f"{_SELECT} WHERE id = ?", (id,)).fetchone()
        return _row_to_record(row) if row else None

    def records(self, org: int) -> list[CandidateRecord]:
        """Every record of ``org`` in insertion order (exports and audits, not hot paths)."""
        return [_row_to_record(r) for r in self._conn.execute(f"{_SELECT} WHERE org = ? ORDER BY seq", (org,))]

    def island_population(self, org: int, island: int, limit: int | None = None) -> list[CandidateRecord]:
        """The island's accepted candidates with a fitness, best first (ties by id), at most ``limit``."""
        sql = f"{_SELECT} WHERE org = ? AND island = ? AND {_ACCEPTED} {_BEST_ORDER}"
        params: tuple[Any, ...] = (org, island)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        return [_row_to_record(r) for r in self._conn.execute(sql, params)]

    def best(self, org: int, island: int | None = None) -> CandidateRecord | None:
        """The fittest accepted candidate of ``org`` (of one island when given); ties by id."""
        if island is None:
            row = self._conn.execute(f"{_SELECT} WHERE org = ? AND {_ACCEPTED} {_BEST_ORDER} LIMIT 1", (org,)).fetchone()
        else:
            row = self._conn.execute(f"{_SELECT} WHERE org = ? AND island = ? AND {_ACCEPTED} {_BEST_ORDER} LIMIT 1", (org, island)).fetchone()
        return _row_to_record(row) if row else None

    def by_source_hash(self, org: int, source_hash: str) -> CandidateRecord | None:
        """The first evaluation of this source (a ``duplicate`` record is never returned: it
        points at the original). The engine looks here before building, so equal sources
        are built and verified once; whether to retry an ``error`` is the caller's call."""
        row = self._conn.execute(f"{_SELECT} WHERE org = ? AND source_hash = ? AND status != 'duplicate' ORDER BY seq LIMIT 1", (org, source_hash)).fetchone()
        return _row_to_record(row) if row else None

    def children_count(self, id: str) -> int:
        """Children proposed from ``id``, whatever their outcome: selection penalises parents
        that were tried often, not only those that succeeded."""
        return int(self._conn.execute("SELECT COUNT(*) FROM candidates WHERE parent_id = ?", (id,)).fetchone()[0])

    def children_counts(self, org: int, ids: Iterable[str] | None = None) -> dict[str, int]:
        """``children_count`` for many parents at once (all parents of ``org`` when ``ids`` is None)."""
        rows = self._conn.execute("SELECT parent_id, COUNT(*) FROM candidates WHERE org = ? AND parent_id IS NOT NULL GROUP BY parent_id", (org,))
        counts = {str(p): int(n) for p, n in rows}
        if ids is None:
            return counts
        return {i: counts.get(i, 0) for i in ids}

    def run_state(self, org: int, key: str) -> Any:
        """The value saved under ``(org, key)``, or None: what a resumed run continues from."""
        row = self._conn.execute("SELECT value FROM run_state WHERE org = ? AND key = ?", (org, key)).fetchone()
        return json.loads(row[0]) if row else None

    def run_state_keys(self, org: int) -> list[str]:
        return [str(r[0]) for r in self._conn.execute("SELECT key FROM run_state WHERE org = ? ORDER BY key", (org,))]

    @contextmanager
    def _read_transaction(self) -> Iterator[None]:
        """Several SELECTs that see one state of the file: in WAL mode a read transaction pins
        a snapshot, so a summary never mixes counts from before and after a writer's commit."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    def snapshot(self, org: int) -> Snapshot:
        """Bests, counts and totals of ``org``: a few aggregate queries in one read transaction."""
        with self._read_transaction():
            return self._snapshot(org)

    def _snapshot(self, org: int) -> Snapshot:
        c = self._conn
        by_status = {str(s): int(n) for s, n in c.execute("SELECT status, COUNT(*) FROM candidates WHERE org = ? GROUP BY status ORDER BY status", (org,))}
        by_stage = {
            str(s): int(n)
            for s, n in c.execute(
                "SELECT rejected_stage, COUNT(*) FROM candidates WHERE org = ? AND status = 'rejected' AND rejected_stage IS NOT NULL "
                "GROUP BY rejected_stage ORDER BY rejected_stage",
                (org,),
            )
        }
        totals = c.execute(
            "SELECT COUNT(*), COALESCE(SUM(tokens_in), 0), COALESCE(SUM(tokens_out), 0), COALESCE(SUM(cost_usd), 0.0), COALESCE(SUM(seconds), 0.0) "
            "FROM candidates WHERE org = ?",
            (org,),
        ).fetchone()
        islands = []
        for island, n, accepted, gens in c.execute(
            "SELECT island, COUNT(*), SUM(status = 'accepted'), MAX(generation) FROM candidates WHERE org = ? GROUP BY island ORDER BY island", (org,)
        ):
            b = self.best(org, int(island))
            islands.append(
                IslandSummary(
                    island=int(island),
                    candidates=int(n),
                    accepted=int(accepted),
                    generations=int(gens),
                    best_id=b.id if b else None,
                    best_fitness=b.fitness if b else None,
                    best_commit=b.commit if b else None,
                )
            )
        top = self.best(org)
        return Snapshot(
            org=org,
            candidates=int(totals[0]),
            by_status=by_status,
            by_rejected_stage=by_stage,
            islands=tuple(islands),
            best_id=top.id if top else None,
            best_island=top.island if top else None,
            best_fitness=top.fitness if top else None,
            best_commit=top.commit if top else None,
            tokens_in=int(totals[1]),
            tokens_out=int(totals[2]),
            cost_usd=float(totals[3]),
            seconds=float(totals[4]),
        )

    def stats(self, org: int) -> dict[str, Any]:
        """Per proposer and model: candidates, acceptance rate, best fitness, tokens, cost and
        time; what tells whether an LLM's tokens buy more than the offline proposer's search."""
        rows = self._conn.execute(
            "SELECT proposer, COALESCE(model, ''), COUNT(*), SUM(status = 'accepted'), SUM(status = 'duplicate'), "
            f"MAX(CASE WHEN {_ACCEPTED} THEN ratio_to_generic END), SUM(tokens_in), SUM(tokens_out), SUM(cost_usd), SUM(seconds) "
            "FROM candidates WHERE org = ? GROUP BY proposer, COALESCE(model, '') ORDER BY proposer, COALESCE(model, '')",
            (org,),
        )
        out: list[dict[str, Any]] = []
        for proposer, model, n, accepted, duplicate, best, tin, tout, cost, secs in rows:
            out.append(
                {
                    "proposer": proposer,
                    "model": model or None,
                    "candidates": int(n),
                    "accepted": int(accepted),
                    "duplicates": int(duplicate),
                    "acceptance_rate": int(accepted) / int(n),
                    "best_fitness": best,
                    "tokens_in": int(tin),
                    "tokens_out": int(tout),
                    "cost_usd": float(cost),
                    "seconds": float(secs),
                    "cost_per_accepted_usd": float(cost) / int(accepted) if accepted else None,
                }
            )
        return {"org": org, "schema_version": SCHEMA_VERSION, "by_proposer": out}
