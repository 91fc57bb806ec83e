"""The crate as a model explores it through tools: read-only, confined, with virtual paths.

A model asks for what it needs (``list_files``, ``read_file`` with a line range, ``grep``)
instead of being sent the whole crate and the shared crates on every call, which would
cost tokens on every turn of the conversation. What it can see:

    src/kernel.rs, src/spec.rs, src/lib.rs, Cargo.toml   the tenant's crate at the parent
                                                         (src/kernel.rs is the request's
                                                         parent_source, the only editable file)
    deps/<name>/...                                      the shared crates the crate depends
                                                         on by path (codec, abi, tables)
    inspirations/<id>.rs                                 other candidates' kernels

Nothing outside those roots is reachable (``..``, absolute paths and symlinks out are
refused). Problems become a ``ToolError`` whose message goes back to the model as an
error tool result; it never leaves the proposer. Provider-neutral: any tool-using
proposer can use it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path

from actors.evolve.proposers.base import ProposalRequest

MAX_READ_CHARS = 40_000
MAX_GREP_MATCHES = 200
MAX_FILE_BYTES = 256 * 1024
_SKIP_DIRS = {"target", "node_modules", "__pycache__"}
_DEP_SUFFIXES = {".rs", ".toml", ".md", ".wit"}


class ToolError(Exception):
    """A tool call the model got wrong (unknown file, bad range, bad pattern); the message
    is the tool result, marked as an error. Never raised out of a proposer."""


def _walk(root: Path, suffixes: set[str] | None = None) -> list[tuple[str, Path]]:
    """Text files under ``root`` (relative posix path, absolute path), skipping build output
    and hidden directories, and anything resolving outside ``root``."""
    out: list[tuple[str, Path]] = []
    if not root.is_dir():
        return out
    base = root.resolve()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if not p.is_file() or (suffixes is not None and p.suffix not in suffixes):
            continue
        if not p.resolve().is_relative_to(base) or p.stat().st_size > MAX_FILE_BYTES:
            continue
        out.append((rel.as_posix(), p))
    return out


def _safe_id(cid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", cid)[:64] or "candidate"


def _const(text: str) -> Callable[[], str]:
    return lambda: text


def path_dependencies(crate_dir: Path) -> dict[str, Path]:
    """The crate's ``[dependencies]`` given by path (the shared guest crates)."""
    try:
        manifest = tomllib.loads((crate_dir / "Cargo.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    deps: dict[str, Path] = {}
    for name, spec in manifest.get("dependencies", {}).items():
        if isinstance(spec, dict) and isinstance(spec.get("path"), str):
            deps[name] = (crate_dir / spec["path"]).resolve()
    return deps


class CrateView:
    """Virtual path → text, built once per request; files are read when asked for."""

    def __init__(self, req: ProposalRequest) -> None:
        self.evolvable = req.evolvable
        self._files: dict[str, Callable[[], str]] = {}
        for rel, p in _walk(req.crate_dir):
            self._files[rel] = p.read_text
        self._files[req.evolvable] = _const(req.parent_source)
        for name, root in sorted(path_dependencies(req.crate_dir).items()):
            for rel, p in _walk(root, _DEP_SUFFIXES):
                self._files[f"deps/{name}/{rel}"] = p.read_text
        self.inspirations: dict[str, str] = {}
        for i, (cid, source, _) in enumerate(req.inspirations):
            path = f"inspirations/{_safe_id(cid)}.rs"
            if path in self._files:
                path = f"inspirations/{_safe_id(cid)}-{i}.rs"
            self.inspirations[cid] = path
            self._files[path] = _const(source)
        self._cache: dict[str, str] = {}

    def paths(self) -> list[str]:
        return sorted(self._files)

    def text(self, path: str) -> str:
        """The file at a virtual ``path``; ``ToolError`` if it is not one."""
        key = path.strip().replace("\\", "/")
        while key.startswith("./"):
            key = key[2:]
        if key not in self._files:
            raise ToolError(f"no file {path!r}; list_files shows what there is (paths relative to the crate, shared crates under deps/)")
        if key not in self._cache:
            try:
                self._cache[key] = self._files[key]()
            except (OSError, UnicodeDecodeError) as e:
                raise ToolError(f"cannot read {path!r}: {e}") from None
        return self._cache[key]

    def list_files(self, path: str | None = None) -> str:
        prefix = (path or "").strip().strip("/")
        rows = []
        for p in self.paths():
            if prefix and p != prefix and not p.startswith(prefix + "/"):
                continue
            try:
                text = self.text(p)
            except ToolError:
                continue
            mark = "  (editable: the only file an edit may change)" if p == self.evolvable else ""
            rows.append(f"{p}  {len(text.splitlines())} lines, {len(text.encode())} bytes{mark}")
        if not rows:
            raise ToolError(f"no file under {path!r}")
        return "\n".join(rows)

    def read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        """Lines ``start_line..end_line`` (1-based, inclusive), each prefixed by its number
        and a tab (the prefix is not part of the file: SEARCH text must leave it out)."""
        lines = self.text(path).splitlines()
        start = 1 if start_line is None else start_line
        end = len(lines) if end_line is None else min(end_line, len(lines))
        if start < 1 or (lines and start > len(lines)) or end < start - 1:
            raise ToolError(f"{path} has {len(lines)} lines; asked for {start_line}..{end_line}")
        out, size = [], 0
        for n in range(start, end + 1):
            row = f"{n:>5}\t{lines[n - 1]}"
            if size + len(row) > MAX_READ_CHARS:
                out.append(f"[cut at line {n - 1} of {len(lines)}: read on with start_line={n}]")
                break
            out.append(row)
            size += len(row) + 1
        return "\n".join(out) if out else f"[{path} is empty]"

    def grep(self, pattern: str, path: str | None = None) -> str:
        """``path:line:\\ttext`` for every line matching the regular expression ``pattern``,
        in one file or under a directory (everything when ``path`` is omitted)."""
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise ToolError(f"bad regular expression {pattern!r}: {e}") from None
        prefix = (path or "").strip().strip("/")
        targets = [p for p in self.paths() if not prefix or p == prefix or p.startswith(prefix + "/")]
        if not targets:
            raise ToolError(f"no file {path!r}; list_files shows what there is")
        hits: list[str] = []
        for p in targets:
            for n, line in enumerate(self.text(p).splitlines(), 1):
                if rx.search(line):
                    if len(hits) == MAX_GREP_MATCHES:
                        hits.append(f"[more than {MAX_GREP_MATCHES} matches: narrow the pattern or the path]")
                        return "\n".join(hits)
                    hits.append(f"{p}:{n}:\t{line[:300]}")
        return "\n".join(hits) if hits else f"no match for {pattern!r}"
