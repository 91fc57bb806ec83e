"""The sources under check: the shipped codec and its Verus copy, and their digest."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from actors.kernel.build import REPO_ROOT

CODEC_DIR = REPO_ROOT / "guest-rust" / "codec"
VERUS_DIR = REPO_ROOT / "verus"


def hash_tree(h: Any, root: Path, label: str) -> None:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not {"target", ".git", "__pycache__"}.intersection(rel.parts):
            h.update(f"{label}/{rel.as_posix()}".encode() + b"\0" + path.read_bytes() + b"\0")


def codec_digest(codec_dir: Path = CODEC_DIR, verus_dir: Path = VERUS_DIR) -> str:
    """SHA-256 of the codec sources and the Verus sources (paths and contents)."""
    h = hashlib.sha256()
    hash_tree(h, codec_dir, "codec")
    hash_tree(h, verus_dir, "verus")
    return h.hexdigest()
