"""Specialization: a tenant's configuration bound into a Rust crate as constants.

``specialize(cfg, out_dir)`` writes a standalone crate (its own cargo workspace)::

    Cargo.toml      package kernel-org<org>; path dependencies on the shared
                    guest-rust/{codec,abi,tables} crates (not copies)
    src/lib.rs      glue: the ABI exports (guest-rust/template/lib.rs)
    src/spec.rs     generated: org, interval, the encoded config, literals with their
                    perfect hashes, filter atoms and bitsets, group-by keys, aggregates
    src/kernel.rs   the logic: the one file evolution rewrites (starts as
                    guest-rust/template/kernel.rs)

Generation is deterministic: the same configuration (and checkout) gives the same
bytes. The crate refuses, at ``evoagg_init``, any configuration but its own.

The perfect hash (``phash``) exists twice, here and in ``guest-rust/tables``
(``hash_seeded``), and must agree bit for bit: the generator picks a seed under which no
two literals share a slot, and the kernels' tests would fail if the two drifted.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from actors.config import TenantConfig
from actors.errors import ConfigError
from actors.kernel.abi import encode_config
from actors.kernel.build import GUEST_WORKSPACE
from actors.query import MISSING

TEMPLATE = GUEST_WORKSPACE / "template"
EVOLVABLE = "src/kernel.rs"
"""The file evolution may rewrite, relative to the crate."""
SHARED_CRATES = ("codec", "abi", "tables")
_M64 = (1 << 64) - 1
_K = 0x517C_C1B7_2722_0A95
NONE16 = 0xFFFF


def phash(s: bytes, seed: int) -> int:
    """Fx-style hash over 8-byte little-endian words, seeded: ``tables::hash_seeded``."""
    h = (len(s) ^ seed) & _M64
    for i in range(0, len(s), 8):
        w = int.from_bytes(s[i : i + 8].ljust(8, b"\0"), "little")
        h = ((((h << 5) | (h >> 59)) & _M64) ^ w) * _K & _M64
    return h ^ (h >> 29)


@dataclass(frozen=True)
class PerfectHash:
    seed: int
    bits: int
    slots: tuple[int, ...]
    """Per slot: index of the string, or 0xFFFF."""


def perfect_hash(strings: Sequence[bytes]) -> PerfectHash:
    """A collision-free slot per string: ``phash(s, seed) >> (64 - bits)``; deterministic."""
    bits = max(1, (2 * len(strings) - 1).bit_length())
    while True:
        for seed in range(4096):
            slots = [NONE16] * (1 << bits)
            for i, s in enumerate(strings):
                j = phash(s, seed) >> (64 - bits)
                if slots[j] != NONE16:
                    break
                slots[j] = i
            else:
                return PerfectHash(seed, bits, tuple(slots))
        bits += 1


def _b(s: bytes) -> str:
    """A Rust byte-string literal."""
    out = []
    for c in s:
        ch = chr(c)
        out.append(ch if (ch.isalnum() and c < 128) or ch in "._-:/ ,*!+=@#%&()[]<>?|~^" else f"\\x{c:02x}")
    return 'b"' + "".join(out) + '"'


def _list(items: Sequence[str], per_line: int = 8) -> str:
    if not items:
        return "[]"
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "[\n    " + ",\n    ".join(lines) + ",\n]"


@dataclass(frozen=True)
class Plan:
    """What the kernel needs to know, derived from the configuration."""

    metrics: list[bytes]
    literals: list[bytes]
    lit_metric: list[int]
    lit_atom: list[int]
    atoms: list[str]
    keys: list[bytes]
    key_is_by: list[bool]
    key_prefixes: list[list[tuple[bytes, int]]]
    pos: list[list[int]]
    neg: list[list[int]]
    by: list[list[int]]
    words: int


def plan(cfg: TenantConfig) -> Plan:
    metrics: list[bytes] = []
    tags: list[bytes] = []
    prefixes: list[tuple[bytes, bytes]] = []
    keys: list[bytes] = []
    for q in cfg.queries:
        if q.metric.encode() not in metrics:
            metrics.append(q.metric.encode())
        for t in q.filter:
            if t.is_prefix:
                kp = ((t.key or "").encode(), (t.prefix or "").encode())
                if kp not in prefixes:
                    prefixes.append(kp)
            elif (t.tag or "").encode() not in tags:
                tags.append((t.tag or "").encode())
    for q in cfg.queries:
        for key in q.by:
            if key.encode() not in keys:
                keys.append(key.encode())
    nby = len(keys)
    for kb, _ in prefixes:
        if kb not in keys:
            keys.append(kb)
    atoms = [t.decode() for t in tags] + [f"{k.decode()}:{p.decode()}*" for k, p in prefixes]
    literals = list(metrics) + [t for t in tags if t not in metrics]
    lit_metric = [metrics.index(s) if s in metrics else NONE16 for s in literals]
    lit_atom = [tags.index(s) if s in tags else NONE16 for s in literals]
    key_prefixes: list[list[tuple[bytes, int]]] = [[] for _ in keys]
    for i, (kb, pb) in enumerate(prefixes):
        key_prefixes[keys.index(kb)].append((pb, len(tags) + i))
    words = max(1, (len(atoms) + 63) // 64)
    pos, neg, by = [], [], []
    for q in cfg.queries:
        pw, nw = [0] * words, [0] * words
        for t in q.filter:
            a = len(tags) + prefixes.index(((t.key or "").encode(), (t.prefix or "").encode())) if t.is_prefix else tags.index((t.tag or "").encode())
            (nw if t.negated else pw)[a // 64] |= 1 << (a % 64)
        pos.append(pw)
        neg.append(nw)
        by.append([keys.index(k.encode()) for k in q.by])
    if len(literals) >= NONE16 or len(keys) >= NONE16 or len(atoms) >= NONE16:
        raise ConfigError(f"org {cfg.org}: too many distinct literals to specialize (limit {NONE16 - 1} each)")
    return Plan(metrics, literals, lit_metric, lit_atom, atoms, keys, [i < nby for i in range(len(keys))], key_prefixes, pos, neg, by, words)


def spec_rs(cfg: TenantConfig) -> str:
    """The generated constants module of ``cfg``'s kernel."""
    p = plan(cfg)
    lit_ph = perfect_hash(p.literals)
    key_ph = perfect_hash(p.keys)
    nq = len(cfg.queries)
    agg = {"sum": "Sum", "min": "Min", "max": "Max", "avg": "Avg", "count": "Count"}
    config = encode_config(cfg)
    out = [
        f"//! Generated by `evoagg specialize` for org {cfg.org}: the tenant's configuration as constants.",
        f"//! Config sha256 {hashlib.sha256(config).hexdigest()}. Not evolved; regenerate instead of editing.",
        "#![allow(dead_code)]",
        "",
        "#[derive(Clone, Copy, PartialEq, Eq)]",
        "pub enum Agg {",
        "    Sum,",
        "    Min,",
        "    Max,",
        "    Avg,",
        "    Count,",
        "}",
        "",
        "pub const NONE16: u16 = u16::MAX;",
        f"pub const ORG: u64 = {cfg.org};",
        f"pub const INTERVAL: i64 = {cfg.interval_s};",
        "/// The configuration as the host encodes it for `evoagg_init`: the kernel refuses any other.",
        f"pub const CONFIG: &[u8] = {_b(config)};",
        f"pub const NQ: usize = {nq};",
        f"pub const NM: usize = {len(p.metrics)};",
        "/// Filter atoms: exact tags, then `key:prefix*` terms; a series' atoms are a bitset of W words.",
        f"pub const NATOMS: usize = {len(p.atoms)};",
        f"pub const W: usize = {p.words};",
        f"pub const NK: usize = {len(p.keys)};",
        "",
        "/// Per query, in configuration order:",
    ]
    for i, q in enumerate(cfg.queries):
        out.append(f"/// {i}: {q.id} = {q.text()}")
    out.append(f"pub const AGG: [Agg; NQ] = {_list(['Agg::' + agg[q.agg] for q in cfg.queries], 10)};")
    out.append(f"pub const POS: [[u64; W]; NQ] = {_list(['[' + ', '.join(f'{w:#x}' for w in ws) + ']' for ws in p.pos], 4)};")
    out.append(f"pub const NEG: [[u64; W]; NQ] = {_list(['[' + ', '.join(f'{w:#x}' for w in ws) + ']' for ws in p.neg], 4)};")
    out.append("/// Group-by keys of each query, as indices into KEYS.")
    out.append(f"pub const BY: [&[u16]; NQ] = {_list(['&[' + ', '.join(map(str, b)) + ']' for b in p.by], 8)};")
    by_metric = [[str(i) for i, q in enumerate(cfg.queries) if q.metric.encode() == m] for m in p.metrics]
    out.append("/// The queries of each metric (index as in LIT_METRIC).")
    out.append(f"pub const METRIC_QUERIES: [&[u16]; NM] = {_list(['&[' + ', '.join(b) + ']' for b in by_metric], 1)};")
    out.append("")
    out.append("/// Exact strings the kernel recognises: metrics, then exact filter tags.")
    out.append(f"pub const LITERALS: [&[u8]; {len(p.literals)}] = {_list([_b(s) for s in p.literals], 6)};")
    out.append(f"pub const LIT_METRIC: [u16; {len(p.literals)}] = {_list([str(x) if x != NONE16 else 'NONE16' for x in p.lit_metric], 12)};")
    out.append(f"pub const LIT_ATOM: [u16; {len(p.literals)}] = {_list([str(x) if x != NONE16 else 'NONE16' for x in p.lit_atom], 12)};")
    out.append(f"pub const LIT_SEED: u64 = {lit_ph.seed};")
    out.append(f"pub const LIT_SHIFT: u32 = {64 - lit_ph.bits};")
    out.append(f"pub const LIT_SLOTS: [u16; {len(lit_ph.slots)}] = {_list([str(x) if x != NONE16 else 'NONE16' for x in lit_ph.slots], 12)};")
    out.append("")
    out.append("/// Tag keys: group-by keys, then keys of prefix terms.")
    out.append(f"pub const KEYS: [&[u8]; NK] = {_list([_b(s) for s in p.keys], 6)};")
    out.append(f"pub const KEY_IS_BY: [bool; NK] = {_list(['true' if b else 'false' for b in p.key_is_by], 12)};")
    out.append("/// `key:N/A`, the group value of a series without the key (value id = key index).")
    out.append(f"pub const MISSING_TEXT: [&[u8]; NK] = {_list([_b(k + b':' + MISSING.encode()) for k in p.keys], 6)};")
    out.append("/// Per key: the prefix atoms on it, (value prefix, atom).")
    kp = ["&[" + ", ".join(f"({_b(pre)}, {a})" for pre, a in lst) + "]" for lst in p.key_prefixes]
    out.append(f"pub const KEY_PREFIXES: [&[(&[u8], u16)]; NK] = {_list(kp, 4)};")
    out.append(f"pub const KEY_SEED: u64 = {key_ph.seed};")
    out.append(f"pub const KEY_SHIFT: u32 = {64 - key_ph.bits};")
    out.append(f"pub const KEY_SLOTS: [u16; {len(key_ph.slots)}] = {_list([str(x) if x != NONE16 else 'NONE16' for x in key_ph.slots], 12)};")
    out.append(_LOOKUP)
    return "\n".join(out)


