"""Work asks for a custom resource only when the cluster offers it."""

from __future__ import annotations

import pytest

from actors import placement


def test_nothing_is_asked_for_without_a_cluster() -> None:
    assert all(placement.resources(k) == {} for k in placement.KINDS)


def test_a_resource_is_asked_for_when_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "_offered", lambda: frozenset({"evoagg_build", "evoagg_shard"}))
    assert placement.resources("build") == {"evoagg_build": 1.0}
    assert placement.resources("shard") == {"evoagg_shard": 1.0}
    assert placement.resources("island") == {}


def test_an_unknown_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        placement.resources("gpu")
