"""The command line as a user runs it: gen, then replay, in a subprocess."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from actors import oracle
from actors.loading import load_tenant
from actors.output import Row, output_hash
from actors.payload import read_payloads

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def evoagg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "actors.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("traffic") / "w1.bin"
    r = evoagg("gen", "--workload", "configs/workloads/w1.yaml", "--messages", "60", "--seed", "7", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_gen_is_deterministic(traffic: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.bin"
    assert evoagg("gen", "--workload", "configs/workloads/w1.yaml", "--messages", "60", "--seed", "7", "--out", str(again)).returncode == 0
    assert again.read_bytes() == traffic.read_bytes()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_replay_writes_sorted_rows_and_the_oracle_agrees(traffic: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"out.{fmt}"
    r = evoagg("replay", "--config", "configs/tenants/1042.yaml", "--input", str(traffic), "--kernel", "generic", "--out", str(out), "--json", "--oracle")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["messages"] == summary["accepted"] == 60
    assert summary["oracle_agrees"] is True
    assert summary["msg_per_s"] > 0 and summary["points_per_s"] > 0
    if fmt == "parquet":
        rows = [Row(**d) for d in pq.read_table(out).to_pylist()]
    elif fmt == "csv":
        with open(out) as f:
            rows = [Row(d["query"], int(d["bucket"]), d["group"], float(d["value"])) for d in csv.DictReader(f)]
    else:
        rows = [Row(**json.loads(line)) for line in out.read_text().splitlines()]
    assert rows == sorted(rows, key=lambda x: (x.query, x.bucket, x.group))
    assert output_hash(rows) == summary["output_hash"]
    ref = oracle.aggregate(load_tenant(REPO / "configs/tenants/1042.yaml"), [p for p in read_payloads(traffic) if isinstance(p, bytes)])
    assert output_hash(ref.rows) == summary["output_hash"]


def test_jsonl_input_gives_the_same_hash(traffic: Path, tmp_path: Path) -> None:
    js = tmp_path / "w1.jsonl"
    assert evoagg("gen", "--workload", "configs/workloads/w1.yaml", "--messages", "60", "--seed", "7", "--out", str(js)).returncode == 0
    a = json.loads(evoagg("replay", "--config", "configs/tenants/1042.yaml", "--input", str(traffic), "--json").stdout)
    b = json.loads(evoagg("replay", "--config", "configs/tenants/1042.yaml", "--input", str(js), "--json").stdout)
    assert a["output_hash"] == b["output_hash"]


def test_bad_inputs_exit_2_with_a_clear_message(traffic: Path, tmp_path: Path) -> None:
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text('org: 1\ninterval_s: 30\nqueries:\n  - id: x\n    q: "sum:cpu{a:b"\n')
    r = evoagg("replay", "--config", str(bad_cfg), "--input", str(traffic))
    assert r.returncode == 2 and "query 'x', column 12" in r.stderr
    r = evoagg("replay", "--config", "configs/tenants/1042.yaml", "--input", str(tmp_path / "nope.txt"))
    assert r.returncode == 2 and "expected a .bin or .jsonl" in r.stderr
    r = evoagg("replay", "--config", "configs/tenants/1042.yaml", "--input", str(traffic), "--out", str(tmp_path / "x.xlsx"))
    assert r.returncode == 2 and "--out" in r.stderr


def test_missing_files_exit_2(tmp_path: Path) -> None:
    r = evoagg("replay", "--config", "configs/tenants/1042.yaml", "--input", str(tmp_path / "absent.bin"))
    assert r.returncode == 2 and "absent.bin" in r.stderr and "Traceback" not in r.stderr
    r = evoagg("gen", "--workload", "configs/workloads/w1.yaml", "--messages", "1", "--out", str(tmp_path / "no" / "dir.bin"))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_a_module_file_and_sandbox_limits(traffic: Path, tmp_path: Path, generic_wasm: bytes) -> None:
    wasm = tmp_path / "k.wasm"
    wasm.write_bytes(generic_wasm)
    a = json.loads(evoagg("replay", "--config", "configs/tenants/1042.yaml", "--input", str(traffic), "--json").stdout)
    r = evoagg("replay", "--config", "configs/tenants/1042.yaml", "--input", str(traffic), "--kernel", str(wasm), "--sandbox", "configs/sandbox.yaml", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output_hash"] == a["output_hash"]
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("memory_limit_bytes: 1048576\n")
    r = evoagg("replay", "--config", "configs/tenants/1042.yaml", "--input", str(traffic), "--sandbox", str(tiny))
    assert r.returncode == 1 and "memory" in r.stderr and "Traceback" not in r.stderr
    wasm.write_bytes(b"\x00asm\x01\x00\x00\x00junk")
    r = evoagg("replay", "--config", "configs/tenants/1042.yaml", "--input", str(traffic), "--kernel", str(wasm))
    assert r.returncode == 1 and "invalid" in r.stderr


def test_wrong_tenant_traffic_is_rejected_not_fatal(traffic: Path) -> None:
    r = evoagg("replay", "--config", "configs/tenants/2077.yaml", "--input", str(traffic), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["rejected"] == {"wrong_org": 60} and summary["rows"] == 0
