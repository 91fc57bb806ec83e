"""The compiled ``codec-probe`` wasm module, which exposes the shipped codec to the exhaustive checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Probe:
    """The compiled ``codec-probe`` module (the shipped codec, built for wasm32)."""

    def __init__(self, wasm: bytes) -> None:
        import wasmtime

        engine = wasmtime.Engine()
        self.store = wasmtime.Store(engine)
        inst = wasmtime.Instance(self.store, wasmtime.Module(engine, wasm), [])
        self.ex = inst.exports(self.store)
        self.memory: Any = self.ex["memory"]
        self._buf = 0
        self._cap = 0

    def _fn(self, name: str) -> Any:
        return self.ex[name]

    def call(self, export: str, payload: bytes) -> int:
        """Writes ``payload`` into guest memory and calls ``export(ptr, len)``."""
        if len(payload) > self._cap:
            self._cap = max(len(payload), 1 << 16)
            self._buf = self._fn("probe_alloc")(self.store, self._cap)
        self.memory.write(self.store, payload, self._buf)
        return int(self._fn(export)(self.store, self._buf, len(payload)))

    def result(self, n: int) -> bytes:
        start = int(self._fn("probe_result_ptr")(self.store))
        return bytes(self.memory.read(self.store, start, start + n))

    def batch(self, export: str, payload: bytes) -> bytes:
        n = self.call(export, payload)
        if n < 0:
            raise AssertionError(f"{export} rejected its input framing")
        return self.result(n)

    def roundtrip(self, payload: bytes) -> int | bytes:
        """``probe_roundtrip``: the re-encoded payload, or the error code."""
        n = self.call("probe_roundtrip", payload)
        return -n if n < 0 else self.result(n)


def probe_workspace(codec_dir: Path) -> Path | None:
    ws = codec_dir.resolve().parent
    return ws if (ws / "Cargo.toml").is_file() and (ws / "codec-probe" / "Cargo.toml").is_file() else None
