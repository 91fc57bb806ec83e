"""The candidate database: round trips, novelty, snapshots, WAL, resume and read-only readers."""

from __future__ import annotations

import random
import sqlite3
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.evolve.database import SCHEMA_VERSION, CandidateDB, SchemaMismatch, decode_rng_state, encode_rng_state
from actors.evolve.record import CandidateRecord, hash_source
from tests.support.records import record


def rec(id: str, **kw: Any) -> CandidateRecord:
    fields: dict[str, Any] = {
        "proposer": "llm",
        "model": "some-model",
        "prompt": "make it faster",
        "patch": "--- a\n+++ b\n",
        "report": {"accepted": True, "stages": [{"name": "build", "status": "passed", "details": {"output": ""}}], "ratio": 1.25},
        "msg_per_s": 123456.5,
        "ratio_to_generic": 1.5,
        "ratio_to_specialized": 1.05,
        "tokens_in": 1000,
        "tokens_out": 200,
        "cost_usd": 0.01,
        "created_at": 1_700_000_000.25,
        "seconds": 12.5,
        "genome": {"unroll": 4, "flags": [True, False], "nested": {"x": 0.5}},
    }
    fields.update(kw)
    return record(id, fields.pop("source", None), **fields)


@pytest.fixture
def db(tmp_path: Path) -> Any:
    with CandidateDB(tmp_path / "run" / "candidates.db") as d:
        yield d


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(
    report=st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    genome=st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    model=st.none() | st.text(max_size=10),
    ratio=st.none() | st.floats(allow_nan=False),
    status=st.sampled_from(["accepted", "rejected", "duplicate", "error"]),
    source=st.text(max_size=200),
)
def test_round_trip_with_json_columns(
    report: dict[str, Any] | None, genome: dict[str, Any] | None, model: str | None, ratio: float | None, status: str, source: str
) -> None:
    r = rec("x", report=report, genome=genome, model=model, ratio_to_generic=ratio, status=status, source=source, parent_id="p", commit=None)
    with tempfile.TemporaryDirectory() as tmp, CandidateDB(Path(tmp) / "c.db") as d:
        d.add(r)
        assert d.get("x") == r
        assert d.get("missing") is None


def test_ids_are_unique_and_status_is_checked(db: CandidateDB) -> None:
    db.add(rec("a"))
    with pytest.raises(sqlite3.IntegrityError):
        db.add(rec("a", generation=2))
    with pytest.raises(ValueError):
        rec("b", status="maybe")


def test_set_commit(db: CandidateDB) -> None:
    db.add(rec("a"))
    db.set_commit("a", "ab" * 20)
    got = db.get("a")
    assert got is not None and got.commit == "ab" * 20
    with pytest.raises(KeyError):
        db.set_commit("nope", "00" * 20)


def test_novelty_by_source_hash(db: CandidateDB) -> None:
    first = rec("a", source="fn same() {}")
    db.add(first)
    db.add(rec("b", source="fn same() {}", status="duplicate", ratio_to_generic=None, reason="same source as a"))
    assert db.by_source_hash(1042, first.source_hash) == first  # the original, never the duplicate record
    assert db.by_source_hash(1042, hash_source("fn other() {}")) is None
    assert db.by_source_hash(2077, first.source_hash) is None  # novelty is per tenant


def test_population_best_and_children(db: CandidateDB) -> None:
    db.add(rec("root", ratio_to_generic=1.0))
    db.add(rec("b", parent_id="root", ratio_to_generic=1.4))
    db.add(rec("a", parent_id="root", ratio_to_generic=1.4))
    db.add(rec("c", parent_id="a", ratio_to_generic=9.0, status="rejected", rejected_stage="differential"))
    db.add(rec("d", parent_id="a", island=1, ratio_to_generic=1.2))
    db.add(rec("e", org=2077, ratio_to_generic=5.0))
    assert [r.id for r in db.island_population(1042, 0)] == ["a", "b", "root"]  # accepted only, best first, ties by id
    assert [r.id for r in db.island_population(1042, 0, limit=2)] == ["a", "b"]
    best = db.best(1042)
    assert best is not None and best.id == "a"  # c is faster but rejected
    best1 = db.best(1042, island=1)
    assert best1 is not None and best1.id == "d"
    assert db.best(1042, island=7) is None
    assert db.children_count("root") == 2 and db.children_count("a") == 2 and db.children_count("d") == 0
    assert db.children_counts(1042) == {"root": 2, "a": 2}
    assert db.children_counts(1042, ["a", "d"]) == {"a": 2, "d": 0}
    assert [r.id for r in db.records(1042)] == ["root", "b", "a", "c", "d"]


