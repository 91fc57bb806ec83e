"""Configuration models: frozen dataclasses with a docstring per field and ``validate()``.

They are built from plain mappings (``from_mapping``); YAML is read only at the edge
(:mod:`actors.loading`). Unknown keys are errors, so a typo never silently becomes a
default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from actors.errors import ConfigError
from actors.query import Query, parse_query

_QUERY_ID = re.compile(r"[A-Za-z0-9_.-]+")
MAX_QUERIES = 65535
MAX_INTERVAL_S = 2**31 - 1


def check_keys(where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, found {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def check_int(where: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, found {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{where}: expected {lo}..{hi}, found {value}")
    return value


@dataclass(frozen=True)
class TenantConfig:
    """One tenant: its org and the queries its materialized views answer."""

    org: int
    """The tenant's org id; payloads of any other org are rejected (``wrong_org``)."""
    interval_s: int
    """Bucket width in seconds: a point at ``ts`` lands in ``ts - ts mod interval_s`` (floor)."""
    queries: tuple[Query, ...]
    """The queries, in configuration order; ids are unique."""

    def validate(self) -> TenantConfig:
        check_int("org", self.org, 0, 2**63 - 1)
        check_int("interval_s", self.interval_s, 1, MAX_INTERVAL_S)
        if not self.queries:
            raise ConfigError("queries: expected at least one query")
        if len(self.queries) > MAX_QUERIES:
            raise ConfigError(f"queries: at most {MAX_QUERIES}, found {len(self.queries)}")
        seen: set[str] = set()
        for q in self.queries:
            if not _QUERY_ID.fullmatch(q.id):
                raise ConfigError(f"query id {q.id!r}: expected letters, digits, '_', '.', '-'")
            if q.id in seen:
                raise ConfigError(f"query id {q.id!r}: used twice")
            seen.add(q.id)
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "tenant config") -> TenantConfig:
        check_keys(source, data, {"org", "interval_s", "queries"})
        for key in ("org", "interval_s", "queries"):
            if key not in data:
                raise ConfigError(f"{source}: missing key {key!r}")
        raw = data["queries"]
        if not isinstance(raw, list):
            raise ConfigError(f"{source}: queries: expected a list")
        queries = []
        for i, item in enumerate(raw):
            where = f"{source}: queries[{i}]"
            if isinstance(item, str):
                item = {"q": item}
            check_keys(where, item, {"id", "q"})
            if "q" not in item or not isinstance(item["q"], str):
                raise ConfigError(f"{where}: expected a query text under 'q'")
            qid = item.get("id", f"q{i}")
            if not isinstance(qid, str):
                raise ConfigError(f"{where}: id: expected a string, found {qid!r}")
            queries.append(parse_query(item["q"], qid))
        cfg = cls(org=data["org"], interval_s=data["interval_s"], queries=tuple(queries))
        try:
            return cfg.validate()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    def query_ids(self) -> list[str]:
        return [q.id for q in self.queries]

    def to_mapping(self) -> dict[str, Any]:
        """The config as its YAML file says it (:meth:`from_mapping` reads it back equal)."""
        return {"org": self.org, "interval_s": self.interval_s, "queries": [{"id": q.id, "q": q.text()} for q in self.queries]}


@dataclass(frozen=True)
class SandboxConfig:
    """Limits every wasm module runs under."""

    memory_limit_bytes: int = 512 * 2**20
    """Largest linear memory a module's store may grow to (at most 2 GiB); growth beyond fails."""
    call_deadline_ms: int = 10_000
    """Longest a single call into a module may run before it is interrupted (epoch deadline)."""
    epoch_tick_ms: int = 10
    """Granularity of the deadline: the engine's epoch advances this often."""
    max_module_bytes: int = 16 * 2**20
    """Largest module accepted, in bytes."""

    def validate(self) -> SandboxConfig:
        # 2 GiB at most: results return as `ptr << 32 | len` in a non-negative i64.
        check_int("memory_limit_bytes", self.memory_limit_bytes, 2**16, 2**31)
        check_int("call_deadline_ms", self.call_deadline_ms, 1, 3_600_000)
        check_int("epoch_tick_ms", self.epoch_tick_ms, 1, 10_000)
        check_int("max_module_bytes", self.max_module_bytes, 1024, 2**30)
        if self.epoch_tick_ms > self.call_deadline_ms:
            raise ConfigError("epoch_tick_ms: must not exceed call_deadline_ms")
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "sandbox config") -> SandboxConfig:
        names = {f.name for f in fields(cls)}
        check_keys(source, data, names)
        try:
            return cls(**data).validate()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
