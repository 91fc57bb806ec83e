"""A tenant's lineage: its accepted kernels as git history, one branch per island.

Why git: every accepted kernel becomes an ordinary commit of the tenant's crate, so a
human can ``git log island-2``, ``git diff`` two generations or check one out and
``cargo build`` it, with no evoagg tooling. The tree of every commit is the whole crate
(``actors.specialize.materialize``: Cargo.toml, src/lib.rs, src/spec.rs, src/kernel.rs);
candidates change only ``src/kernel.rs``.

Layout:

- ``main``: the specialized starting point (``init``); checked out in the work tree.
- ``island-<n>``: moves to each accepted candidate committed for island n. A commit's
  parent is its parent candidate's commit (or ``main`` when the parent has none), so
  ``git log`` of a commit is its true ancestry, across islands when it migrated.
- ``refs/candidates/<id>``: every committed candidate, so nothing becomes unreachable
  when an island branch jumps to a non-descendant, and a parent's commit is found by id
  (also after reopening the repository).

Commits are written as objects (no index, no work-tree checkout per candidate), with a
fixed identity and dates from the injected clock (one reading per new commit, whole
seconds, UTC): the same run gives the same shas. Only
accepted candidates are committed; ``commit`` refuses any other.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import git
from git.objects.fun import tree_to_stream
from gitdb.base import IStream

from actors.config import TenantConfig
from actors.evolve.record import CandidateRecord
from actors.specialize import EVOLVABLE, materialize

MAIN = "main"
NAME = "evoagg"
EMAIL = "evoagg@localhost"
"""The fixed identity of every commit (CI has no git identity, and a run must replay)."""

_BLOB_MODE = 0o100644
_TREE_MODE = 0o040000
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TRAILER = re.compile(r"^([A-Za-z][A-Za-z0-9-]*): (.*)$")


def island_branch(island: int) -> str:
    return f"island-{island}"


def report_digest(report: Mapping[str, object] | None) -> str | None:
    """SHA-256 of the report's canonical JSON: ``actors.verify.stages.Report.digest`` of the same report."""
    if report is None:
        return None
    return hashlib.sha256(json.dumps(report, sort_keys=True, default=str).encode()).hexdigest()


def _num(x: float | None) -> str:
    return "none" if x is None else repr(float(x))


def commit_message(record: CandidateRecord, island: int) -> str:
    """Subject with the headline metrics, then one trailer per fact (``git log`` greps them)."""
    ratio = f"x{record.ratio_to_generic:.3f} generic" if record.ratio_to_generic is not None else "no ratio"
    subject = f"{record.id}: {ratio}, island {island}, generation {record.generation}"
    trailers = [
        ("Candidate", record.id),
        ("Parent", record.parent_id or "none"),
        ("Island", str(island)),
        ("Generation", str(record.generation)),
        ("Proposer", record.proposer),
        ("Model", record.model or "none"),
        ("Msg-Per-S", _num(record.msg_per_s)),
        ("Ratio-To-Generic", _num(record.ratio_to_generic)),
        ("Ratio-To-Specialized", _num(record.ratio_to_specialized)),
        ("Source-Hash", record.source_hash),
        ("Report-Digest", report_digest(record.report) or "none"),
    ]
    return subject + "\n\n" + "\n".join(f"{k}: {v.replace(chr(10), ' ')}" for k, v in trailers) + "\n"


def parse_trailers(message: str) -> dict[str, str]:
    """The ``Key: value`` lines of a commit message's last paragraph."""
    last = message.strip().split("\n\n")[-1]
    return {m.group(1): m.group(2) for line in last.splitlines() if (m := _TRAILER.match(line))}


@dataclass(frozen=True)
class LineageEntry:
    """One commit of a branch's history, with its trailers parsed."""

    sha: str
    candidate_id: str | None
    """None for the starting point on ``main``."""
    parent_id: str | None
    timestamp: int
    subject: str
    trailers: dict[str, str]


