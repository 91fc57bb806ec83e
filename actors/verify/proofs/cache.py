"""The result cache: ``<cache>/proofs/<codec_digest>.json``, valid while every tool version
and the sources of this package are unchanged."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

import z3

from actors.errors import BuildFailed
from actors.kernel.build import toolchain
from actors.verify.proofs.check import Check
from actors.verify.proofs.probe import probe_workspace
from actors.verify.proofs.sources import hash_tree
from actors.verify.proofs.verus import verus_version


def harness_digest() -> str:
    """SHA-256 of the sources of this package (every ``.py`` file, names and contents): the checks' own code."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def tool_versions(codec_dir: Path) -> dict[str, str]:
    verus = shutil.which("verus")
    try:
        rustc = toolchain().version
    except BuildFailed:
        rustc = "absent"
    ws = probe_workspace(codec_dir)
    probe = "absent"
    if ws is not None:
        h = hashlib.sha256()
        for part in ("codec-probe", "abi"):
            if (ws / part).is_dir():
                hash_tree(h, ws / part, part)
        for f in ("Cargo.toml", "Cargo.lock"):
            if (ws / f).is_file():
                h.update((ws / f).read_bytes())
        probe = h.hexdigest()
    return {
        "z3": z3.get_version_string(),
        "verus": verus_version(verus) if verus else "absent",
        "rustc": rustc,
        "wasmtime": importlib.metadata.version("wasmtime"),
        "python": sys.version.split()[0],
        "harness": harness_digest(),
        "probe_sources": probe,
    }


def cache_key(tools: dict[str, str]) -> str:
    """What a cached result must have been stored under: the digest of :func:`tool_versions`."""
    return hashlib.sha256(json.dumps(tools, sort_keys=True).encode()).hexdigest()


def load_cache(path: Path, key: str) -> list[Check] | None:
    try:
        doc = json.loads(path.read_text())
        if doc.get("key") != key:
            return None
        when = doc.get("created", "?")
        return [replace(Check(**c), reason=f"{c['reason']} [cached {when}]") for c in doc["checks"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_cache(path: Path, key: str, tools: dict[str, str], checks: Sequence[Check]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"key": key, "tools": tools, "created": datetime.now(UTC).isoformat(timespec="seconds"), "checks": [asdict(c) for c in checks]}
    tmp = path.with_suffix(f".tmp{os.getpid()}-{time.monotonic_ns()}")  # concurrent writers each write their own file
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)
