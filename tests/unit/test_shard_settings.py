"""Shard settings: defaults, named errors per field, the mapping and YAML edges, key paths."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from actors.config import SandboxConfig
from actors.errors import ConfigError
from actors.loading import load_shard_settings
from actors.reservoir import ShadowSettings
from actors.shard.settings import ShardSettings
from actors.signing import TrustStore, keygen

REPO = Path(__file__).resolve().parents[2]
HEX = "ab" * 32


def test_the_defaults_validate() -> None:
    s = ShardSettings()
    assert s.validate() is s
    assert s.trusted_keys == ()
    assert s.shadow == ShadowSettings()
    assert s.sandbox == SandboxConfig()


def test_the_shipped_file_is_the_defaults() -> None:
    assert load_shard_settings(REPO / "configs/shard.yaml") == ShardSettings().validate()


def test_the_shipped_file_sets_every_field() -> None:
    text = (REPO / "configs/shard.yaml").read_text()
    for f in fields(ShardSettings):
        assert f"\n{f.name}:" in text, f.name
    for nested in (*fields(ShadowSettings), *fields(SandboxConfig)):
        assert f"\n  {nested.name}:" in text, nested.name


BAD_FIELDS: list[tuple[str, Any]] = [
    ("allowed_lateness_s", -1),
    ("allowed_lateness_s", 60.0),
    ("allowed_lateness_s", True),
    ("allowed_lateness_s", 2**31 + 1),
    ("max_batch_messages", 0),
    ("max_batch_messages", 1_000_001),
    ("max_batch_messages", "4096"),
    ("probation_batches", -1),
    ("checkpoint_every_batches", -1),
    ("checkpoint_every_batches", 1.5),
    ("checkpoint_every_s", 0),
    ("checkpoint_every_s", -3.0),
    ("checkpoint_every_s", float("nan")),
    ("checkpoint_every_s", float("inf")),
    ("checkpoint_every_s", True),
    ("checkpoint_every_s", "30"),
    ("poll_interval_s", 0.0),
    ("poll_interval_s", 86_400 * 366),
    ("rate_window_s", 0),
    ("rate_window_s", None),
    ("fsync", 1),
    ("fsync", "yes"),
    ("trusted_keys", ("",)),
    ("trusted_keys", (HEX, 7)),
]


@pytest.mark.parametrize(("name", "value"), BAD_FIELDS)
def test_each_invalid_field_is_named(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"^{name}: "):
        ShardSettings(**{name: value}).validate()


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, v in BAD_FIELDS if n != "trusted_keys"] + [("trusted_keys", [""]), ("trusted_keys", "k")])
def test_each_invalid_field_is_named_from_a_mapping(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"^shard\.yaml: {name}: "):
        ShardSettings.from_mapping({name: value}, "shard.yaml")


@pytest.mark.parametrize(
    ("nested", "name", "value"),
    [
        ("shadow", "training_capacity", 0),
        ("shadow", "holdout_capacity", -1),
        ("shadow", "holdout_fraction", 1.0),
        ("shadow", "sample_rate", 0.0),
        ("sandbox", "memory_limit_bytes", 2**31 + 1),
        ("sandbox", "call_deadline_ms", 0),
        ("sandbox", "epoch_tick_ms", 0),
        ("sandbox", "max_module_bytes", 10),
    ],
)
def test_invalid_nested_fields_are_named(nested: str, name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"shard\.yaml: .*{nested}: {name}: "):
        ShardSettings.from_mapping({nested: {name: value}}, "shard.yaml")
    inner = ShadowSettings(**{name: value}) if nested == "shadow" else SandboxConfig(**{name: value})
    with pytest.raises(ConfigError, match=rf"^{name}: "):
        ShardSettings(**{nested: inner}).validate()  # type: ignore[arg-type]


def test_a_nested_error_names_the_source_once() -> None:
    with pytest.raises(ConfigError) as e:
        ShardSettings.from_mapping({"shadow": {"training_capacity": 0}}, "shard.yaml")
    assert str(e.value).count("shard.yaml") == 1, str(e.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"fsynk": True}, r"unknown key\(s\) fsynk"),
        ({"shadow": {"sample": 0.5}}, r"shadow: unknown key\(s\) sample"),
        ({"sandbox": {"memory": 1}}, r"sandbox: unknown key\(s\) memory"),
        ({"shadow": [1, 2]}, "shadow: expected a mapping"),
    ],
)
def test_unknown_keys_are_rejected(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ShardSettings.from_mapping(data, "shard.yaml")


def test_a_non_mapping_is_rejected() -> None:
    with pytest.raises(ConfigError, match="expected a mapping, found list"):
        ShardSettings.from_mapping([1, 2], "shard.yaml")  # type: ignore[arg-type]


def test_from_mapping_parses_nested_shadow_and_sandbox() -> None:
    s = ShardSettings.from_mapping(
        {
            "allowed_lateness_s": 5,
            "fsync": True,
            "trusted_keys": [HEX, "/keys/a.pub"],
            "shadow": {"training_capacity": 64, "sample_rate": 0.5},
            "sandbox": {"call_deadline_ms": 500, "epoch_tick_ms": 5},
        }
    )
    assert s == ShardSettings(
        allowed_lateness_s=5,
        fsync=True,
        trusted_keys=(HEX, "/keys/a.pub"),
        shadow=ShadowSettings(training_capacity=64, sample_rate=0.5),
        sandbox=SandboxConfig(call_deadline_ms=500, epoch_tick_ms=5),
    )
    assert isinstance(s.trusted_keys, tuple)


def test_empty_nested_sections_and_keys_are_the_defaults() -> None:
    assert ShardSettings.from_mapping({"shadow": None, "sandbox": None, "trusted_keys": None}) == ShardSettings()
    assert ShardSettings.from_mapping({}) == ShardSettings()


def test_relative_key_paths_are_taken_from_the_yaml_directory(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    _, pub = keygen(conf / "keys")
    elsewhere = tmp_path / "elsewhere.pub"
    elsewhere.write_text(HEX.replace("ab", "cd") + "\n")
    (conf / "shard.yaml").write_text(f"trusted_keys: [keys/evoagg.pub, {HEX}, {elsewhere}, ../elsewhere.pub]\nfsync: true\n")
    s = load_shard_settings(conf / "shard.yaml")
    assert s.trusted_keys == (str(pub.resolve()), HEX, str(elsewhere), str(elsewhere.resolve()))
    assert s.fsync is True
    # The entries are usable from any working directory: the shard reads them as they are.
    assert len(TrustStore.from_entries(list(s.trusted_keys)).key_ids) == 3


def test_bad_key_entries_in_yaml_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("trusted_keys: keys/evoagg.pub\n")
    with pytest.raises(ConfigError, match="trusted_keys: expected a list"):
        load_shard_settings(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("trusted_keys: [12]\n")
    with pytest.raises(ConfigError, match="trusted_keys: expected a list of hex keys"):
        load_shard_settings(tmp_path / "b.yaml")


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_shard_settings(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("fsync: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_shard_settings(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping"):
        load_shard_settings(tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_shard_settings(tmp_path / "empty.yaml") == ShardSettings()


def test_loading_settings_does_not_import_ray() -> None:
    code = "import sys, actors.loading, actors.shard.settings; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
