"""The proofs stage: every check of the codec, through the cache."""

from __future__ import annotations

from pathlib import Path

from actors.kernel.build import cache_dir
from actors.verify.proofs.cache import cache_key, load_cache, store_cache, tool_versions
from actors.verify.proofs.check import Check
from actors.verify.proofs.exhaustive import exhaustive_checks
from actors.verify.proofs.sources import CODEC_DIR, VERUS_DIR, codec_digest
from actors.verify.proofs.sync import check_sync
from actors.verify.proofs.verus import check_verus
from actors.verify.proofs.z3checks import (
    check_z3_payload_loop_bounds,
    check_z3_read_count,
    check_z3_svb_control,
    check_z3_svb_data_len,
    check_z3_svb_decode,
    check_z3_varint,
    check_z3_zigzag,
)


def run_codec_checks(codec_dir: Path = CODEC_DIR, verus_dir: Path = VERUS_DIR, cache: Path | None = None) -> list[Check]:
    """Runs every check of the codec (see the package docstring); cached by
    :func:`codec_digest` and the tool versions under ``<cache>/proofs/``."""
    digest = codec_digest(codec_dir, verus_dir)
    tools = tool_versions(codec_dir)
    key = cache_key(tools)
    path = (cache if cache is not None else cache_dir()) / "proofs" / f"{digest}.json"
    cached = load_cache(path, key)
    if cached is not None:
        return cached
    checks = check_verus(verus_dir)
    checks += [check_z3_varint(), check_z3_read_count(), check_z3_zigzag(), check_z3_svb_control(), check_z3_svb_data_len(), check_z3_svb_decode()]
    checks.append(check_z3_payload_loop_bounds())
    exhaustive, cacheable = exhaustive_checks(codec_dir)
    checks += exhaustive
    checks.append(check_sync(codec_dir, verus_dir))
    transient = any("internal error" in c.reason or "timed out" in c.reason or c.reason.startswith("cannot run verus") for c in checks)
    if cacheable and not transient:
        store_cache(path, key, tools, checks)
    return checks
