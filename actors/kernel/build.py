"""Compiling guest crates to wasm: source tree in, ``.wasm`` bytes out.

The toolchain is detected, not assumed (:func:`detect_toolchain`):

1. a ``rustc`` whose sysroot has the ``wasm32-unknown-unknown`` standard library
   (``rustup target add wasm32-unknown-unknown``) builds plainly;
2. otherwise a ``rustc`` whose sysroot carries the library sources (Debian's
   ``rustc-web`` + ``rust-web-src``) builds ``core`` and ``alloc`` itself
   (``-Zbuild-std``), with crates-io replaced by the sources' ``vendor/`` directory and
   a wasm linker found on the machine when rustc's own ``rust-lld`` is absent.

Results are cached by a hash of the source tree and the toolchain, in
``$EVOAGG_CACHE`` (default ``~/.cache/evoagg``); compiler output on failure is kept
verbatim in :class:`BuildFailed`. A tree is copied before it is built, so it must be
self-contained (path dependencies inside it, or absolute); the sources of absolute path
dependencies outside the tree are part of its hash.

Builds run in parallel up to ``$EVOAGG_BUILD_SLOTS`` (default: the CPU count): each slot
has its own target directory (so cargo's lock on it does not serialise them) and
compiles core and alloc once.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from actors.errors import BuildFailed

TARGET = "wasm32-unknown-unknown"
REPO_ROOT = Path(__file__).resolve().parents[2]
GUEST_WORKSPACE = REPO_ROOT / "guest-rust"
_SKIP_DIRS = {"target", ".git", "__pycache__"}


def cache_dir() -> Path:
    d = Path(os.environ.get("EVOAGG_CACHE", Path.home() / ".cache" / "evoagg"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass(frozen=True)
class Toolchain:
    """A Rust toolchain able to produce wasm32 modules."""

    rustc: str
    cargo: str
    version: str
    mode: str
    """``plain`` (wasm32 std installed) or ``build-std`` (library sources only)."""
    library_src: str | None
    vendor: str | None
    linker: str | None
    """An explicit wasm linker, when rustc's own rust-lld is absent."""

    def cargo_args(self) -> list[str]:
        args: list[str] = []
        if self.vendor:
            args += ["--config", "source.crates-io.replace-with='evoagg-vendored'", "--config", f"source.evoagg-vendored.directory='{self.vendor}'"]
        if self.linker:
            args += ["--config", f"target.{TARGET}.linker='{self.linker}'"]
        if self.mode == "build-std":
            args += ["-Zbuild-std=core,alloc"]
        return args

    def env(self) -> dict[str, str]:
        env = dict(os.environ, RUSTC=self.rustc)
        env.pop("RUSTFLAGS", None)
        if self.mode == "build-std":
            env["RUSTC_BOOTSTRAP"] = "1"
        return env