def test_snapshot_contents(db: CandidateDB) -> None:
    db.add(rec("s", island=0, generation=0, ratio_to_generic=1.0, tokens_in=0, tokens_out=0, cost_usd=0.0, seconds=1.0))
    db.add(rec("a", island=0, generation=1, ratio_to_generic=1.3, seconds=2.0))
    db.add(rec("b", island=0, generation=2, status="rejected", rejected_stage="build", ratio_to_generic=None, seconds=3.0))
    db.add(rec("c", island=1, generation=3, ratio_to_generic=1.7, seconds=4.0))
    db.add(rec("d", island=1, generation=1, status="rejected", rejected_stage="differential", seconds=5.0))
    db.add(rec("e", island=1, generation=2, status="rejected", rejected_stage="differential", seconds=6.0))
    db.add(rec("f", island=2, generation=1, status="duplicate", ratio_to_generic=None, seconds=7.0))
    db.add(rec("g", island=2, generation=1, status="error", ratio_to_generic=None, seconds=8.0))
    db.add(rec("other-org", org=2077, ratio_to_generic=99.0))
    db.set_commit("c", "cc" * 20)
    snap = db.snapshot(1042)
    assert snap.candidates == 8
    assert snap.by_status == {"accepted": 3, "rejected": 3, "duplicate": 1, "error": 1}
    assert snap.by_rejected_stage == {"build": 1, "differential": 2}
    assert (snap.best_id, snap.best_island, snap.best_fitness, snap.best_commit) == ("c", 1, 1.7, "cc" * 20)
    assert snap.tokens_in == 7 * 1000 and snap.tokens_out == 7 * 200
    assert snap.cost_usd == pytest.approx(0.07) and snap.seconds == pytest.approx(36.0)
    by_island = {i.island: i for i in snap.islands}
    assert sorted(by_island) == [0, 1, 2]
    assert (by_island[0].best_id, by_island[0].best_fitness, by_island[0].generations, by_island[0].candidates, by_island[0].accepted) == ("a", 1.3, 2, 3, 2)
    assert (by_island[1].best_id, by_island[1].best_commit, by_island[1].generations) == ("c", "cc" * 20, 3)
    assert (by_island[2].best_id, by_island[2].accepted) == (None, 0)
    assert snap.to_json()["islands"][1]["best_id"] == "c"
    empty = db.snapshot(1)
    assert empty.candidates == 0 and empty.best_id is None and empty.islands == () and empty.by_status == {}


def test_stats_by_proposer(db: CandidateDB) -> None:
    db.add(rec("a", proposer="llm", model="m1", cost_usd=0.5))
    db.add(rec("b", proposer="llm", model="m1", status="rejected", rejected_stage="build", cost_usd=0.5))
    db.add(rec("c", proposer="offline", model=None, cost_usd=0.0, tokens_in=0, tokens_out=0, ratio_to_generic=1.1))
    s = db.stats(1042)
    assert s["schema_version"] == SCHEMA_VERSION
    llm, offline = s["by_proposer"]
    assert (llm["proposer"], llm["model"], llm["candidates"], llm["accepted"], llm["acceptance_rate"]) == ("llm", "m1", 2, 1, 0.5)
    assert llm["cost_per_accepted_usd"] == pytest.approx(1.0) and llm["best_fitness"] == 1.5
    assert (offline["proposer"], offline["model"], offline["best_fitness"], offline["tokens_in"]) == ("offline", None, 1.1, 0)


def test_wal_mode_is_on(db: CandidateDB) -> None:
    assert db.journal_mode() == "wal"
    raw = sqlite3.connect(db.path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_reopen_keeps_everything_and_resumes_the_rng(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    rng = random.Random(42)
    rng.random()
    records = [rec(f"c{i}", island=i % 2, generation=i, parent_id=f"c{i - 1}" if i else None) for i in range(5)]
    with CandidateDB(path) as d:
        for r in records:
            d.add(r)
        d.set_commit("c3", "33" * 20)
        d.save_run_state(1042, "island-0", {"generation": 4, "rng": encode_rng_state(rng)})
        d.save_run_state(1042, "archive", {"capacity": 3, "entries": []})
        d.save_run_state(1042, "archive", {"capacity": 4, "entries": []})  # replaces
        before = d.snapshot(1042)
    expected = [rng.random() for _ in range(5)]
    with CandidateDB(path) as d:
        assert [d.get(r.id) for r in records] == [r if r.id != "c3" else replace(r, commit="33" * 20) for r in records]
        assert d.snapshot(1042) == before
        assert d.run_state(1042, "archive") == {"capacity": 4, "entries": []}
        assert d.run_state(1042, "missing") is None and d.run_state(2077, "archive") is None
        assert d.run_state_keys(1042) == ["archive", "island-0"]
        state = d.run_state(1042, "island-0")
        assert state["generation"] == 4
        resumed = decode_rng_state(state["rng"])
        assert [resumed.random() for _ in range(5)] == expected


def test_readonly_reader_cannot_write_but_sees_commits(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with pytest.raises(FileNotFoundError):
        CandidateDB(path, readonly=True)
    with CandidateDB(path) as writer, CandidateDB(path, readonly=True) as reader:
        writer.add(rec("a"))
        got = reader.get("a")
        assert got is not None and got.id == "a"
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.add(rec("b"))
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.save_run_state(1042, "k", 1)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.connection.execute("DELETE FROM candidates")
        writer.add(rec("c"))
        assert reader.snapshot(1042).candidates == 2
        with reader._read_transaction():  # what snapshot() runs in: one state of the file throughout
            assert reader.snapshot(1042).candidates == 2
            writer.add(rec("d"))
            assert reader.snapshot(1042).candidates == 2
        assert reader.snapshot(1042).candidates == 3
        assert writer.get("b") is None


def test_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with CandidateDB(path) as d:
        assert d.schema_version() == SCHEMA_VERSION
        with d.connection:
            d.connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(SchemaMismatch, match="99"):
        CandidateDB(path)
