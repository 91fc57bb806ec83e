"""What a proposer is told about its parent (``actors.evolve.island.request``): the
parent's own failed child (not another parent's) with its source, and the parent's
measured fuel and time from its bench stage."""

from __future__ import annotations

from pathlib import Path

from actors.evolve.island import Choice, request
from tests.support.records import record

BENCH = {
    "accepted": True,
    "stages": [
        {"name": "build", "status": "passed"},
        {
            "name": "bench",
            "status": "passed",
            "details": {
                "fuel_per_message": 250000.0,
                "current_fuel_per_message": 1200000.0,
                "ratio": 4.1,
                "candidate": {"us_per_message": 21.5, "flush_share": 0.01},
            },
        },
    ],
}
BUILD_ERROR = {"name": "build", "status": "failed", "reason": "error[E0308]", "details": {"output": "error[E0308]: mismatched types"}}
FAILED = {"accepted": False, "stages": [BUILD_ERROR]}


def test_the_parents_failed_child_is_fed_back_with_its_source_and_anothers_is_not() -> None:
    parent = record("p", report=BENCH)
    child = record("c", source="// broken child\n", parent_id="p", status="rejected", report=FAILED)
    req = request(1042, Path("."), Choice(parent, ()), child, None)
    assert req.failed_source == "// broken child\n" and "mismatched types" in (req.last_build_errors or "")
    other = request(1042, Path("."), Choice(record("q", report=BENCH), ()), child, None)
    assert other.failed_source is None and other.last_build_errors is None and other.last_report is None


def test_the_parents_bench_figures_are_its_profile() -> None:
    req = request(1042, Path("."), Choice(record("p", report=BENCH), ()), None, None)
    assert req.profile is not None
    assert (req.profile["fuel_per_message"], req.profile["generic_fuel_per_message"], req.profile["us_per_message"]) == (250000.0, 1200000.0, 21.5)
    assert request(1042, Path("."), Choice(record("p"), ()), None, None).profile is None