def _run(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _candidates() -> list[str]:
    found = [os.environ.get("RUSTC"), shutil.which("rustc"), "/usr/bin/rustc"]
    seen: list[str] = []
    for c in found:
        if c and os.access(c, os.X_OK) and c not in seen:
            seen.append(c)
    return seen


def _cargo_for(rustc: str) -> str | None:
    sibling = Path(rustc).with_name("cargo")
    for c in (str(sibling), os.environ.get("CARGO"), shutil.which("cargo")):
        if c and os.access(c, os.X_OK):
            return c
    return None


def _linker(sysroot: Path) -> str | None:
    """None when rustc ships rust-lld; else the first wasm linker on this machine."""
    if any(os.access(p, os.X_OK) for p in glob.glob(str(sysroot / "lib/rustlib/*/bin/rust-lld"))):
        return None
    for name in ("rust-lld", "wasm-ld", *sorted(Path(p).name for p in glob.glob("/usr/bin/wasm-ld-*"))[::-1]):
        path = shutil.which(name)
        if path and os.access(path, os.X_OK):
            return path
    return None


def detect_toolchain() -> Toolchain:
    """The best available toolchain; :class:`BuildFailed` explains what is missing."""
    tried: list[str] = []
    for mode in ("plain", "build-std"):
        for rustc in _candidates():
            sysroot_s = _run([rustc, "--print", "sysroot"])
            version = _run([rustc, "--version"])
            cargo = _cargo_for(rustc)
            if not sysroot_s or not version or not cargo:
                continue
            sysroot = Path(sysroot_s)
            lib = sysroot / "lib/rustlib/src/rust/library"
            vendor = lib / "vendor"
            if mode == "plain":
                if not (sysroot / "lib/rustlib" / TARGET / "lib").is_dir():
                    tried.append(f"{rustc}: no {TARGET} standard library")
                    continue
                return Toolchain(rustc, cargo, version, "plain", None, str(vendor) if vendor.is_dir() else None, None)
            if not (lib / "core").is_dir():
                tried.append(f"{rustc}: no library sources at {lib}")
                continue
            linker = _linker(sysroot)
            if linker is None and not glob.glob(str(sysroot / "lib/rustlib/*/bin/rust-lld")):
                tried.append(f"{rustc}: no wasm linker (rust-lld or wasm-ld)")
                continue
            return Toolchain(rustc, cargo, version, "build-std", str(lib), str(vendor) if vendor.is_dir() else None, linker)
    raise BuildFailed(
        "no Rust toolchain can build wasm32 here; install one with "
        "`apt-get install -y rustc-web rust-web-src lld` or `rustup target add wasm32-unknown-unknown`",
        "\n".join(tried),
    )


_toolchain: Toolchain | None = None


def toolchain() -> Toolchain:
    global _toolchain
    if _toolchain is None:
        _toolchain = detect_toolchain()
    return _toolchain


_PATH_DEP = re.compile(r'path\s*=\s*"([^"]+)"')


def _files(tree: Path) -> list[Path]:
    return [p for p in sorted(tree.rglob("*")) if p.is_file() and not _SKIP_DIRS.intersection(p.relative_to(tree).parts)]


def external_deps(workspace: Path) -> list[Path]:
    """Directories of path dependencies (in the tree's Cargo.toml files) outside the tree."""
    root = workspace.resolve()
    found: list[Path] = []
    for manifest in (p for p in _files(workspace) if p.name == "Cargo.toml"):
        for m in _PATH_DEP.finditer(manifest.read_text()):
            dep = (manifest.parent / m.group(1)).resolve()
            if not dep.is_relative_to(root) and dep not in found:
                found.append(dep)
    return sorted(found)


def source_hash(workspace: Path, extra: str = "") -> str:
    """SHA-256 over every file of the tree (paths and contents), of its path dependencies
    outside it (so an edit to a shared crate rebuilds its users), plus ``extra``."""
    h = hashlib.sha256(extra.encode())
    for tree, tag in [(workspace, ""), *((d, str(d)) for d in external_deps(workspace))]:
        for path in _files(tree):
            h.update(f"{tag}/{path.relative_to(tree)}".encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def build_slots() -> int:
    try:
        return max(1, int(os.environ.get("EVOAGG_BUILD_SLOTS", "0")) or (os.cpu_count() or 1))
    except ValueError:
        return 1


def target_dir(slot: int) -> Path:
    """Cargo's target directory of build slot ``slot``."""
    return cache_dir() / ("target" if slot == 0 else f"target-{slot}")


def _slot_lock_file(i: int) -> int:
    return os.open(cache_dir() / f"build.{i}.lock", os.O_RDWR | os.O_CREAT, 0o644)


def _wait_slot(i: int) -> int:
    """Slot ``i``'s lock (a locked fd), once it is free."""
    fd = _slot_lock_file(i)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _take_slot(n: int) -> tuple[int, int]:
    """A free build slot (index, locked fd): the lowest free one, else wait for slot 0...n-1 by pid."""
    for i in range(n):
        fd = _slot_lock_file(i)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return i, fd
        except BlockingIOError:
            os.close(fd)
    i = os.getpid() % n
    return i, _wait_slot(i)


@dataclass(frozen=True)
class BuildResult:
    wasm: bytes
    source_hash: str
    cached: bool
    seconds: float
    toolchain: Toolchain


def build(
    workspace: Path = GUEST_WORKSPACE,
    package: str = "kernel-generic",
    timeout_s: float = 900,
    on_compile: Callable[[str], None] | None = None,
    *,
    slot: int | None = None,
    force: bool = False,
) -> BuildResult:
    """Builds ``package`` of the cargo workspace at ``workspace`` to wasm (release).

    ``on_compile`` is told, before cargo starts, when the result is not cached (a first
    build compiles core and alloc too and takes a while). ``slot`` builds in that build
    slot (waiting for it) instead of the first free one; ``force`` runs cargo even when
    the result is cached. Both exist to warm a given slot's target dir
    (:mod:`actors.kernel.prebuild`).
    """
    t0 = time.monotonic()
    tc = toolchain()
    n = build_slots()
    if slot is not None and not 0 <= slot < n:
        raise ValueError(f"build slot {slot} out of range 0..{n - 1}")
    digest = source_hash(workspace, f"{package}\0{tc.version}\0{tc.mode}")
    out = cache_dir() / "wasm" / f"{digest}.wasm"
    if out.exists() and not force:
        return BuildResult(out.read_bytes(), digest, True, time.monotonic() - t0, tc)
    out.parent.mkdir(parents=True, exist_ok=True)
    if on_compile:
        on_compile(f"compiling {package} to wasm with {tc.version} ({tc.mode}); cached afterwards")
    if slot is None:
        slot, fd = _take_slot(n)
    else:
        fd = _wait_slot(slot)
    try:
        wasm = _cargo_build(tc, workspace, package, slot, timeout_s)
    finally:
        os.close(fd)
    # Unique per writer: threads of one process (prebuild's) may store the same result at once.
    tmp = out.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
    tmp.write_bytes(wasm)
    os.replace(tmp, out)
    return BuildResult(wasm, digest, False, time.monotonic() - t0, tc)


def _cargo_build(tc: Toolchain, workspace: Path, package: str, slot: int, timeout_s: float) -> bytes:
    """Runs cargo in build slot ``slot`` (whose lock the caller holds)."""
    suffix = "" if slot == 0 else f"-{slot}"
    target = target_dir(slot)
    # Every tree builds from the same place, copied afresh (new mtimes). Why: the target
    # dir is shared so core and alloc compile once, and cargo fingerprints workspace
    # members by their path relative to the workspace root, checking the mtimes of the
    # files its last build read. Two copies of one workspace in different directories
    # therefore share a fingerprint, and the second was once served the first's
    # artifact (tests/integration/test_guest_units.py keeps that from coming back).
    src = cache_dir() / f"src{suffix}" / package
    cmd = [
        tc.cargo, "build", "--release", "--offline", "--target", TARGET, "-p", package,
        "--manifest-path", str(src / "Cargo.toml"), "--target-dir", str(target), *tc.cargo_args(),
    ]  # fmt: skip
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(workspace, src, ignore=shutil.ignore_patterns(*_SKIP_DIRS), copy_function=shutil.copy)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=tc.env(), timeout=timeout_s, cwd=src)
    except subprocess.TimeoutExpired as e:
        raise BuildFailed(f"build of {package} timed out after {timeout_s:.0f} s", str(e.stderr or "")) from None
    if proc.returncode != 0:
        raise BuildFailed(f"cargo build of {package} failed (exit {proc.returncode})", proc.stderr)
    artifact = target / TARGET / "release" / f"{package.replace('-', '_')}.wasm"
    if not artifact.exists():
        raise BuildFailed(f"cargo reported success but {artifact} is missing", proc.stderr)
    return artifact.read_bytes()
