"""The offline proposer's catalogue: semantics-preserving rewrites of the specialized
kernel (``guest-rust/template/kernel.rs``) that an expert would try, each general (no
knowledge of the traffic), each parameterised. A **genome** says which are on and with
what parameters; :func:`render` applies them to the template in a fixed order, so a
genome is a complete, reproducible description of a candidate's source.

Each rewrite replaces exact anchors in the template's text; a missing anchor raises
:class:`TransformError` (the template changed: the catalogue must follow). Nothing here
is trusted: every rendered source is an ordinary candidate, built, verified and
shadow-evaluated like any other.

Rewrites:

- ``tagset_cache`` (capacity): series repeat their tag sets across messages. Cache, per
  (metric, tags in order), the (query, slot) pairs the series lands in; a hit skips key
  lookups, filters, group values and combination lookups. Verified byte for byte (a
  hash collision is a miss), bounded (cleared when full), dropped when compaction
  renumbers slots (``Groups::epoch``).
- ``compact_acc``: an accumulator of 16 bytes instead of 32 (one f64 for sum/min/max,
  one count), a bucket 24 bytes instead of 40: less memory traffic per point.
- ``run_fold``: fold a series' points run by run (consecutive points of one bucket):
  one bucket lookup and one accumulator reference per run, the inner loop branch-free.
- ``near_window`` (4, 8, 16, 32): how many recent buckets are scanned before a binary
  search.
- ``preagg_runs``: summarise a series' runs once (count, first min, first max); ``min``,
  ``max`` and ``count`` queries then merge one summary per run instead of every point.
  (``sum`` and ``avg`` still fold point by point: floating-point addition in arrival order
  is the contract, and reassociating it would change the bits.)
- ``seq_hint``: a series' runs fall in consecutive buckets: look for each run's bucket
  right after the previous one's (checked; a wrong hint falls back to the search).
- ``atom_index``: index each metric's queries by their first positive filter atom.
- ``wide_eq``: compare strings eight bytes at a time (literal and key lookups, cached tag
  texts): a slice ``==`` compiles to a byte loop in wasm.
- ``decode`` (shared, walk, walk_bytes, walk_spans): the kernel decodes the message
  itself, fused with cutting points into bucket spans (``decode_rewrites.py``).

Rewrites apply in catalogue order; ``decode`` comes last, over what the others made.
``decode=walk_spans`` and ``preagg_runs`` do not combine (:func:`conflict`); mutation and
crossover never produce that pair.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from actors.evolve import decode_rewrites
from actors.evolve.anchors import TransformError, find
from actors.evolve.anchors import sub as _sub

__all__ = ["GENES", "TransformError", "crossover", "describe", "mutate", "render", "template_genome", "validate_genome"]


# --- tagset_cache -----------------------------------------------------------------------------


def tagset_cache(src: str, capacity: int) -> str:
    w = "tagset_cache"
    src = _sub(src, "use tables::groups::Groups;", "use tables::groups::Groups;\nuse tables::U64Map;", w)
    src = _sub(
        src,
        "    /// Id in `values` once used as a group value.\n    value: u32,\n}",
        "    /// Id in `values` once used as a group value.\n    value: u32,\n    /// Hash of the string's bytes.\n    h: u64,\n}",
        w,
    )
    src = _sub(src, "local.push(Local { metric, key, value: NONE });", "local.push(Local { metric, key, value: NONE, h: tables::hash_bytes(s) });", w)
    src = _sub(
        src,
        "    s_slots: Vec<u32>,\n}",
        "    s_slots: Vec<u32>,\n    /// Tag-set cache: (metric, tags) hash -> entry; entries; the slot epoch they belong to.\n"
        "    cache_map: U64Map,\n    cache: Vec<CacheEntry>,\n    cache_epoch: u64,\n}\n\n"
        "/// What a series with these tags (in this order) and this metric lands in.\n"
        "struct CacheEntry {\n    metric: u16,\n    /// The tags' texts, each as u32 length then bytes.\n    texts: Vec<u8>,\n"
        "    pairs: Vec<(u32, u32)>,\n}\n\n"
        f"const CACHE_CAPACITY: usize = {capacity};\n\n"
        "impl CacheEntry {\n"
        "    fn matches(&self, metric: u16, tags: &[u32], payload: &[u8], strings: &[(u32, u32)]) -> bool {\n"
        "        if self.metric != metric {\n            return false;\n        }\n"
        "        let mut at = 0usize;\n"
        "        for &t in tags {\n"
        "            let (o, n) = strings[t as usize];\n"
        "            let s = &payload[o as usize..(o + n) as usize];\n"
        "            let end = at + 4 + s.len();\n"
        "            if self.texts.len() < end || self.texts[at..at + 4] != (s.len() as u32).to_le_bytes() || &self.texts[at + 4..end] != s {\n"
        "                return false;\n            }\n"
        "            at += 4 + s.len();\n"
        "        }\n"
        "        at == self.texts.len()\n"
        "    }\n}",
        w,
    )
    src = _sub(
        src,
        "            s_slots: Vec::new(),\n        }",
        "            s_slots: Vec::new(),\n            cache_map: U64Map::new(),\n            cache: Vec::new(),\n            cache_epoch: 0,\n        }",
        w,
    )
    src = _sub(
        src,
        "            let tags = &tags[s.tags.0 as usize..s.tags.1 as usize];\n            let mut present = [0u64; W];",
        "            let tags = &tags[s.tags.0 as usize..s.tags.1 as usize];\n"
        "            let mut key = (m as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ tags.len() as u64;\n"
        "            for &t in tags {\n                key = (key.rotate_left(5) ^ local[t as usize].h).wrapping_mul(0x517c_c1b7_2722_0a95);\n            }\n"
        "            if self.cache.len() >= CACHE_CAPACITY {\n"
        "                self.cache.clear();\n                self.cache_map = U64Map::new();\n            }\n"
        "            let n = self.cache.len() as u32;\n"
        "            let mut miss = false;\n"
        "            let e = self.cache_map.get_or_insert_with(key, || {\n                miss = true;\n                n\n            }) as usize;\n"
        "            if !miss && self.cache[e].matches(m, tags, payload, strings) {\n"
        "                for i in 0..self.cache[e].pairs.len() {\n"
        "                    let (q, slot) = self.cache[e].pairs[i];\n"
        "                    aggregate(&mut self.groups.slots[slot as usize].buckets, &points, spec::AGG[q as usize]);\n"
        "                }\n                continue;\n            }\n"
        "            // A miss records what the series lands in; a collision (same hash, other tags) is not cached.\n"
        "            if miss {\n"
        "                let mut texts = Vec::new();\n"
        "                for &t in tags {\n"
        "                    let (o, l) = strings[t as usize];\n"
        "                    texts.extend_from_slice(&l.to_le_bytes());\n"
        "                    texts.extend_from_slice(&payload[o as usize..(o + l) as usize]);\n"
        "                }\n"
        "                self.cache.push(CacheEntry { metric: m, texts, pairs: Vec::new() });\n"
        "            }\n"
        "            let mut present = [0u64; W];",
        w,
    )
    src = _sub(
        src,
        "                    let slot = self.groups.slot_of_query(q as u32) as usize;\n",
        "                    let slot = self.groups.slot_of_query(q as u32) as usize;\n"
        "                    if miss {\n                        self.cache[n as usize].pairs.push((q as u32, slot as u32));\n                    }\n",
        w,
    )
    src = _sub(
        src,
        "                    let slot = self.s_slots[i] as usize;\n",
        "                    let slot = self.s_slots[i] as usize;\n"
        "                    if miss {\n                        self.cache[n as usize].pairs.push((q as u32, slot as u32));\n                    }\n",
        w,
    )
    src = _sub(
        src,
        "        self.groups.drain(closed, |q, text, start, acc|",
        "        let groups = &mut self.groups;\n        groups.drain(closed, |q, text, start, acc|",
        w,
    )
    src = _sub(
        src,
        "g.extend_from_slice(text)));\n    }\n}",
        "g.extend_from_slice(text)));\n"
        "        // Compaction renumbered the slots: cached pairs are stale.\n"
        "        if self.groups.epoch() != self.cache_epoch {\n"
        "            self.cache.clear();\n            self.cache_map = U64Map::new();\n"
        "            self.cache_epoch = self.groups.epoch();\n        }\n    }\n}",
        w,
    )
    return src


# --- compact_acc ------------------------------------------------------------------------------

_ACC_OLD = """#[derive(Clone, Copy)]
struct Acc {
    sum: f64,
    count: u64,
    min: f64,
    max: f64,
}

