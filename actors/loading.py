"""The edge where YAML files become config objects. Nothing else reads YAML."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from actors.config import SandboxConfig, TenantConfig, check_keys
from actors.errors import ConfigError
from actors.evolve.settings import EvolutionConfig
from actors.shard.settings import ShardSettings
from actors.workload import TrafficShape, Workload


def _read(path: Path) -> Any:
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None


def load_tenant(path: Path) -> TenantConfig:
    return TenantConfig.from_mapping(_read(path) or {}, str(path))


def load_sandbox(path: Path) -> SandboxConfig:
    return SandboxConfig.from_mapping(_read(path) or {}, str(path))


def load_workload(path: Path) -> Workload:
    """A workload file: ``name``, ``tenant`` (a path relative to the file, or inline) and ``traffic``."""
    data = _read(path) or {}
    check_keys(str(path), data, {"name", "description", "tenant", "traffic"})
    if "tenant" not in data:
        raise ConfigError(f"{path}: missing key 'tenant'")
    tenant_ref = data["tenant"]
    tenant = load_tenant((path.parent / tenant_ref).resolve()) if isinstance(tenant_ref, str) else TenantConfig.from_mapping(tenant_ref, f"{path}: tenant")
    traffic = TrafficShape.from_mapping(data.get("traffic") or {}, f"{path}: traffic")
    return Workload(str(data.get("name", path.stem)), tenant, traffic)


def load_evolution(path: Path) -> EvolutionConfig:
    return EvolutionConfig.from_mapping(_read(path) or {}, str(path))


_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


def load_shard_settings(path: Path) -> ShardSettings:
    """A shard settings file. A ``trusted_keys`` entry that is not a 64-hex-digit key is the
    path of a ``.pub`` file; a relative one is taken from the YAML file's directory."""
    data = _read(path) or {}
    if isinstance(data, dict) and isinstance(data.get("trusted_keys"), list):
        data = {**data, "trusted_keys": [_key_entry(path.parent, k) for k in data["trusted_keys"]]}
    return ShardSettings.from_mapping(data, str(path))


def _key_entry(base: Path, entry: Any) -> Any:
    if not isinstance(entry, str) or not entry or _HEX_KEY.fullmatch(entry):
        return entry  # a hex key, or something validate() reports
    key_path = Path(entry).expanduser()
    return str(key_path if key_path.is_absolute() else (base / key_path).resolve())
