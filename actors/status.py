"""The system's status, assembled from what each shard and the registry answered (no Ray
here: the control plane gathers the answers with a timeout and passes them in).

A shard that did not answer (dead, restarting, or busy past the timeout) does not hold the
status up: it is listed with ``reachable: False`` and the reason, and each of its tenants
appears with ``reachable: False`` and what the control plane knows without it (its shard,
the registry's latest version, the improvement under way), so a reader sees at once which
tenants are affected. A registry that does not answer is reported the same way
(``registry.reachable``), its latest versions unknown (None).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _error(answer: BaseException | None) -> str:
    return NO_ANSWER if answer is None else f"{type(answer).__name__}: {answer}"


NO_ANSWER = "no answer in time (restarting, dead or busy)"


def assemble(
    mapping: Mapping[int, str],
    shard_answers: Mapping[str, dict[str, Any] | BaseException | None],
    latest_answers: Mapping[int, dict[str, Any] | BaseException | None],
    jobs: Mapping[int, dict[str, Any] | None],
) -> dict[str, Any]:
    """``mapping``: org → shard for every tenant; ``shard_answers``: each shard's status,
    or the error it raised, or None when it did not answer in time; ``latest_answers``: per
    org, the registry's answer to ``latest`` (``{"latest": manifest or None}``), the error,
    or None; ``jobs``: each org's improvement progress."""
    out: dict[str, Any] = {"shards": {}, "tenants": {}, "mapping": dict(mapping), "registry": {"reachable": True}}
    latest: dict[int, int | None] = {}
    for org, a in latest_answers.items():
        if isinstance(a, dict):
            latest[org] = a["latest"]["manifest"]["version"] if a["latest"] else None
        else:
            latest[org] = None
            out["registry"] = {"reachable": False, "error": _error(a)}
    for name, answer in shard_answers.items():
        if not isinstance(answer, dict):
            out["shards"][name] = {"reachable": False, "error": _error(answer), "orgs": sorted(org for org, s in mapping.items() if s == name)}
            continue
        st = answer
        out["shards"][name] = {
            "reachable": True,
            "orgs": sorted(st["orgs"]),
            "batches": st["batches"],
            "recovery": st["recovery"],
            "swap_pauses_ms": st["swap_pauses_ms"],
        }
        for org, o in st["orgs"].items():
            out["tenants"][org] = {
                "shard": name,
                "reachable": True,
                **o,
                "latest_version": latest.get(org),
                "improvement": jobs.get(org),
                "history": [h for h in st["history"] if h.get("org") == org],
            }
    for org, name in mapping.items():
        if org not in out["tenants"]:
            shard = out["shards"].get(name, {"reachable": False, "error": f"unknown shard {name!r}"})
            out["tenants"][org] = {
                "shard": name,
                "reachable": False,
                "error": shard["error"] if not shard["reachable"] else f"not served by {name} (being moved, or not added yet)",
                "latest_version": latest.get(org),
                "improvement": jobs.get(org),
            }
    return out
