"""Checking a wasm module before anything runs it.

In order: size limit; validation by wasmtime against the host's enabled features
(threads, memory64, GC, exceptions, relaxed SIMD and the component model are off);
no imports at all; the ABI's exports and their exact signatures; a
32-bit, unshared memory whose declared minimum fits the store limit; small tables.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import wasmtime

from actors.config import SandboxConfig
from actors.errors import ModuleRejected
from actors.kernel.abi import EXPORTS

MAX_TABLE_ELEMENTS = 100_000
_VALTYPES = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64(), "f32": wasmtime.ValType.f32(), "f64": wasmtime.ValType.f64()}


def make_engine(sandbox: SandboxConfig, fuel: bool = False) -> wasmtime.Engine:
    """An engine with the host's feature set and epoch interruption; a daemon thread
    advances its epoch every ``sandbox.epoch_tick_ms`` while the engine lives. With
    ``fuel``, every instruction also consumes fuel (counted, slower: for measurement only)."""
    cfg = wasmtime.Config()
    cfg.consume_fuel = fuel
    cfg.epoch_interruption = True
    cfg.wasm_threads = False
    cfg.wasm_memory64 = False
    cfg.wasm_gc = False
    cfg.wasm_function_references = False
    cfg.wasm_exceptions = False
    cfg.wasm_relaxed_simd = False  # results may differ across CPUs: breaks canonical output
    cfg.wasm_component_model = False
    cfg.wasm_simd = True
    cfg.wasm_bulk_memory = True
    cfg.wasm_multi_value = True
    cfg.wasm_reference_types = True
    cfg.wasm_tail_call = False
    cfg.wasm_multi_memory = False
    cfg.cranelift_opt_level = "speed"
    engine = wasmtime.Engine(cfg)
    _start_ticker(engine, sandbox.epoch_tick_ms / 1000)
    return engine


def _start_ticker(engine: wasmtime.Engine, period_s: float) -> None:
    ref = weakref.ref(engine)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(period_s):
            e = ref()
            if e is None:
                return
            e.increment_epoch()
            del e

    weakref.finalize(engine, stop.set)
    threading.Thread(target=tick, name="evoagg-epoch", daemon=True).start()


@dataclass(frozen=True)
class ModuleInfo:
    imports: tuple[str, ...]
    exports: tuple[str, ...]
    memory_min_pages: int
    size: int


def _sig(ft: wasmtime.FuncType) -> tuple[tuple[str, ...], tuple[str, ...]]:
    def name(v: wasmtime.ValType) -> str:
        for k, t in _VALTYPES.items():
            if t == v:
                return k
        return str(v)

    return tuple(name(p) for p in ft.params), tuple(name(r) for r in ft.results)


def validate_module(engine: wasmtime.Engine, wasm: bytes, sandbox: SandboxConfig) -> tuple[wasmtime.Module, ModuleInfo]:
    """Compiles ``wasm`` after checking it; raises :class:`ModuleRejected` with the reason."""
    if len(wasm) > sandbox.max_module_bytes:
        raise ModuleRejected("too_large", f"{len(wasm)} bytes exceeds the limit of {sandbox.max_module_bytes}")
    try:
        wasmtime.Module.validate(engine, wasm)
        module = wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as e:
        raise ModuleRejected("invalid", str(e).splitlines()[0] if str(e) else "wasmtime refused the module") from None
    imports = tuple(f"{i.module}.{i.name}" for i in module.imports)
    # Kernels are pure functions of their input: the host links no functions into them.
    if imports:
        raise ModuleRejected("import_not_allowed", f"imports {', '.join(imports)}; kernels may import nothing")
    exports = {e.name: e.type for e in module.exports}
    for name, want in EXPORTS.items():
        t = exports.get(name)
        if not isinstance(t, wasmtime.FuncType):
            raise ModuleRejected("missing_export", f"function {name} is not exported")
        if _sig(t) != want:
            raise ModuleRejected("bad_signature", f"{name} has {_sig(t)}, expected {want}")
    oom = exports.get("evoagg_oom")
    if oom is not None and (not isinstance(oom, wasmtime.FuncType) or _sig(oom) != ((), ("i32",))):
        raise ModuleRejected("bad_signature", "optional export evoagg_oom must be a function () -> i32")
    mem = exports.get("memory")
    if not isinstance(mem, wasmtime.MemoryType):
        raise ModuleRejected("missing_export", "memory is not exported")
    if mem.is_64 or mem.is_shared:
        raise ModuleRejected("bad_memory", "memory must be 32-bit and unshared")
    min_pages = mem.limits.min
    if min_pages * 65536 > sandbox.memory_limit_bytes:
        raise ModuleRejected("memory_limit", f"declares {min_pages} pages minimum, above the limit of {sandbox.memory_limit_bytes} bytes")
    for export in module.exports:
        if isinstance(export.type, wasmtime.TableType) and export.type.limits.min > MAX_TABLE_ELEMENTS:
            raise ModuleRejected("table_limit", f"table {export.name} declares {export.type.limits.min} elements")
    return module, ModuleInfo(imports, tuple(exports), min_pages, len(wasm))