impl Acc {
    const EMPTY: Acc = Acc { sum: 0.0, count: 0, min: f64::INFINITY, max: f64::NEG_INFINITY };

    fn value(&self, agg: Agg) -> f64 {
        match agg {
            Agg::Sum => self.sum,
            Agg::Min => self.min,
            Agg::Max => self.max,
            Agg::Avg => self.sum / self.count as f64,
            Agg::Count => self.count as f64,
        }
    }
}"""

_ACC_NEW = """/// 16 bytes: `a` is the sum, the min or the max (whichever the query's aggregate reads),
/// `n` the count (for min/max: whether `a` holds a value yet).
#[derive(Clone, Copy)]
struct Acc {
    a: f64,
    n: u64,
}

impl Acc {
    const EMPTY: Acc = Acc { a: 0.0, n: 0 };

    fn value(&self, agg: Agg) -> f64 {
        match agg {
            Agg::Sum | Agg::Min | Agg::Max => self.a,
            Agg::Avg => self.a / self.n as f64,
            Agg::Count => self.n as f64,
        }
    }
}"""

_AGG_OLD = """        Agg::Sum => fold(buckets, points, |a, v| a.sum += v),
        Agg::Avg => fold(buckets, points, |a, v| {
            a.sum += v;
            a.count += 1;
        }),
        Agg::Count => fold(buckets, points, |a, _| a.count += 1),
        Agg::Min => fold(buckets, points, |a, v| {
            if v < a.min {
                a.min = v;
            }
        }),
        Agg::Max => fold(buckets, points, |a, v| {
            if v > a.max {
                a.max = v;
            }
        }),"""

_AGG_NEW = """        Agg::Sum => fold(buckets, points, |a, v| a.a += v),
        Agg::Avg => fold(buckets, points, |a, v| {
            a.a += v;
            a.n += 1;
        }),
        Agg::Count => fold(buckets, points, |a, _| a.n += 1),
        // The first value is taken; later ones replace only when strictly smaller/larger.
        Agg::Min => fold(buckets, points, |a, v| {
            if a.n == 0 || v < a.a {
                a.a = v;
            }
            a.n = 1;
        }),
        Agg::Max => fold(buckets, points, |a, v| {
            if a.n == 0 || v > a.a {
                a.a = v;
            }
            a.n = 1;
        }),"""


def compact_acc(src: str) -> str:
    src = _sub(src, _ACC_OLD, _ACC_NEW, "compact_acc")
    return _sub(src, _AGG_OLD, _AGG_NEW, "compact_acc")


# --- run_fold ---------------------------------------------------------------------------------

_FOLD_OLD = """    let mut cur_start = 0i64;
    let mut cur = usize::MAX;
    for &(start, v) in points {
        if cur == usize::MAX || start != cur_start {
            cur_start = start;
            cur = bucket_index(buckets, start);
        }
        f(&mut buckets[cur].1, v);
    }"""

_FOLD_NEW = """    // Run by run: one lookup and one accumulator reference per bucket's run of points.
    let mut i = 0;
    while i < points.len() {
        let start = points[i].0;
        let mut j = i + 1;
        while j < points.len() && points[j].0 == start {
            j += 1;
        }
        let k = bucket_index(buckets, start);
        let acc = &mut buckets[k].1;
        for &(_, v) in &points[i..j] {
            f(acc, v);
        }
        i = j;
    }"""


def run_fold(src: str) -> str:
    return _sub(src, _FOLD_OLD, _FOLD_NEW, "run_fold")


def near_window(src: str, n: int) -> str:
    return _sub(src, "let near = n.saturating_sub(8);", f"let near = n.saturating_sub({n});", "near_window")


# --- preagg_runs ------------------------------------------------------------------------------

_RUN_DEF = """
/// A series' run of consecutive points in one bucket, summarised once for every query:
/// count, and the first minimal and first maximal value (strict comparisons, so merging a
/// run into an accumulator keeps the same value as folding its points one by one).
#[derive(Clone, Copy)]
struct Run {
    start: i64,
    n: u64,
    min: f64,
    max: f64,
}

