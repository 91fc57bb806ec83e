"""Evolution settings: defaults, the YAML edge, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.cli import main
from actors.errors import ConfigError
from actors.evolve.settings import EvolutionConfig
from actors.loading import load_evolution

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_file_is_the_defaults() -> None:
    assert load_evolution(REPO / "configs/evolution.yaml") == EvolutionConfig().validate()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"islands": 0}, "islands: expected 1..64"),
        ({"alpha": -1}, "alpha"),
        ({"proposer": "gpt"}, "proposer: expected one of offline, anthropic"),
        ({"islandz": 2}, "unknown key"),
        ({"generations": "six"}, "generations: expected an integer"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EvolutionConfig.from_mapping(data, "evolution.yaml")


def test_evolve_usage_errors_exit_2_before_anything_starts(tmp_path: Path) -> None:
    w = str(REPO / "configs/workloads/w1.yaml")
    c = str(REPO / "configs/tenants/1042.yaml")
    assert main(["evolve", "--workload", w, "--config", c]) == 2
    assert main(["evolve"]) == 2
    bad = tmp_path / "evo.yaml"
    bad.write_text("islands: 100\n")
    assert main(["evolve", "--config", c, "--evolution", str(bad)]) == 2
