"""Running Verus on the proved copy of the codec (``verus/``), one check per module."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from actors.verify.proofs.check import Check, one_line
from actors.verify.proofs.sources import VERUS_DIR

VERUS_ROOT = "codec_proofs.rs"
VERUS_MODULES = ("error", "varint", "svb", "payload")
VERUS_TIMEOUT_S = 900.0


def verus_version(verus: str) -> str:
    try:
        out = subprocess.run([verus, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "verus (version unknown)"
    first = out.splitlines()[0] if out else "version unknown"
    return first if first.lower().startswith("verus") else f"verus {first}"


def check_verus(verus_dir: Path = VERUS_DIR, verus: str | None = None) -> list[Check]:
    """One check per module of the Verus crate; ``not-run`` without a ``verus`` on PATH."""
    verus = verus or shutil.which("verus")
    if verus is None:
        return [Check(f"verus:{m}", "verus", "not-run", "verus not on PATH", 0.0, "verus (not installed)") for m in VERUS_MODULES]
    tool = verus_version(verus)
    checks: list[Check] = []
    for m in VERUS_MODULES:
        t0 = time.monotonic()
        cmd = [verus, str(verus_dir / VERUS_ROOT), "--verify-module", m]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=VERUS_TIMEOUT_S, cwd=verus_dir)
        except subprocess.TimeoutExpired:
            checks.append(Check(f"verus:{m}", "verus", "failed", f"verus timed out after {VERUS_TIMEOUT_S:.0f} s", time.monotonic() - t0, tool))
            continue
        except OSError as e:
            checks.append(Check(f"verus:{m}", "verus", "not-run", f"cannot run verus: {e}", time.monotonic() - t0, tool))
            continue
        out = proc.stdout + proc.stderr
        summary = next((x.strip() for x in reversed(out.splitlines()) if "verification results" in x), "")
        if proc.returncode == 0:
            reason = f"verified module {m} of {VERUS_ROOT}" + (f" ({summary})" if summary else "")
            checks.append(Check(f"verus:{m}", "verus", "passed", reason, time.monotonic() - t0, tool))
        else:
            checks.append(Check(f"verus:{m}", "verus", "failed", f"exit {proc.returncode}: {one_line(out)}", time.monotonic() - t0, tool))
    return checks