fn runs_of(points: &[(i64, f64)], out: &mut Vec<Run>) {
    out.clear();
    for &(start, v) in points {
        match out.last_mut() {
            Some(r) if r.start == start => {
                r.n += 1;
                if v < r.min {
                    r.min = v;
                }
                if v > r.max {
                    r.max = v;
                }
            }
            _ => out.push(Run { start, n: 1, min: v, max: v }),
        }
    }
}

/// Folds a summarised run into a bucket: min, max and count need no per-point work.
#[inline]
fn merge_runs<F: Fn(&mut Acc, &Run)>(buckets: &mut Vec<(i64, Acc)>, runs: &[Run], f: F) {
    for r in runs {
        let k = bucket_index(buckets, r.start);
        f(&mut buckets[k].1, r);
    }
}
"""

_MERGE_PLAIN = {
    "Count": "Agg::Count => merge_runs(buckets, runs, |a, r| a.count += r.n),",
    "Min": "Agg::Min => merge_runs(buckets, runs, |a, r| {\n            if r.min < a.min {\n                a.min = r.min;\n            }\n        }),",
    "Max": "Agg::Max => merge_runs(buckets, runs, |a, r| {\n            if r.max > a.max {\n                a.max = r.max;\n            }\n        }),",
}
_MERGE_COMPACT = {
    "Count": "Agg::Count => merge_runs(buckets, runs, |a, r| a.n += r.n),",
    "Min": "Agg::Min => merge_runs(buckets, runs, |a, r| {\n"
    "            if a.n == 0 || r.min < a.a {\n                a.a = r.min;\n            }\n            a.n = 1;\n        }),",
    "Max": "Agg::Max => merge_runs(buckets, runs, |a, r| {\n"
    "            if a.n == 0 || r.max > a.a {\n                a.a = r.max;\n            }\n            a.n = 1;\n        }),",
}


def preagg_runs(src: str) -> str:
    """Summarise each series' runs once; min, max and count queries merge the summaries."""
    w = "preagg_runs"
    compact = "struct Acc {\n    a: f64,\n    n: u64,\n}" in src
    start = find(src, "fn aggregate(buckets: &mut Vec<(i64, Acc)>, points: &[(i64, f64)], agg: Agg) {", w)
    end = find(src, "\n}\n", w, start) + 3
    body = src[start:end]
    for kind, merged in (_MERGE_COMPACT if compact else _MERGE_PLAIN).items():
        m = re.search(rf"        Agg::{kind} => fold\(buckets, points, .*?\),\n(?=        Agg::|        //|    \}})", body, re.S)
        if m is None:
            raise TransformError(f"{w}: no fold arm for {kind}")
        body = body.replace(m.group(0), "        " + merged + "\n", 1)
    body = body.replace("points: &[(i64, f64)], agg: Agg) {", "points: &[(i64, f64)], runs: &[Run], agg: Agg) {", 1)
    src = src[:start] + body + _RUN_DEF + src[end:]
    n_calls = len(re.findall(r"aggregate\(&mut self\.groups\.slots\[[^\]]+\]\.buckets, &points, ", src))
    if n_calls < 2:
        raise TransformError(f"{w}: expected the aggregate calls, found {n_calls}")
    src = re.sub(r"(aggregate\(&mut self\.groups\.slots\[[^\]]+\]\.buckets, &points, )", r"\1&runs, ", src)
    src = _sub(src, "    s_points: Vec<(i64, f64)>,\n", "    s_points: Vec<(i64, f64)>,\n    s_runs: Vec<Run>,\n", w)
    src = _sub(src, "            s_points: Vec::new(),\n", "            s_points: Vec::new(),\n            s_runs: Vec::new(),\n", w)
    src = _sub(
        src,
        "        let mut points = core::mem::take(&mut self.s_points);\n",
        "        let mut points = core::mem::take(&mut self.s_points);\n        let mut runs = core::mem::take(&mut self.s_runs);\n",
        w,
    )
    src = _sub(
        src,
        "            let tags = &tags[s.tags.0 as usize..s.tags.1 as usize];\n",
        "            runs_of(&points, &mut runs);\n            let tags = &tags[s.tags.0 as usize..s.tags.1 as usize];\n",
        w,
    )
    src = _sub(src, "        self.s_points = points;\n", "        self.s_points = points;\n        self.s_runs = runs;\n", w)
    return src


