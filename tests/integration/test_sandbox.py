"""Hostile and broken modules: refused before running, or stopped by the limits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import wasmtime

from actors.config import SandboxConfig, TenantConfig
from actors.errors import KernelError, KernelOutOfMemory, KernelTimeout, KernelTrap, ModuleRejected
from actors.kernel.host import KernelHost
from actors.payload import Message, Series, encode
from tests.modules import abi_module as module

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

CFG = TenantConfig.from_mapping({"org": 7, "interval_s": 30, "queries": ["sum:cpu{*}"]})
FAST = SandboxConfig(memory_limit_bytes=32 * 2**20, call_deadline_ms=300, epoch_tick_ms=10)
MSG = encode(Message(7, (Series("cpu", (), ((0, 1.0),)),)))


def still_works(generic_wasm: bytes) -> None:
    host = KernelHost(generic_wasm, CFG, FAST)
    assert host.process([MSG]).accepted == 1
    assert [r.value for r in host.flush()] == [1.0]


def test_trap_is_typed_names_the_batch_and_poisons_the_instance(generic_wasm: bytes) -> None:
    host = KernelHost(module("unreachable"), CFG, FAST, name="evil")
    with pytest.raises(KernelTrap) as e:
        host.process([MSG], batch="b-17")
    assert e.value.batch == "b-17" and "evil" in str(e.value)
    assert "unreachable" in str(e.value)
    assert host.poisoned
    with pytest.raises(KernelError, match="unusable"):
        host.process([MSG], batch="b-18")
    still_works(generic_wasm)


def test_infinite_loop_hits_the_deadline(generic_wasm: bytes) -> None:
    host = KernelHost(module("(loop (br 0)) i64.const 0"), CFG, FAST)
    t0 = time.monotonic()
    with pytest.raises(KernelTimeout) as e:
        host.process([MSG], batch="spin")
    assert time.monotonic() - t0 < 10
    assert e.value.batch == "spin"
    still_works(generic_wasm)


def test_unbounded_memory_growth_is_stopped(generic_wasm: bytes) -> None:
    # Grows a page at a time until refused, then traps.
    grow = "(block (loop (br_if 1 (i32.eq (memory.grow (i32.const 1)) (i32.const -1))) (br 0))) unreachable"
    host = KernelHost(module(grow), CFG, FAST)
    with pytest.raises(KernelOutOfMemory):
        host.process([MSG], batch="hog")
    assert host._memory.data_len(host.store) == FAST.memory_limit_bytes
    still_works(generic_wasm)


def test_kernel_allocator_out_of_memory(generic_wasm: bytes) -> None:
    """The real kernel under a tiny memory limit: huge batches fail typed, not fatally."""
    tiny = SandboxConfig(memory_limit_bytes=2 * 2**20, call_deadline_ms=5000, epoch_tick_ms=10)
    host = KernelHost(generic_wasm, CFG, tiny)
    with pytest.raises(KernelOutOfMemory):
        host.process([MSG] * 200_000, batch="huge")
    still_works(generic_wasm)


def test_kernel_state_growth_hits_the_limit_typed(generic_wasm: bytes) -> None:
    """The real kernel accumulating ever more groups runs out inside its own allocator."""
    cfg = TenantConfig.from_mapping({"org": 7, "interval_s": 30, "queries": ["count:cpu{*} by {host}"]})
    host = KernelHost(generic_wasm, cfg, SandboxConfig(memory_limit_bytes=4 * 2**20, call_deadline_ms=5000, epoch_tick_ms=10))
    with pytest.raises(KernelOutOfMemory):
        for b in range(200):
            series = tuple(Series("cpu", (f"host:h{b}-{i}-{'x' * 40}",), ((b, 1.0),)) for i in range(500))
            host.process([encode(Message(7, series))], batch=f"grow-{b}")
    assert host.poisoned
    still_works(generic_wasm)


@pytest.mark.parametrize(
    ("wasm", "reason"),
    [
        (b"\x00asm\x01\x00\x00\x00garbage", "invalid"),
        (b"not wasm at all", "invalid"),
        (module("i64.const 0", imports='(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))'), "import_not_allowed"),
        (wasmtime.wat2wasm('(module (memory (export "memory") 1))'), "missing_export"),
        (module("i64.const 0").replace(b"evoagg_flush", b"evoagg_flusx"), "missing_export"),
        (
            wasmtime.wat2wasm(
                '(module (memory (export "memory") 1)'
                + "".join(
                    f'(func (export "{n}") {sig})'
                    for n, sig in [
                        ("evoagg_abi_version", "(result i32) i32.const 1"),
                        ("evoagg_alloc", "(param i32) (result i32) i32.const 0"),
                        ("evoagg_free", "(param i32 i32)"),
                        ("evoagg_init", "(param i32 i32) (result i32) i32.const 0"),
                        ("evoagg_process", "(param i32 i32) (result i64) i64.const 0"),
                        ("evoagg_flush", "(param i32) (result i64) i64.const 0"),
                    ]
                )
                + ")"
            ),
            "bad_signature",
        ),
        (module("i64.const 0").replace(b"memory", b"memorx"), "missing_export"),
    ],
)
def test_bad_modules_are_rejected_before_running(generic_wasm: bytes, wasm: bytes, reason: str) -> None:
    with pytest.raises(ModuleRejected) as e:
        KernelHost(wasm, CFG, FAST)
    assert e.value.reason == reason
    still_works(generic_wasm)


@pytest.mark.parametrize("alloc", ["i32.const 200000", "i32.const -8", "i32.const 131070"])
def test_alloc_returning_a_bad_pointer_is_refused(generic_wasm: bytes, alloc: str) -> None:
    with pytest.raises(ModuleRejected, match="outside memory") as e:
        KernelHost(module("i64.const 0", alloc=alloc), CFG, FAST)
    assert e.value.reason == "init_failed"
    still_works(generic_wasm)


def test_init_that_traps_is_refused(generic_wasm: bytes) -> None:
    wasm = module("i64.const 0").replace(b"\x41\x00\x0b", b"\x00\x00\x0b", 1)  # evoagg_init: unreachable
    with pytest.raises(ModuleRejected) as e:
        KernelHost(wasm, CFG, FAST)
    assert e.value.reason == "init_failed" and "unreachable" in str(e.value)


def test_result_claims_outside_memory_or_inconsistent(generic_wasm: bytes) -> None:
    huge = KernelHost(module("i64.const 999999"), CFG, FAST)
    with pytest.raises(KernelError, match="outside memory"):
        huge.process([MSG])
    lying = KernelHost(module("i64.const 40"), CFG, FAST)  # a zero header: 0 ok + 0 rejected for 1 message
    with pytest.raises(KernelError, match="inconsistent"):
        lying.process([MSG])
    assert lying.poisoned
    bad_rows = KernelHost(module("i64.const 0", flush="i64.const -1"), CFG, FAST)
    with pytest.raises(KernelError, match="evoagg_flush returned error -1"):
        bad_rows.flush()
    assert bad_rows.poisoned


def test_oom_export_must_be_a_function() -> None:
    wasm = module("unreachable", extra='(global (export "evoagg_oom") i32 (i32.const 1))')
    with pytest.raises(ModuleRejected) as e:
        KernelHost(wasm, CFG, FAST)
    assert e.value.reason == "bad_signature"


def test_a_frame_longer_than_the_batch_is_refused_by_the_guest(generic_wasm: bytes) -> None:
    """The ABI promises -1 (nothing processed) for a frame running past the end, even
    when 4 + length wraps around in 32-bit arithmetic."""
    host = KernelHost(generic_wasm, CFG, FAST)
    for bad in (b"\xfc\xff\xff\xff", b"\xff\xff\xff\xff" + MSG, b"\x05\x00\x00\x00ab", b"\x01\x00"):
        ptr = host._write(bad, "raw")
        assert host._invoke("evoagg_process", "raw", ptr, len(bad)) == -1
    assert host.process([MSG]).accepted == 1


def test_size_and_memory_limits(generic_wasm: bytes) -> None:
    with pytest.raises(ModuleRejected) as e:
        KernelHost(generic_wasm, CFG, SandboxConfig(max_module_bytes=1024))
    assert e.value.reason == "too_large"
    big_memory = module("i64.const 0").replace(b"\x05\x03\x01\x00\x02", b"\x05\x04\x01\x00\xe8\x07")  # min 2 -> 1000 pages
    assert big_memory != module("i64.const 0")
    with pytest.raises(ModuleRejected) as e:
        KernelHost(big_memory, CFG, FAST)
    assert e.value.reason == "memory_limit"


def test_threads_feature_is_not_enabled() -> None:
    # A module with one shared memory (limits flag 0x03, min 1, max 1), written by hand.
    shared = b"\x00asm\x01\x00\x00\x00" + b"\x05\x04\x01\x03\x01\x01"
    with pytest.raises(ModuleRejected) as e:
        KernelHost(shared, CFG, FAST)
    assert e.value.reason == "invalid"


def test_wrong_abi_version() -> None:
    wasm = module("i64.const 0").replace(b"\x41\x01\x0b", b"\x41\x02\x0b", 1)
    with pytest.raises(ModuleRejected) as e:
        KernelHost(wasm, CFG, FAST)
    assert e.value.reason == "abi_version"


def test_a_fault_handler_installed_later_does_not_turn_traps_into_crashes(tmp_path: Path) -> None:
    """faulthandler.enable() (ray.init calls it) after wasmtime's handlers once made the next
    trap kill the process with SIGILL; run in a child process, since that is the failure."""
    script = tmp_path / "trap.py"
    script.write_text(
        "import faulthandler\n"
        "from actors.config import TenantConfig\n"
        "from actors.errors import KernelTrap\n"
        "from actors.kernel.host import KernelHost\n"
        "from actors.payload import Message, Series, encode\n"
        "from tests.modules import abi_module\n"
        "cfg = TenantConfig.from_mapping({'org': 7, 'interval_s': 30, 'queries': ['sum:cpu{*}']})\n"
        "msg = encode(Message(7, (Series('cpu', (), ((0, 1.0),)),)))\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        KernelHost(abi_module('unreachable'), cfg).process([msg])\n"
        "    except KernelTrap:\n"
        "        print('trapped', flush=True)\n"
        "    faulthandler.enable()\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["trapped", "trapped"]
