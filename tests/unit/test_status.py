"""The status assembled from the shards' and registry's answers: a shard that did not
answer, or failed, is reported with its tenants instead of holding the status up."""

from __future__ import annotations

from typing import Any

from actors.status import assemble

MAPPING = {1: "s-a", 2: "s-a", 3: "s-b", 4: "s-c"}
JOBS = {1: {"stage": "evolving"}, 2: None, 3: {"stage": "done"}, 4: None}
LATEST: dict[int, Any] = {org: {"latest": {"manifest": {"version": v}}} for org, v in {1: 3, 2: 1, 3: 2}.items()} | {4: {"latest": None}}


def answer(orgs: list[int]) -> dict[str, Any]:
    return {
        "orgs": {org: {"module": {"version": org, "origin": "generic"}, "messages_received": 10 * org} for org in orgs},
        "batches": 7,
        "recovery": {"seconds": 0.1},
        "swap_pauses_ms": [1.5],
        "history": [{"org": org, "event": "Swapped"} for org in orgs],
    }


def test_every_shard_answering() -> None:
    st = assemble({1: "s-a", 2: "s-a"}, {"s-a": answer([1, 2])}, LATEST, JOBS)
    assert st["mapping"] == {1: "s-a", 2: "s-a"} and st["registry"] == {"reachable": True}
    assert st["shards"] == {"s-a": {"reachable": True, "orgs": [1, 2], "batches": 7, "recovery": {"seconds": 0.1}, "swap_pauses_ms": [1.5]}}
    one = st["tenants"][1]
    assert one["reachable"] and one["shard"] == "s-a" and one["messages_received"] == 10 and one["module"]["version"] == 1
    assert one["latest_version"] == 3 and one["improvement"] == {"stage": "evolving"}
    assert one["history"] == [{"org": 1, "event": "Swapped"}]  # only its own events
    assert st["tenants"][2]["latest_version"] == 1 and st["tenants"][2]["improvement"] is None


def test_a_silent_and_a_failing_shard_are_reported_with_their_tenants() -> None:
    st = assemble(MAPPING, {"s-a": answer([1, 2]), "s-b": None, "s-c": RuntimeError("actor died")}, LATEST, JOBS)
    assert st["shards"]["s-a"]["reachable"]
    assert st["shards"]["s-b"] == {"reachable": False, "error": "no answer in time (restarting, dead or busy)", "orgs": [3]}
    assert st["shards"]["s-c"] == {"reachable": False, "error": "RuntimeError: actor died", "orgs": [4]}
    assert sorted(st["tenants"]) == [1, 2, 3, 4]
    three = st["tenants"][3]
    assert three == {
        "shard": "s-b",
        "reachable": False,
        "error": "no answer in time (restarting, dead or busy)",
        "latest_version": 2,
        "improvement": {"stage": "done"},
    }
    assert st["tenants"][4]["error"] == "RuntimeError: actor died" and st["tenants"][4]["latest_version"] is None
    assert st["tenants"][1]["reachable"] and st["tenants"][1]["messages_received"] == 10


def test_a_tenant_its_shard_does_not_list_is_reported_not_dropped() -> None:
    st = assemble({1: "s-a", 5: "s-a"}, {"s-a": answer([1])}, LATEST, JOBS)
    assert st["tenants"][5]["reachable"] is False and "not served by s-a" in st["tenants"][5]["error"]


def test_a_registry_that_does_not_answer_is_reported_and_its_versions_unknown() -> None:
    latest = dict(LATEST) | {2: TimeoutError("no answer in 10 s")}
    st = assemble({1: "s-a", 2: "s-a"}, {"s-a": answer([1, 2])}, latest, JOBS)
    assert st["registry"] == {"reachable": False, "error": "TimeoutError: no answer in 10 s"}
    assert st["tenants"][2]["latest_version"] is None and st["tenants"][1]["latest_version"] == 3
