"""Attaching to a running cluster: a Ray client session whose start the head aborted is
tried again; nothing else is."""

from __future__ import annotations

from typing import Any

import pytest

from actors import control


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