# --- seq_hint ---------------------------------------------------------------------------------

_NEXT_FN = """/// The bucket after `prev` when it starts at `start` (a series' runs are consecutive
/// buckets, so this one comparison usually replaces a search); else the general lookup.
/// `prev` is only a hint: the answer is checked, so a stale one costs a search, never a
/// wrong bucket.
#[inline]
fn bucket_next(buckets: &mut Vec<(i64, Acc)>, start: i64, prev: usize) -> usize {
    let i = prev.wrapping_add(1);
    if i < buckets.len() && buckets[i].0 == start {
        return i;
    }
    bucket_index(buckets, start)
}

/// Index of the bucket starting at `start`"""


def seq_hint(src: str) -> str:
    """Look for each run's bucket right after the previous run's first."""
    w = "seq_hint"
    src = _sub(src, "/// Index of the bucket starting at `start`", _NEXT_FN, w)
    hinted = 0
    if "            cur = bucket_index(buckets, start);" in src:
        src = src.replace(
            "            cur = bucket_index(buckets, start);",
            "            cur = if cur == usize::MAX { bucket_index(buckets, start) } else { bucket_next(buckets, start, cur) };",
            1,
        )
        hinted += 1
    if "        let k = bucket_index(buckets, start);\n" in src:  # run_fold
        src = src.replace(
            "    let mut i = 0;\n    while i < points.len() {", "    let mut i = 0;\n    let mut prev = usize::MAX;\n    while i < points.len() {", 1
        )
        src = src.replace(
            "        let k = bucket_index(buckets, start);\n",
            "        let k = if prev == usize::MAX { bucket_index(buckets, start) } else { bucket_next(buckets, start, prev) };\n        prev = k;\n",
            1,
        )
        hinted += 1
    if "        let k = bucket_index(buckets, r.start);\n" in src:  # preagg_runs
        src = src.replace("    for r in runs {\n", "    let mut prev = usize::MAX;\n    for r in runs {\n", 1)
        src = src.replace(
            "        let k = bucket_index(buckets, r.start);\n",
            "        let k = if prev == usize::MAX { bucket_index(buckets, r.start) } else { bucket_next(buckets, r.start, prev) };\n        prev = k;\n",
            1,
        )
        hinted += 1
    if hinted == 0:
        raise TransformError(f"{w}: no bucket lookup in a fold to hint")
    return src


