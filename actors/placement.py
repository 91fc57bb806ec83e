"""Where Ray places evoagg's work: the custom resources a cluster declares for it.

``cluster.yaml`` offers ``evoagg_build`` (cores for wasm builds), ``evoagg_shard``,
``evoagg_island`` and ``evoagg_registry`` per node type. Each kind of work asks for one
unit of its resource when, and only when, the running cluster offers it: detected, not
assumed, so the same code runs on a laptop (no such resources: placed by CPUs alone).
"""

from __future__ import annotations

KINDS = ("build", "shard", "island", "registry")


_cache: frozenset[str] | None = None


def _offered() -> frozenset[str]:
    """The ``evoagg_*`` resources of the connected cluster (read once per process)."""
    global _cache
    if _cache is None:
        import ray

        if not ray.is_initialized():
            return frozenset()  # not connected yet: ask again later
        found: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        _cache = frozenset(k for k in found if k.startswith("evoagg_"))
    return _cache


def resources(kind: str) -> dict[str, float]:
    """``{"evoagg_<kind>": 1}`` when the cluster offers that resource, else ``{}``."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of work {kind!r}; known: {', '.join(KINDS)}")
    name = f"evoagg_{kind}"
    return {name: 1.0} if name in _offered() else {}
