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


def test_flush_lag_bounds_memory_and_agrees_with_the_oracle(tmp_path: Path) -> None:
    w2 = tmp_path / "w2.bin"
    assert evoagg("gen", "--workload", "configs/workloads/w2.yaml", "--messages", "120", "--out", str(w2)).returncode == 0
    r = evoagg("replay", "--config", "configs/tenants/2077.yaml", "--input", str(w2), "--flush-lag", "60", "--batch", "16", "--oracle", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout)
    assert summary["oracle_agrees"] is True and summary["rows"] > 1000
    assert "late_points" in summary
    r = evoagg("replay", "--config", "configs/tenants/2077.yaml", "--input", str(w2), "--flush-lag", "-1")
    assert r.returncode == 2 and "--flush-lag" in r.stderr


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
    r = evoagg("replay", "--config", "configs/tenants/1042.yaml", "--input", str(traffic), "--out", str(tmp_path / "no" / "x.csv"))
    assert r.returncode == 2 and "does not exist" in r.stderr


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


# Accepts every message, aggregates nothing: subtly wrong, and well-formed by the ABI.
DROPPER = """
(module
  (memory (export "memory") 1)
  (func (export "evoagg_abi_version") (result i32) i32.const 1)
  (func (export "evoagg_alloc") (param $n i32) (result i32)
    (i32.mul (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1))) (i32.const 65536)))
  (func (export "evoagg_free") (param i32 i32))
  (func (export "evoagg_init") (param i32 i32) (result i32) i32.const 0)
  (func (export "evoagg_process") (param $p i32) (param $len i32) (result i64) (local $pos i32) (local $n i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $pos) (local.get $len)))
      (local.set $pos (i32.add (local.get $pos) (i32.add (i32.const 4) (i32.load (i32.add (local.get $p) (local.get $pos))))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $next)))
    (i32.store (i32.const 0) (local.get $n))
    (i32.store (i32.const 4) (i32.const 0))
    (i64.store (i32.const 8) (i64.const 0))
    (i64.store (i32.const 16) (i64.const 0))
    (i64.store (i32.const 24) (i64.const 0))
    (i64.store (i32.const 32) (i64.const 0x8000000000000000))
    i64.const 40)  ;; result at address 0, 40 bytes
  (func (export "evoagg_flush") (param i64) (result i64) (i32.store (i32.const 0) (i32.const 0)) i64.const 4))
"""


def test_oracle_disagreement_exits_1_and_says_where(traffic: Path, tmp_path: Path) -> None:
    import wasmtime

    wasm = tmp_path / "dropper.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(DROPPER))
    r = evoagg("replay", "--config", "configs/tenants/1042.yaml", "--input", str(traffic), "--kernel", str(wasm), "--oracle", "--json")
    assert r.returncode == 1, r.stderr
    summary = json.loads(r.stdout)
    assert summary["oracle_agrees"] is False and summary["rows"] == 0
    what = {d["what"]: d for d in summary["oracle_disagreements"]}
    assert what["rows"]["kernel_rows"] == 0 and what["rows"]["first_difference"]["kernel"] is None
    assert what["points"] == {"what": "points", "kernel": 0, "oracle": 60_000}


def test_reader_rejections_count_as_messages(tmp_path: Path) -> None:
    js = tmp_path / "mixed.jsonl"
    good = '{"org": 1042, "series": [{"metric": "cpu.usage", "tags": ["service:svc-01"], "points": [[1764000000, 0.5]]}]}'
    js.write_text("\n".join([good, "not json", good, '{"org": 1042}']) + "\n")
    r = evoagg("replay", "--config", "configs/tenants/1042.yaml", "--input", str(js), "--oracle", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout)
    assert (summary["messages"], summary["accepted"], summary["rejected"]) == (4, 2, {"bad_json": 2})
    assert summary["oracle_agrees"] is True and summary["rows"] == 1


def test_wrong_tenant_traffic_is_rejected_not_fatal(traffic: Path) -> None:
    r = evoagg("replay", "--config", "configs/tenants/2077.yaml", "--input", str(traffic), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["rejected"] == {"wrong_org": 60} and summary["rows"] == 0
