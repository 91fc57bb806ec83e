"""The demo's summary as a pure function of its samples and the final status."""

from __future__ import annotations

from typing import Any

from actors.demo import summarize


def tenant(version: int, origin: str, received: int, rejected: dict[str, int]) -> dict[str, Any]:
    return {
        "module": {"version": version, "origin": origin},
        "swaps": version - 1,
        "rollbacks": 0,
        "messages_received": received,
        "messages_accepted": received - sum(rejected.values()),
        "rejected": rejected,
        "swap_rejections": {"stale_version": 1},
        "improvement": {"stage": "done", "rejected": {"differential": 2}},
        "points_in": 1000 * received,
        "points_late": 3,
        "points_nonfinite": 1,
    }


def test_before_is_the_generic_kernel_alone_and_after_the_final_module() -> None:
    samples = [{"t": t, "org": 7, "capacity": c, "offered": 10.0, "version": v, "probation": None} for t, c, v in [
        (1, 50.0, 1), (6, 100.0, 1), (8, 110.0, 1), (12, 20.0, 1),  # warm-up ends at 10: 12 s is under contention
        (15, 300.0, 2), (20, 400.0, 3), (21, 420.0, 3),
    ]]  # fmt: skip
    final = {"tenants": {7: tenant(3, "evolved gen 2", 100, {"truncated": 2})}}
    s = summarize(samples, final, {7: 100}, "c.png", before_until=10)
    t = s["tenants"][0]
    assert t["msg_per_s_before"] == 105.0 and t["msg_per_s_after"] == 410.0
    assert t["final_module"] == {"version": 3, "origin": "evolved gen 2"} and t["swaps"] == 2
    assert t["messages_in"] == t["messages_accounted"] == 100
    assert (t["points_in"], t["points_late"], t["points_nonfinite"]) == (100_000, 3, 1)
    assert s["rejections_by_reason"] == {"candidate:differential": 2, "message:truncated": 2, "module:stale_version": 1}
    assert s["chart"] == "c.png"


def test_messages_lost_show_as_a_difference() -> None:
    final = {"tenants": {7: tenant(1, "generic", 90, {})}}
    t = summarize([], final, {7: 100}, None, before_until=10)["tenants"][0]
    assert t["messages_in"] == 100 and t["messages_accounted"] == 90
    assert t["msg_per_s_before"] is None


def test_after_is_measured_once_everything_has_settled() -> None:
    samples = [{"t": t, "org": 7, "capacity": c, "offered": 10.0, "version": v, "probation": None} for t, c, v in [
        (6, 100.0, 1), (8, 100.0, 1), (30, 300.0, 3), (40, 200.0, 3),  # 40: the other tenant still swapping
        (52, 400.0, 3), (53, 420.0, 3), (54, 410.0, 3),
    ]]  # fmt: skip
    final = {"tenants": {7: tenant(3, "evolved gen 1", 10, {})}}
    t = summarize(samples, final, {7: 10}, None, before_until=10, after_from=50)["tenants"][0]
    assert t["msg_per_s_before"] == 100.0 and t["msg_per_s_after"] == 410.0