class Lineage:
    """The git repository of one tenant's crate at ``repo_dir`` (created, or reopened as is)."""

    def __init__(self, repo_dir: Path | str, clock: Callable[[], float]) -> None:
        self.dir = Path(repo_dir)
        self.clock = clock
        if (self.dir / ".git").exists():
            self.repo = git.Repo(self.dir)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.repo = git.Repo.init(self.dir, initial_branch=MAIN)
        with self.repo.config_writer() as cw:
            cw.set_value("user", "name", NAME)
            cw.set_value("user", "email", EMAIL)
            cw.set_value("commit", "gpgsign", "false")
            cw.set_value("core", "autocrlf", "false")
        exclude = Path(self.repo.git_dir) / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        if "/target/" not in (exclude.read_text() if exclude.exists() else ""):
            with exclude.open("a") as f:
                f.write("/target/\n")  # a cargo build in the work tree leaves the tree clean
        self._actor = git.Actor(NAME, EMAIL)

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Stops GitPython's persistent ``git cat-file`` helpers."""
        self.repo.close()

    def __enter__(self) -> Lineage:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- objects ---------------------------------------------------------------------

    def _store(self, kind: str, data: bytes) -> bytes:
        return bytes(self.repo.odb.store(IStream(kind, len(data), io.BytesIO(data))).binsha)

    def _write_tree(self, files: Mapping[str, bytes]) -> bytes:
        """A tree object of ``files`` (paths with ``/``), subtrees included; returns its binary sha."""
        here: dict[str, bytes] = {}
        below: dict[str, dict[str, bytes]] = {}
        for path, data in files.items():
            head, _, rest = path.partition("/")
            if rest:
                below.setdefault(head, {})[rest] = data
            else:
                here[head] = data
        entries = [(self._store("blob", data), _BLOB_MODE, name) for name, data in here.items()]
        entries += [(self._write_tree(sub), _TREE_MODE, name) for name, sub in below.items()]
        # git orders a tree's entries by name, a subtree's name compared as if it ended in "/".
        entries.sort(key=lambda e: e[2].encode() + (b"/" if e[1] == _TREE_MODE else b""))
        buf = io.BytesIO()
        tree_to_stream(entries, buf.write)
        return self._store("tree", buf.getvalue())

    def _files(self, commit: git.Commit) -> dict[str, bytes]:
        return {str(b.path): bytes(b.data_stream.read()) for b in commit.tree.traverse() if isinstance(b, git.Blob)}

    def _commit(self, files: Mapping[str, bytes], message: str, parents: list[git.Commit]) -> git.Commit:
        tree = git.Tree(self.repo, self._write_tree(files))
        date = f"{int(self.clock())} +0000"
        return git.Commit.create_from_tree(
            self.repo, tree, message, parent_commits=parents, head=False, author=self._actor, committer=self._actor, author_date=date, commit_date=date
        )

    # -- refs ------------------------------------------------------------------------

    def _ref(self, path: str) -> git.Reference | None:
        ref = git.Reference(self.repo, path, check_path=False)
        return ref if ref.is_valid() else None

    def head(self, branch: str) -> str | None:
        """The sha ``branch`` points at, or None when it does not exist."""
        ref = self._ref(f"refs/heads/{branch}")
        return ref.commit.hexsha if ref else None

    def commit_of(self, candidate_id: str) -> str | None:
        """The commit of a committed candidate, or None."""
        if not _SAFE_ID.fullmatch(candidate_id):
            return None
        ref = self._ref(f"refs/candidates/{candidate_id}")
        return ref.commit.hexsha if ref else None

    # -- the lineage -----------------------------------------------------------------

    def init(self, cfg: TenantConfig, kernel_src: str | None = None) -> str:
        """Commits the specialized crate of ``cfg`` (template kernel unless ``kernel_src``) on
        ``main``, checks it out, and returns the sha. On a reopened repository whose ``main``
        already holds exactly that crate it returns the existing sha (resume); a different
        crate is an error, since the islands' history was grown from the old one."""
        with tempfile.TemporaryDirectory(prefix="evoagg-lineage-") as tmp:
            materialize(cfg, Path(tmp), kernel_src)
            files = {p.relative_to(tmp).as_posix(): p.read_bytes() for p in sorted(Path(tmp).rglob("*")) if p.is_file()}
        existing = self.head(MAIN)
        if existing is not None:
            tree = git.Tree(self.repo, self._write_tree(files))
            if self.repo.commit(existing).tree.hexsha != tree.hexsha:
                raise ValueError(f"{self.dir}: main holds another crate than org {cfg.org}'s specialization; use a new lineage directory")
            return existing
        c = self._commit(files, f"org {cfg.org}: specialized starting point\n\nOrg: {cfg.org}\n", [])
        git.Head.create(self.repo, MAIN, c, force=True)
        self.repo.head.reset(c, index=True, working_tree=True)
        return c.hexsha

    def commit(self, record: CandidateRecord, island: int) -> str:
        """Commits ``record``'s kernel on ``island-<island>`` as a child of its parent's commit
        (``main`` when the parent was never committed) and returns the sha. Idempotent: a
        candidate committed before (e.g. before a crash) returns its existing commit."""
        if record.status != "accepted":
            raise ValueError(f"candidate {record.id!r} is {record.status}: only accepted candidates are committed")
        if not _SAFE_ID.fullmatch(record.id) or record.id.endswith(".lock") or ".." in record.id:
            raise ValueError(f"candidate id {record.id!r} cannot name a git ref (letters, digits, '_', '.', '-')")
        done = self.commit_of(record.id)
        if done is not None:
            return done
        main = self.head(MAIN)
        if main is None:
            raise ValueError(f"{self.dir}: no main branch yet; call init(cfg) first")
        base = (self.commit_of(record.parent_id) if record.parent_id else None) or main
        parent = self.repo.commit(base)
        files = self._files(parent)
        files[EVOLVABLE] = record.source.encode()
        c = self._commit(files, commit_message(record, island), [parent])
        git.Reference.create(self.repo, f"refs/candidates/{record.id}", c, force=True)
        git.Head.create(self.repo, island_branch(island), c, force=True)
        return c.hexsha

    def source_at(self, commit: str) -> str:
        """The evolvable file's text at ``commit``."""
        blob = self.repo.commit(commit).tree / EVOLVABLE
        return bytes(blob.data_stream.read()).decode()

    def log(self, branch: str) -> list[LineageEntry]:
        """``branch``'s ancestry, newest first, down to the starting point."""
        out = []
        for c in self.repo.iter_commits(branch):
            message = c.message if isinstance(c.message, str) else c.message.decode()
            t = parse_trailers(message)
            parent = t.get("Parent")
            out.append(
                LineageEntry(
                    sha=c.hexsha,
                    candidate_id=t.get("Candidate"),
                    parent_id=None if parent in (None, "none") else parent,
                    timestamp=int(c.committed_date),
                    subject=message.split("\n", 1)[0],
                    trailers=t,
                )
            )
        return out
