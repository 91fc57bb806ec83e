"""Running a kernel: one wasmtime store and instance per (tenant, module).

Many messages cross per call (a call costs tens of microseconds from Python; a
message must not). Each call runs under the store's memory limit and an epoch
deadline; a trap becomes a typed :class:`KernelError` naming the batch, after which
the instance is poisoned (its state may be half-updated) and refuses further calls.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import wasmtime

from actors.config import SandboxConfig, TenantConfig
from actors.errors import KernelError, KernelOutOfMemory, KernelTimeout, KernelTrap, ModuleRejected
from actors.kernel import abi, signals
from actors.kernel.validate import ModuleInfo, make_engine, validate_module
from actors.output import Row
from actors.payload import frame

T = TypeVar("T")
_engines: dict[tuple[SandboxConfig, bool], wasmtime.Engine] = {}
# Compiled modules by (sandbox, sha256): a shard rebuilding an instance (a swap, a trap,
# a recovery) must not pay for compiling the same bytes again. Bounded, oldest out.
_compiled: OrderedDict[tuple[SandboxConfig, bool, str], tuple[wasmtime.Module, ModuleInfo]] = OrderedDict()
_COMPILED_MAX = 16
_compiled_lock = threading.Lock()


def compiled(engine: wasmtime.Engine, wasm: bytes, sandbox: SandboxConfig, fuel: bool = False) -> tuple[wasmtime.Module, ModuleInfo]:
    """``validate_module``, once per distinct module, sandbox and engine kind in this process."""
    key = (sandbox, fuel, hashlib.sha256(wasm).hexdigest())
    with _compiled_lock:
        hit = _compiled.get(key)
        if hit is not None:
            _compiled.move_to_end(key)
            return hit
    found = validate_module(engine, wasm, sandbox)
    with _compiled_lock:
        _compiled[key] = found
        while len(_compiled) > _COMPILED_MAX:
            _compiled.popitem(last=False)
    return found


FUEL = 2**62
"""Fuel a counting store starts with: never runs out (the deadline still bounds a call)."""


def engine_for(sandbox: SandboxConfig, fuel: bool = False) -> wasmtime.Engine:
    """One engine per sandbox configuration (and fuel counting or not) per process
    (engines are costly to make)."""
    if (sandbox, fuel) not in _engines:
        _engines[(sandbox, fuel)] = make_engine(sandbox, fuel)
        signals.capture()
    return _engines[(sandbox, fuel)]


class KernelHost:
    """A live kernel instance for one tenant."""

    def __init__(self, wasm: bytes, config: TenantConfig, sandbox: SandboxConfig | None = None, name: str = "kernel", fuel: bool = False) -> None:
        """``fuel``: count instructions (:meth:`fuel_consumed`); runs slower, for measurement only."""
        self.sandbox = sandbox or SandboxConfig()
        self.config = config
        self.name = name
        self.fuel = fuel
        self.engine = engine_for(self.sandbox, fuel)
        # A fault handler installed since (faulthandler, by ray.init) would turn this
        # module's traps into a crash of the process: put wasmtime's back.
        signals.ensure()
        self.module, self.info = compiled(self.engine, wasm, self.sandbox, fuel)
        self.store = wasmtime.Store(self.engine)
        if fuel:
            self.store.set_fuel(FUEL)
        self.store.set_limits(memory_size=self.sandbox.memory_limit_bytes, instances=1, tables=4, memories=1, table_elements=100_000)
        self._poisoned: str | None = None
        self._query_ids = config.query_ids()
        try:
            self._start(config)
        except KernelError as e:
            # A module that cannot even start is refused, like one that fails validation.
            raise ModuleRejected("init_failed", str(e)) from None

    def _start(self, config: TenantConfig) -> None:
        instance = self._call("init", lambda: wasmtime.Instance(self.store, self.module, []))
        ex = instance.exports(self.store)
        self._memory: wasmtime.Memory = ex["memory"]  # type: ignore[assignment]
        self._f: dict[str, wasmtime.Func] = {n: ex[n] for n in abi.EXPORTS}  # type: ignore[misc]
        self._oom = ex["evoagg_oom"] if "evoagg_oom" in self.info.exports else None
        version = self._invoke("evoagg_abi_version", "init")
        if version != abi.ABI_VERSION:
            raise ModuleRejected("abi_version", f"module speaks ABI {version}, host speaks {abi.ABI_VERSION}")
        self._buf_ptr = 0
        self._buf_cap = 0
        cfg = abi.encode_config(config)
        ptr = self._write(cfg, "init")
        status = self._invoke("evoagg_init", "init", ptr, len(cfg))
        if status != 0:
            raise ModuleRejected("init_failed", f"evoagg_init returned {status} for org {config.org}")

    def fuel_consumed(self) -> int:
        """Fuel used so far by this instance (about one unit per wasm instruction)."""
        if not self.fuel:
            raise ValueError(f"{self.name}: not a fuel-counting instance (KernelHost(..., fuel=True))")
        return FUEL - self.store.get_fuel()

    @property
    def poisoned(self) -> str | None:
        """Why this instance refuses calls (after a trap), or None."""
        return self._poisoned

    def _call(self, batch: str, fn: Callable[[], T]) -> T:
        if self._poisoned:
            raise KernelError(f"{self.name}: instance unusable after earlier failure: {self._poisoned}", batch)
        ticks = max(1, self.sandbox.call_deadline_ms // self.sandbox.epoch_tick_ms)
        self.store.set_epoch_deadline(ticks)
        try:
            return fn()
        except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
            raise self._failed(e, batch) from None

    def _failed(self, e: Exception, batch: str) -> KernelError:
        # wasmtime puts the backtrace first and the cause ("wasm trap: ...") last.
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        msg = lines[-1] if lines else type(e).__name__
        code = getattr(e, "trap_code", None)
        err: KernelError
        if code == wasmtime.TrapCode.INTERRUPT:
            err = KernelTimeout(f"{self.name}: exceeded the {self.sandbox.call_deadline_ms} ms deadline", batch)
        elif self._out_of_memory():
            err = KernelOutOfMemory(f"{self.name}: memory limit of {self.sandbox.memory_limit_bytes} bytes reached ({msg})", batch)
        else:
            err = KernelTrap(f"{self.name}: trapped: {msg}", batch)
        self._poisoned = str(err)
        return err

    def _broken(self, what: str, batch: str) -> KernelError:
        """The module broke the ABI's contract: nothing it holds can be trusted any more."""
        self._poisoned = what
        return KernelError(f"{self.name}: {what}", batch)

    def _out_of_memory(self) -> bool:
        try:
            mem = self._memory.data_len(self.store)
        except (AttributeError, wasmtime.WasmtimeError):
            return False
        # A module that grew to the limit and then trapped was, most likely, refused memory.
        if mem + 65536 > self.sandbox.memory_limit_bytes:
            return True
        if self._oom is not None:
            try:
                self.store.set_epoch_deadline(1)
                return bool(self._oom(self.store))  # type: ignore[operator]
            except (wasmtime.Trap, wasmtime.WasmtimeError):
                return False
        return False

    def _invoke(self, export: str, batch: str, *args: Any) -> Any:
        f = self._f[export]
        return self._call(batch, lambda: f(self.store, *args))

    def _write(self, data: bytes, batch: str) -> int:
        """Copies ``data`` into the guest's reusable input buffer; returns its address."""
        if len(data) > self._buf_cap:
            if self._buf_ptr:
                self._invoke("evoagg_free", batch, self._buf_ptr, self._buf_cap)
            cap = max(1 << 16, 1 << (len(data) - 1).bit_length())
            ptr = self._invoke("evoagg_alloc", batch, cap)
            if ptr == 0:
                self._buf_ptr = self._buf_cap = 0
                raise KernelOutOfMemory(f"{self.name}: could not allocate {cap} bytes for the batch", batch)
            self._buf_ptr, self._buf_cap = ptr, cap
        if data:
            size = self._memory.data_len(self.store)
            if not 0 < self._buf_ptr <= size - len(data):
                raise self._broken(f"evoagg_alloc returned {self._buf_ptr}, outside memory of {size} bytes", batch)
            self._memory.write(self.store, data, self._buf_ptr)
        return self._buf_ptr

    def _result(self, span: int, export: str, batch: str) -> bytes:
        """The bytes a call's return value ``ptr << 32 | len`` points at."""
        if span < 0:
            # The host frames every batch correctly: an error here is the module's fault.
            raise self._broken(f"{export} returned error {span}", batch)
        ptr, n = span >> 32, span & 0xFFFFFFFF
        size = self._memory.data_len(self.store)
        if ptr + n > size:
            raise self._broken(f"result span {ptr}+{n} outside memory of {size} bytes", batch)
        return bytes(self._memory.read(self.store, ptr, ptr + n))

    def process(self, payloads: Sequence[bytes], batch: str = "") -> abi.BatchResult:
        """Aggregates a batch of payloads; malformed ones come back as rejections."""
        data = frame(payloads)
        ptr = self._write(data, batch)
        span = self._invoke("evoagg_process", batch, ptr, len(data))
        raw = self._result(span, "evoagg_process", batch)
        try:
            return abi.decode_batch_result(raw, len(payloads))
        except KernelError as e:
            raise self._broken(str(e), batch) from None

    def flush(self, watermark: int = abi.FLUSH_ALL, batch: str = "flush") -> list[Row]:
        """Rows of every bucket that ends at or before ``watermark``, which the kernel forgets."""
        raw = self._result(self._invoke("evoagg_flush", batch, watermark), "evoagg_flush", batch)
        try:
            return abi.decode_rows(raw, self._query_ids)
        except KernelError as e:
            raise self._broken(str(e), batch) from None
