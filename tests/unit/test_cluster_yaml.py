"""The cluster launcher configs: cluster.yaml (AWS) and configs/cluster-local.yaml (on premises).

Each goes through what `ray up` does to a config before it touches a machine
(``prepare_config``: defaults merged, node types filled in; then ``validate_config``: Ray's
JSON schema and its consistency checks), and the commands are checked for what the README
relies on: the Ray pin, the toolchain and package installs, the Ray Client port, token auth and
the custom resources. No cloud credentials or network: the AWS provider's own bootstrap (which
calls EC2) is the one step left out.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.providers import _get_node_provider_cls
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[2]
AWS = REPO / "cluster.yaml"
LOCAL = REPO / "configs" / "cluster-local.yaml"
FILES = [pytest.param(AWS, id="aws"), pytest.param(LOCAL, id="local")]
COMMAND_LISTS = ("setup_commands", "head_setup_commands", "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
CUSTOM = ("evoagg_registry", "evoagg_island", "evoagg_build", "evoagg_shard")


def load(path: Path) -> dict[str, Any]:
    config = yaml.safe_load(path.read_text())
    assert isinstance(config, dict)
    return config


def prepared(path: Path) -> dict[str, Any]:
    """The config as `ray up` validates it: defaults merged, node types filled in."""
    config: dict[str, Any] = prepare_config(load(path))
    return config


def ray_pin(commands: list[str]) -> str:
    pins: set[str] = {m for c in commands for m in re.findall(r"ray\[default\]==([\w.]+)", c)}
    assert len(pins) == 1, pins
    return pins.pop()


def resources_of(command: str, nproc: int = 16) -> dict[str, int]:
    """The --resources that ``command`` passes to `ray start`, as bash expands it on a node with
    ``nproc`` cores (``ray``, ``nproc`` and ``ulimit`` are stubbed); {} when there is none."""
    stubs = (
        'ray() { for a in "$@"; do case "$a" in --resources=*) printf "%s" "${a#--resources=}";; esac; done; }\n'
        f"nproc() {{ echo {nproc}; }}\n"
        "ulimit() { :; }\n"
    )
    r = subprocess.run(["bash", "-c", stubs + command], capture_output=True, text=True, env={"RAY_HEAD_IP": "10.0.0.1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    parsed: dict[str, int] = json.loads(r.stdout) if r.stdout else {}
    return parsed


def start_command(commands: list[str]) -> str:
    (start,) = [c for c in commands if "ray start" in c]
    return start


# -- Ray's own validation ---------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES)
def test_passes_ray_validation(path: Path) -> None:
    config = prepared(path)
    validate_config(config)
    assert config["head_node_type"] in config["available_node_types"]
    if config["provider"]["type"] == "local":
        # The next step of `ray up`; for AWS it calls EC2.
        provider_cls = _get_node_provider_cls(config["provider"])
        validate_config(provider_cls.bootstrap_config(config))


@pytest.mark.parametrize("path", FILES)
@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda c: c.update(tenants={"1042": {}}), id="unknown top-level key"),
        pytest.param(lambda c: c["available_node_types"][c["head_node_type"]].update(resourcez={}), id="unknown node-type key"),
        pytest.param(lambda c: c["available_node_types"][c["head_node_type"]]["resources"].update(evoagg_build=-1), id="negative resource"),
        pytest.param(lambda c: c.update(setup_commands="pip install ."), id="commands not a list"),
        pytest.param(lambda c: c["provider"].pop("type"), id="provider without type"),
    ],
)
def test_validation_rejects_a_broken_config(path: Path, mutate: Any) -> None:
    config = prepared(path)
    validate_config(copy.deepcopy(config))
    mutate(config)
    with pytest.raises(jsonschema.ValidationError):
        validate_config(config)


def test_local_provider_refuses_node_types() -> None:
    """Why the on-premise config passes resources on `ray start` instead of per node type."""
    config = load(LOCAL)
    config["available_node_types"] = load(AWS)["available_node_types"]
    config["head_node_type"] = load(AWS)["head_node_type"]
    with pytest.raises(click.ClickException):
        prepare_config(config)
    without_workers = load(LOCAL)
    del without_workers["provider"]["worker_ips"]
    with pytest.raises(click.ClickException):
        prepare_config(without_workers)


# -- what is installed, and how ---------------------------------------------------------------


@pytest.mark.parametrize("path", FILES)
def test_ray_pin_matches_the_project(path: Path) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (dep,) = [d for d in pyproject["project"]["dependencies"] if d.startswith("ray[")]
    assert dep == f"ray[default]=={ray.__version__}"
    assert ray_pin(load(path)["setup_commands"]) == ray.__version__


def test_both_files_install_the_same_way() -> None:
    assert load(AWS)["setup_commands"] == load(LOCAL)["setup_commands"]
    assert load(AWS)["file_mounts"] == load(LOCAL)["file_mounts"]
    assert load(AWS)["rsync_exclude"] == load(LOCAL)["rsync_exclude"]


@pytest.mark.parametrize("path", FILES)
def test_setup_installs_toolchain_and_package(path: Path) -> None:
    setup = "\n".join(load(path)["setup_commands"])
    for word in ("rustc-web", "rust-web-src", "cargo-web", "lld", "apt-get install -y", "rustup target add wasm32-unknown-unknown"):
        assert word in setup, word
    assert re.search(r"pip install .*-e ~/evoagg\b", setup), "the checkout, editable (the builder finds guest-rust/ next to it)"
    # Ray turns token mode on by itself; set explicitly on the head, Ray Client sessions fail.
    assert "RAY_AUTH_MODE" not in setup
    config = load(path)
    assert config["file_mounts"]["~/evoagg"] == "."
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert {".venv/", "*.key"} <= set(config["rsync_exclude"])


@pytest.mark.parametrize("path", FILES)
def test_every_command_is_valid_shell(path: Path) -> None:
    config = load(path)
    commands = [c for key in COMMAND_LISTS for c in config.get(key) or []]
    assert commands
    for command in commands:
        r = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert r.returncode == 0, f"{command!r}: {r.stderr}"


def test_aws_nodes_get_rsync_at_boot() -> None:
    """Ray's file_mounts need rsync before setup_commands run; Debian's AMIs lack it."""
    types = load(AWS)["available_node_types"]
    assert len({t["node_config"]["ImageId"] for t in types.values()}) == 1
    for t in types.values():
        user_data = t["node_config"]["UserData"]
        assert user_data.startswith("#cloud-config\n")
        (bootcmd,) = yaml.safe_load(user_data)["bootcmd"]
        assert "apt-get install" in bootcmd and "rsync" in bootcmd
        assert subprocess.run(["sh", "-n", "-c", bootcmd]).returncode == 0
    assert any("boto3" in c for c in load(AWS)["head_setup_commands"])


# -- how Ray starts ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES)
def test_head_serves_ray_client_without_dashboard(path: Path) -> None:
    config = load(path)
    head = start_command(config["head_start_ray_commands"])
    for flag in ("--head", "--port=6379", "--ray-client-server-port=10001", "--include-dashboard=false", "--autoscaling-config=~/ray_bootstrap_config.yaml"):
        assert flag in head.split(), flag
    worker = start_command(config["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6379" in worker.split()
    assert "dashboard" not in worker  # a head-only flag; workers follow the head


def test_aws_custom_resources_per_node_type() -> None:
    config = load(AWS)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]["resources"]
    assert head["CPU"] == 0 and head["evoagg_registry"] == 1 and head["evoagg_island"] > 0
    workers = [t["resources"] for name, t in types.items() if name != config["head_node_type"]]
    build = [r for r in workers if r.get("evoagg_build")]
    shard = [r for r in workers if r.get("evoagg_shard")]
    assert build and shard
    assert all(0 < r["evoagg_build"] <= r["CPU"] and "evoagg_shard" not in r for r in build)
    assert all(0 < r["evoagg_shard"] <= r["CPU"] and "evoagg_build" not in r for r in shard)
    assert {k for t in types.values() for k in t["resources"]} - {"CPU"} == set(CUSTOM)
    # One worker command serves both types: a --resources there would be merged into each.
    assert resources_of(start_command(config["worker_start_ray_commands"])) == {}
    assert resources_of(start_command(config["head_start_ray_commands"])) == {}


@pytest.mark.parametrize(("nproc", "build", "shard"), [(1, 1, 1), (3, 2, 3), (16, 8, 16), (64, 32, 64)])
def test_local_custom_resources_on_ray_start(nproc: int, build: int, shard: int) -> None:
    config = load(LOCAL)
    head = resources_of(start_command(config["head_start_ray_commands"]), nproc)
    assert head == {"evoagg_registry": 1, "evoagg_island": 16}
    worker = resources_of(start_command(config["worker_start_ray_commands"]), nproc)
    assert worker == {"evoagg_build": build, "evoagg_shard": shard}