# --- wide_eq ----------------------------------------------------------------------------------

_EQ_FNS = """
/// Byte-string equality eight bytes at a time (a slice `==` in wasm compares byte by byte).
#[inline]
fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    for (p, q) in (&mut x).zip(&mut y) {
        if u64::from_le_bytes(<[u8; 8]>::try_from(p).unwrap_or([0; 8])) != u64::from_le_bytes(<[u8; 8]>::try_from(q).unwrap_or([0; 8])) {
            return false;
        }
    }
    x.remainder() == y.remainder()
}

/// `spec::literal` with `eq_bytes`: the same table, the same answer.
#[inline]
fn literal(s: &[u8]) -> u16 {
    let i = spec::LIT_SLOTS[(tables::hash_seeded(s, spec::LIT_SEED) >> spec::LIT_SHIFT) as usize];
    if i != NONE16 && eq_bytes(spec::LITERALS[i as usize], s) {
        i
    } else {
        NONE16
    }
}

/// `spec::key` with `eq_bytes`.
#[inline]
fn key_of(s: &[u8]) -> u16 {
    if NK == 0 {
        return NONE16;
    }
    let i = spec::KEY_SLOTS[(tables::hash_seeded(s, spec::KEY_SEED) >> spec::KEY_SHIFT) as usize];
    if i != NONE16 && eq_bytes(spec::KEYS[i as usize], s) {
        i
    } else {
        NONE16
    }
}
"""


