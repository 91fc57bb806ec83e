"""A candidate record for tests: sensible defaults, any field overridden by keyword."""

from __future__ import annotations

from typing import Any

from actors.evolve.record import CandidateRecord, hash_source


def record(id: str, source: str | None = None, **fields: Any) -> CandidateRecord:
    src = source if source is not None else f"// kernel {id}\n"
    values: dict[str, Any] = {
        "id": id,
        "org": 1042,
        "parent_id": None,
        "island": 0,
        "generation": 1,
        "proposer": "offline",
        "model": None,
        "prompt": "",
        "patch": "",
        "source": src,
        "source_hash": hash_source(src),
        "commit": None,
        "report": None,
        "status": "accepted",
        "rejected_stage": None,
        "reason": "",
        "msg_per_s": None,
        "ratio_to_generic": None,
        "ratio_to_specialized": None,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost_usd": 0.0,
        "created_at": 0.0,
        "seconds": 0.0,
        "genome": None,
    }
    values.update(fields)
    return CandidateRecord(**values)
