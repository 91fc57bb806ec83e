"""Shared fixtures. Unit tests need nothing built; integration tests build the real
generic kernel once per session (cached by source hash across sessions)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("ci")


class Wasm(bytes):
    """Module bytes that print short: hypothesis reports fixture arguments on failure."""

    def __repr__(self) -> str:
        return f"<wasm module, {len(self)} bytes>"


@pytest.fixture(scope="session")
def generic_wasm() -> bytes:
    from actors.kernel.build import build

    return Wasm(build().wasm)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A local Ray for one test module (at most one start per module): two CPUs, no dashboard."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