def wide_eq(src: str) -> str:
    """Compare strings eight bytes at a time: the literal and key lookups (same tables as
    ``spec``'s) and, with ``tagset_cache``, the cached tag texts."""
    w = "wide_eq"
    src = _sub(src, "const NONE16: u16 = u16::MAX;\n", "const NONE16: u16 = u16::MAX;\n" + _EQ_FNS, w)
    src = _sub(src, "let lit = spec::literal(s);", "let lit = literal(s);", w)
    src = _sub(src, "key = spec::key(&s[..p]);", "key = key_of(&s[..p]);", w)
    cached = "|| &self.texts[at + 4..end] != s {"
    if cached in src:
        src = _sub(src, cached, "|| !eq_bytes(&self.texts[at + 4..end], s) {", w)
    return src


# --- the genome -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gene:
    name: str
    values: tuple[Any, ...]
    """Possible values; the first is the template's (off)."""
    apply: Callable[[str, Any], str]


GENES: tuple[Gene, ...] = (
    Gene("tagset_cache", (0, 1024, 4096, 16384, 65536), lambda s, v: tagset_cache(s, v) if v else s),
    Gene("compact_acc", (False, True), lambda s, v: compact_acc(s) if v else s),
    Gene("run_fold", (False, True), lambda s, v: run_fold(s) if v else s),
    Gene("near_window", (8, 4, 16, 32), lambda s, v: near_window(s, v) if v != 8 else s),
    Gene("preagg_runs", (False, True), lambda s, v: preagg_runs(s) if v else s),
    Gene("seq_hint", (False, True), lambda s, v: seq_hint(s) if v else s),
    Gene("atom_index", (False, True), lambda s, v: atom_index(s) if v else s),
    Gene("wide_eq", (False, True), lambda s, v: wide_eq(s) if v else s),
    Gene("decode", decode_rewrites.DECODE, decode_rewrites.decode),
)
BY_NAME = {g.name: g for g in GENES}
Genome = Mapping[str, Any]


def template_genome() -> dict[str, Any]:
    return {g.name: g.values[0] for g in GENES}


def conflict(genome: Genome) -> str | None:
    """Why the genome's rewrites cannot be combined, or None."""
    if genome.get("decode") == "walk_spans" and genome.get("preagg_runs"):
        return "decode=walk_spans folds points from spans; preagg_runs merges summaries of a point list"
    return None


def _repair(genome: dict[str, Any], keep: str) -> dict[str, Any]:
    """The genome without its conflict: the gene other than ``keep`` gives way."""
    if conflict(genome):
        if keep == "preagg_runs":
            genome["decode"] = "walk_bytes"
        else:
            genome["preagg_runs"] = False
    return genome


def validate_genome(genome: Genome) -> dict[str, Any]:
    out = template_genome()
    for k, v in genome.items():
        if k not in BY_NAME or v not in BY_NAME[k].values:
            raise TransformError(f"genome: {k}={v!r} is not in the catalogue")
        out[k] = v
    why = conflict(out)
    if why:
        raise TransformError(f"genome: {why}")
    return out


def render(template: str, genome: Genome) -> str:
    """The source of ``genome``: its rewrites applied to ``template`` in catalogue order."""
    g = validate_genome(genome)
    src = template
    for gene in GENES:
        src = gene.apply(src, g[gene.name])
    return src


