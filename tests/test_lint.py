"""Lint (ruff) and type check (mypy, strict) of the package and its tests, as part of the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff() -> None:
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "actors", "tests"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format() -> None:
    r = subprocess.run([sys.executable, "-m", "ruff", "format", "--check", "actors", "tests"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy() -> None:
    r = subprocess.run([sys.executable, "-m", "mypy", "actors", "tests"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