_LOOKUP = """
use tables::hash_seeded as phash;

/// Index in LITERALS of `s`, or NONE16: one probe of a collision-free table.
#[inline]
pub fn literal(s: &[u8]) -> u16 {
    let i = LIT_SLOTS[(phash(s, LIT_SEED) >> LIT_SHIFT) as usize];
    if i != NONE16 && LITERALS[i as usize] == s {
        i
    } else {
        NONE16
    }
}

/// Index in KEYS of `s`, or NONE16.
#[inline]
pub fn key(s: &[u8]) -> u16 {
    let i = KEY_SLOTS[(phash(s, KEY_SEED) >> KEY_SHIFT) as usize];
    if i != NONE16 && KEYS[i as usize] == s {
        i
    } else {
        NONE16
    }
}
"""

_PROFILE = """
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
debug = false
strip = true

[profile.dev]
panic = "abort"
"""


def package_name(cfg: TenantConfig) -> str:
    return f"kernel-org{cfg.org}"


def cargo_toml(cfg: TenantConfig, guest: Path = GUEST_WORKSPACE) -> str:
    deps = "\n".join(f'{c} = {{ path = "{(guest / c).as_posix()}" }}' for c in SHARED_CRATES)
    return (
        f'[package]\nname = "{package_name(cfg)}"\ndescription = "evoagg kernel specialized for org {cfg.org}"\n'
        'version = "0.1.0"\nedition = "2021"\npublish = false\n\n'
        '[lib]\npath = "src/lib.rs"\ncrate-type = ["cdylib"]\n\n'
        f"[dependencies]\n{deps}\n\n"
        "# A workspace of its own: the crate builds wherever it is copied.\n[workspace]\n" + _PROFILE
    )


def template_kernel() -> str:
    """The evolvable file as specialization first writes it."""
    return (TEMPLATE / "kernel.rs").read_text()


def materialize(cfg: TenantConfig, out_dir: Path, kernel_src: str | None = None) -> Path:
    """Writes the crate of ``cfg`` to ``out_dir`` with ``kernel_src`` as the evolvable file
    (the template's when None). Everything but the evolvable file is regenerated, so a
    candidate travels as its kernel source and config, and is rebuilt against the shared
    crates of the machine that builds it."""
    files = {
        "Cargo.toml": cargo_toml(cfg),
        "src/lib.rs": (TEMPLATE / "lib.rs").read_text(),
        "src/spec.rs": spec_rs(cfg),
        EVOLVABLE: template_kernel() if kernel_src is None else kernel_src,
    }
    for rel, text in files.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    return out_dir


def evolvable_source(crate: Path) -> str:
    return (crate / EVOLVABLE).read_text()