def mutate(genome: Genome, rng: random.Random, rate: float = 0.5, weights: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Changes at least one gene (each with probability ``rate``) to another of its values;
    the one changed for sure is drawn by ``weights`` (``actors.evolve.stats``), uniformly
    without them."""
    g = validate_genome(genome)
    names = [x.name for x in GENES]
    w = [max(0.0, float((weights or {}).get(n, 1.0 if weights is None else 0.1))) for n in names]
    forced = rng.choices(names, w)[0] if sum(w) > 0 else rng.choice(names)
    for name in names:
        if name == forced or rng.random() < rate / len(names):
            g[name] = rng.choice([v for v in BY_NAME[name].values if v != g[name]])
    return _repair(g, forced)


def crossover(a: Genome, b: Genome, rng: random.Random) -> dict[str, Any]:
    """Each gene from one parent or the other."""
    ga, gb = validate_genome(a), validate_genome(b)
    return _repair({x.name: (ga if rng.random() < 0.5 else gb)[x.name] for x in GENES}, "decode")


def describe(genome: Genome) -> str:
    g = validate_genome(genome)
    base = template_genome()
    on = [f"{k}={v}" for k, v in g.items() if v != base[k]]
    return ", ".join(on) or "template"


# --- atom_index -------------------------------------------------------------------------------

_INDEX_FN = """/// Per metric: the queries without a positive filter atom (tried on every series), and per
/// atom the queries whose first positive atom it is (tried only on series that carry it).
fn atom_index() -> (Vec<Vec<u16>>, Vec<Vec<Vec<u16>>>) {
    let mut always = Vec::new();
    let mut by_atom = Vec::new();
    for m in 0..spec::METRIC_QUERIES.len() {
        let mut plain: Vec<u16> = Vec::new();
        let mut index: Vec<Vec<u16>> = (0..NATOMS).map(|_| Vec::new()).collect();
        for &q in spec::METRIC_QUERIES[m] {
            let pos = &spec::POS[q as usize];
            match (0..W).find(|&w| pos[w] != 0) {
                Some(w) => index[w * 64 + pos[w].trailing_zeros() as usize].push(q),
                None => plain.push(q),
            }
        }
        always.push(plain);
        by_atom.push(index);
    }
    (always, by_atom)
}

impl SpecializedKernel {
"""

_QUERY_LOOP_OLD = """            for &q in spec::METRIC_QUERIES[m as usize] {
                let q = q as usize;
                if NATOMS > 0 && !(0..W).all(|w| present[w] & spec::POS[q][w] == spec::POS[q][w] && present[w] & spec::NEG[q][w] == 0) {
                    continue;
                }
"""

_QUERY_LOOP_NEW = """            // Only the queries this series can match: O(atoms it carries), not O(queries).
            let passes = |q: usize| NATOMS == 0 || (0..W).all(|w| present[w] & spec::POS[q][w] == spec::POS[q][w] && present[w] & spec::NEG[q][w] == 0);
            matched.clear();
            for &q in &self.q_always[m as usize] {
                if passes(q as usize) {
                    matched.push(q);
                }
            }
            for w in 0..W {
                let mut b = present[w];
                while b != 0 {
                    let a = w * 64 + b.trailing_zeros() as usize;
                    b &= b - 1;
                    for &q in &self.q_by_atom[m as usize][a] {
                        if passes(q as usize) {
                            matched.push(q);
                        }
                    }
                }
            }
            for &q in matched.iter() {
                let q = q as usize;
"""


def atom_index(src: str) -> str:
    """Index each metric's queries by their first positive filter atom (built at start):
    a series tries only the queries whose atom it carries, not every query of its metric."""
    w = "atom_index"
    src = _sub(src, "impl SpecializedKernel {\n", _INDEX_FN, w)
    src = _sub(
        src,
        "    s_slots: Vec<u32>,\n",
        "    s_slots: Vec<u32>,\n    /// Queries by first positive atom (`atom_index`), and the ones a series matched.\n"
        "    q_always: Vec<Vec<u16>>,\n    q_by_atom: Vec<Vec<Vec<u16>>>,\n    s_matched: Vec<u16>,\n",
        w,
    )
    src = _sub(src, "        SpecializedKernel {\n", "        let (q_always, q_by_atom) = atom_index();\n        SpecializedKernel {\n", w)
    fields = "            q_always,\n            q_by_atom,\n            s_matched: Vec::new(),\n"
    src = _sub(src, "            s_slots: Vec::new(),\n", "            s_slots: Vec::new(),\n" + fields, w)
    src = _sub(
        src,
        "        let mut points = core::mem::take(&mut self.s_points);\n",
        "        let mut points = core::mem::take(&mut self.s_points);\n        let mut matched = core::mem::take(&mut self.s_matched);\n",
        w,
    )
    src = _sub(src, "        self.s_points = points;\n", "        self.s_points = points;\n        self.s_matched = matched;\n", w)
    return _sub(src, _QUERY_LOOP_OLD, _QUERY_LOOP_NEW, w)
