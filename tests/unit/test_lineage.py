"""A tenant's lineage in git: the starting point on main, accepted candidates on island branches."""

from __future__ import annotations

import hashlib
import itertools
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import git
import pytest

from actors.config import TenantConfig
from actors.evolve.lineage import Lineage, island_branch, parse_trailers, report_digest
from actors.evolve.record import CandidateRecord
from actors.loading import load_tenant
from actors.specialize import EVOLVABLE, materialize, template_kernel
from tests.support.records import record

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cfg() -> TenantConfig:
    return load_tenant(REPO / "configs" / "tenants" / "1042.yaml")


def ticking(start: int = 1_700_000_000, step: int = 60) -> Callable[[], float]:
    """A fake clock: every reading is ``step`` seconds after the previous one."""
    t = itertools.count(start, step)
    return lambda: float(next(t))


def kernel(tag: str) -> str:
    return template_kernel() + f"\n// candidate {tag}\n"


def rec(id: str, parent_id: str | None, island: int, status: str = "accepted", ratio: float | None = 1.25) -> CandidateRecord:
    return record(
        id,
        kernel(id),
        parent_id=parent_id,
        island=island,
        report={"accepted": status == "accepted", "stages": [{"name": "bench", "status": "passed"}], "ratio": ratio},
        status=status,
        rejected_stage=None if status == "accepted" else "differential",
        msg_per_s=250000.5,
        ratio_to_generic=ratio,
        ratio_to_specialized=1.0625,
        seconds=1.0,
    )


RUN = [
    rec("1042-i0-g0001-c0", None, 0, ratio=1.1),
    rec("1042-i0-g0002-c0", "1042-i0-g0001-c0", 0, ratio=1.2),
    rec("1042-i1-g0001-c0", "1042-i0-g0001-c0", 1, ratio=1.3),
    rec("1042-i1-g0002-c0", "1042-i1-g0001-c0", 1, status="rejected", ratio=None),
    rec("1042-i1-g0003-c0", "1042-i1-g0001-c0", 1, ratio=1.4),
]


def play(lin: Lineage, cfg: TenantConfig, records: list[CandidateRecord]) -> dict[str, str]:
    """What the engine does: init, then commit the accepted candidates only."""
    shas = {"main": lin.init(cfg)}
    for r in records:
        if r.status == "accepted":
            shas[r.id] = lin.commit(r, r.island)
    return shas


def test_init_commits_the_specialized_crate_on_main(cfg: TenantConfig, tmp_path: Path) -> None:
    with Lineage(tmp_path / "repo", ticking()) as lin:
        sha = lin.init(cfg)
        assert lin.head("main") == sha and lin.head("island-0") is None
        materialize(cfg, tmp_path / "crate")
        repo = git.Repo(tmp_path / "repo")
        files = sorted(str(b.path) for b in repo.commit(sha).tree.traverse() if isinstance(b, git.Blob))
        assert files == ["Cargo.toml", "src/kernel.rs", "src/lib.rs", "src/spec.rs"]
        for f in files:  # the work tree is checked out at main, clean
            assert (tmp_path / "repo" / f).read_bytes() == (tmp_path / "crate" / f).read_bytes()
        assert not repo.is_dirty(untracked_files=True)
        assert lin.source_at(sha) == template_kernel()
        c = repo.commit(sha)
        assert (c.author.name, c.committer.email, c.committed_date, c.parents) == ("evoagg", "evoagg@localhost", 1_700_000_000, ())
        repo.close()


def test_commits_on_island_branches_follow_parent_ancestry(cfg: TenantConfig, tmp_path: Path) -> None:
    with Lineage(tmp_path / "repo", ticking()) as lin:
        shas = play(lin, cfg, RUN)
        repo = lin.repo
        a, b, c, d = (shas[r.id] for r in RUN if r.status == "accepted")
        assert lin.head(island_branch(0)) == b and lin.head(island_branch(1)) == d
        assert [p.hexsha for p in repo.commit(a).parents] == [shas["main"]]  # no parent candidate: from main
        assert [p.hexsha for p in repo.commit(b).parents] == [a]
        assert [p.hexsha for p in repo.commit(c).parents] == [a]  # island 1 branched from its parent on island 0
        assert [p.hexsha for p in repo.commit(d).parents] == [c]
        assert [e.candidate_id for e in lin.log("island-1")] == ["1042-i1-g0003-c0", "1042-i1-g0001-c0", "1042-i0-g0001-c0", None]
        assert lin.commit_of("1042-i1-g0002-c0") is None  # rejected: never committed
        assert all(e.candidate_id != "1042-i1-g0002-c0" for br in ("island-0", "island-1") for e in lin.log(br))
        # only kernel.rs changes between a candidate and its parent
        assert [d_.a_path for d_ in repo.commit(c).diff(a)] == [EVOLVABLE]


