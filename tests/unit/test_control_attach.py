"""Attaching to a running cluster: a Ray client session whose start the head aborted is
tried again, nothing else is; a new control plane is returned once its parts answer."""

from __future__ import annotations

from typing import Any

import pytest

from actors import control
from actors.errors import Unavailable


class FakeInit:
    """Stands in for ``ray.init``: raises the given errors in turn, then returns."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        if self.errors:
            raise self.errors.pop(0)


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    pauses: list[float] = []
    monkeypatch.setattr("actors.control.time.sleep", pauses.append)
    return pauses


def aborted() -> ConnectionAbortedError:
    return ConnectionAbortedError("Initialization failure from server:\npsutil.ZombieProcess: PID still exists but it's a zombie (pid=1)\n")


def test_an_aborted_session_start_is_tried_again(monkeypatch: pytest.MonkeyPatch, no_sleep: list[float]) -> None:
    init = FakeInit(aborted())
    monkeypatch.setattr("actors.control.ray.init", init)
    control._attach("ray://127.0.0.1:10001")
    assert [c["address"] for c in init.calls] == ["ray://127.0.0.1:10001"] * 2
    assert all(c["namespace"] == control.NAMESPACE for c in init.calls)
    assert no_sleep == [2.0]


def test_it_gives_up_after_the_last_attempt(monkeypatch: pytest.MonkeyPatch, no_sleep: list[float]) -> None:
    init = FakeInit(*(aborted() for _ in range(control.CLIENT_ATTEMPTS)))
    monkeypatch.setattr("actors.control.ray.init", init)
    with pytest.raises(ConnectionAbortedError, match="zombie"):
        control._attach("ray://head:10001")
    assert len(init.calls) == control.CLIENT_ATTEMPTS
    assert no_sleep == [2.0 * a for a in range(1, control.CLIENT_ATTEMPTS)]


@pytest.mark.parametrize(
    ("address", "error"),
    [
        ("ray://head:10001", ConnectionError("refused")),  # a wrong address or a refused token is not transient
        ("ray://head:10001", ValueError("bad address")),
        ("auto", aborted()),  # not a client session: nothing of Ray Client's to retry
    ],
)
def test_other_failures_are_not_retried(monkeypatch: pytest.MonkeyPatch, no_sleep: list[float], address: str, error: BaseException) -> None:
    init = FakeInit(error)
    monkeypatch.setattr("actors.control.ray.init", init)
    with pytest.raises(type(error)):
        control._attach(address)
    assert len(init.calls) == 1 and no_sleep == []


class FakeControl:
    """A control actor whose ``status`` answers in turn with the given statuses."""

    def __init__(self, *statuses: dict[str, Any]) -> None:
        self.statuses = list(statuses)
        self.status = self

    def remote(self) -> dict[str, Any]:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


UP = {"shards": {"s0": {"reachable": True}}, "registry": {"reachable": True}}
SHARD_DOWN = {"shards": {"s0": {"reachable": False, "error": "RayActorError: died in __init__"}}, "registry": {"reachable": True}}


def test_a_new_control_plane_is_returned_once_its_shards_answer(monkeypatch: pytest.MonkeyPatch, no_sleep: list[float]) -> None:
    monkeypatch.setattr("actors.control.ray.get", lambda x: x)
    control._wait_until_serving(FakeControl(SHARD_DOWN, SHARD_DOWN, UP))
    assert no_sleep == [1.0, 1.0]


def test_a_control_plane_whose_shard_never_answers_is_an_error(monkeypatch: pytest.MonkeyPatch, no_sleep: list[float]) -> None:
    monkeypatch.setattr("actors.control.ray.get", lambda x: x)
    with pytest.raises(Unavailable, match=r"s0.*died in __init__"):
        control._wait_until_serving(FakeControl(SHARD_DOWN), within_s=0.0)
