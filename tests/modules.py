"""Hand-written wasm modules for tests: the full ABI around a chosen body."""

from __future__ import annotations

import wasmtime


def abi_module(process_body: str, extra: str = "", imports: str = "", alloc: str = "i32.const 1024", flush: str = "i64.const 0") -> bytes:
    """A module with the full ABI whose evoagg_process runs ``process_body``."""
    wat = f"""
    (module
      {imports}
      (memory (export "memory") 2)
      (func (export "evoagg_abi_version") (result i32) i32.const 1)
      (func (export "evoagg_alloc") (param i32) (result i32) {alloc})
      (func (export "evoagg_free") (param i32 i32))
      (func (export "evoagg_init") (param i32 i32) (result i32) i32.const 0)
      (func (export "evoagg_process") (param i32 i32) (result i64) {process_body})
      (func (export "evoagg_flush") (param i64) (result i64) {flush})
      {extra}
    )"""
    return bytes(wasmtime.wat2wasm(wat))