def test_message_carries_ids_metrics_and_report_digest(cfg: TenantConfig, tmp_path: Path) -> None:
    with Lineage(tmp_path / "repo", ticking()) as lin:
        shas = play(lin, cfg, RUN)
        r = RUN[2]
        message = lin.repo.commit(shas[r.id]).message
        assert isinstance(message, str)
        t = parse_trailers(message)
        assert (t["Candidate"], t["Parent"], t["Island"], t["Generation"]) == (r.id, r.parent_id, "1", "1")
        assert (t["Msg-Per-S"], t["Ratio-To-Generic"], t["Ratio-To-Specialized"]) == ("250000.5", "1.3", "1.0625")
        assert t["Source-Hash"] == r.source_hash
        assert t["Report-Digest"] == hashlib.sha256(json.dumps(r.report, sort_keys=True, default=str).encode()).hexdigest() == report_digest(r.report)
        assert message.startswith(f"{r.id}: x1.300 generic")
        entry = lin.log("island-1")[1]
        assert (entry.sha, entry.candidate_id, entry.parent_id, entry.trailers) == (shas[r.id], r.id, r.parent_id, t)
        assert entry.timestamp == 1_700_000_000 + 3 * 60  # main, then the third commit: dates come from the clock


def test_source_at_round_trips(cfg: TenantConfig, tmp_path: Path) -> None:
    with Lineage(tmp_path / "repo", ticking()) as lin:
        shas = play(lin, cfg, RUN)
        for r in RUN:
            if r.status == "accepted":
                assert lin.source_at(shas[r.id]) == r.source
                assert lin.source_at(lin.commit_of(r.id) or "") == r.source


def test_only_accepted_candidates_are_committed(cfg: TenantConfig, tmp_path: Path) -> None:
    with Lineage(tmp_path / "repo", ticking()) as lin:
        lin.init(cfg)
        before = {h.name: h.commit.hexsha for h in lin.repo.heads}
        for status in ("rejected", "duplicate", "error"):
            with pytest.raises(ValueError, match="only accepted"):
                lin.commit(rec("x", None, 0, status=status), 0)
        assert {h.name: h.commit.hexsha for h in lin.repo.heads} == before
        with pytest.raises(ValueError, match="ref"):
            lin.commit(rec("bad id", None, 0), 0)


def test_commit_before_init_is_refused(tmp_path: Path) -> None:
    with Lineage(tmp_path / "repo", ticking()) as lin, pytest.raises(ValueError, match="init"):
        lin.commit(RUN[0], 0)


def test_same_clock_same_commit_shas(cfg: TenantConfig) -> None:
    runs: list[dict[str, str]] = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp, Lineage(Path(tmp) / "repo", ticking()) as lin:
            runs.append(play(lin, cfg, RUN))
    assert runs[0] == runs[1]
    with tempfile.TemporaryDirectory() as tmp, Lineage(Path(tmp) / "repo", ticking(step=61)) as lin:
        assert play(lin, cfg, RUN)["main"] == runs[0]["main"]  # same first reading
        assert lin.commit_of(RUN[0].id) != runs[0][RUN[0].id]  # a later reading differs: the date is in the sha


def test_reopen_resumes_the_lineage(cfg: TenantConfig, tmp_path: Path) -> None:
    clock = ticking()
    with Lineage(tmp_path / "repo", clock) as lin:
        first = play(lin, cfg, RUN[:2])
    with Lineage(tmp_path / "repo", clock) as lin:
        assert lin.init(cfg) == first["main"]  # the same crate: nothing new
        assert lin.commit(RUN[1], 0) == first[RUN[1].id]  # committed before: idempotent
        sha = lin.commit(RUN[2], 1)  # its parent is found by id after reopening
        assert [p.hexsha for p in lin.repo.commit(sha).parents] == [first[RUN[0].id]]
        other: dict[str, Any] = {"org": 1042, "interval_s": 60, "queries": [{"q": "sum:mem{*}"}]}
        with pytest.raises(ValueError, match="another crate"):
            lin.init(TenantConfig.from_mapping(other))
