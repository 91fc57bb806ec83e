"""Rewrites that widen evolution's reach to decoding: the part of a message's path that
the shared reader owns in the template (``abi::message::Decoded``), where most of a
simple tenant's time goes.

- ``own_walk``: the kernel walks the payload itself (``codec/PAYLOAD.md``) with the shared
  codec's proved primitives (``read_uvarint``, zigzag, ``svb::control_len``/``data_len``/
  ``decode_with``), in the shared reader's order and with its error codes and offsets.
  Timestamps are cut into per-bucket spans as they are decoded, so none is stored, and a
  series' points are read from its spans. The walk itself is not proved: the
  differential stage fuzzes it against the shared reader (mutated and truncated
  payloads must be refused the same way, at the same offset), and the proofs stage says
  which decoder it checked.
- ``svb_bytes``: StreamVByte deltas that all take one byte (data as long as the count,
  since each takes at least one) are read straight from the data.
- ``span_fold``: queries fold a series' values straight from its spans in the payload
  (one bucket lookup per span) instead of from a list of points; a series' counts are
  taken once. Pays when a series lands in few slots; a series that lands in many reads
  its values once per slot, which is why it is a choice and not the default.

They are one gene (``decode``), in that order of ambition: ``shared``, ``walk``,
``walk_bytes``, ``walk_spans`` (walk, bytes and spans).
"""

from __future__ import annotations

import re

from actors.evolve.anchors import TransformError, find, sub

_WALK = """/// One series of the message being applied, as the kernel's own walk found it.
#[derive(Clone, Copy)]
struct Head {
    metric: u32,
    /// Range in `s_tags`.
    tags: (u32, u32),
    /// Range in `s_spans`.
    spans: (u32, u32),
}

/// Consecutive points of a series in one bucket: the bucket's start, the byte offset of
/// the first value in the payload, how many points.
#[derive(Clone, Copy)]
struct Span {
    start: i64,
    at: u32,
    n: u32,
}

/// A varint: one byte inline (ids and counts mostly are), else the shared reader's.
#[inline(always)]
fn var(p: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    if let Some(&b) = p.get(*pos) {
        if b < 0x80 {
            *pos += 1;
            return Ok(b as u64);
        }
    }
    read_uvarint(p, pos)
}

/// A count of items that each take at least `min_bytes` of the bytes left (the shared
/// reader's rule, code and offset).
#[inline(always)]
fn count_of(p: &[u8], pos: &mut usize, min_bytes: usize) -> Result<usize, DecodeError> {
    let at = *pos;
    let v = var(p, pos)?;
    if v > ((p.len() - *pos) / min_bytes) as u64 {
        return Err(DecodeError::new(ErrorCode::CountTooLarge, at));
    }
    Ok(v as usize)
}

#[inline(always)]
fn id_of(p: &[u8], pos: &mut usize, nstrings: usize) -> Result<u32, DecodeError> {
    let at = *pos;
    let id = var(p, pos)?;
    if id >= nstrings as u64 {
        return Err(DecodeError::new(ErrorCode::IdOutOfRange, at));
    }
    Ok(id as u32)
}

/// Cuts a series' timestamps into spans as they are decoded (no timestamp is stored).
/// A point inside the current span, `[lo, lo + width)` (its bucket, clipped to the valid
/// range), costs one comparison; anything else takes `leave`.
#[derive(Clone, Copy)]
struct Cutter {
    start: i64,
    lo: i64,
    width: u64,
    /// Index of the span's first point in the series.
    from: u32,
    /// Points seen so far.
    k: u32,
    in_range: bool,
    max: i64,
}

impl Cutter {
    #[inline(always)]
    fn new(first: i64, max: i64) -> Self {
        let mut c = Cutter { start: 0, lo: 0, width: 0, from: 0, k: 1, in_range: true, max: max.max(first) };
        c.open(first);
        c
    }

    /// Opens the span of `t`'s bucket (`t` in range: `start + INTERVAL` cannot overflow).
    #[inline(always)]
    fn open(&mut self, t: i64) {
        self.start = t - t.rem_euclid(spec::INTERVAL);
        self.lo = self.start.max(-MAX_ABS_TS);
        self.width = ((self.start + spec::INTERVAL).min(MAX_ABS_TS + 1) - self.lo) as u64;
    }

    #[inline(always)]
    fn point(&mut self, t: i64, spans: &mut Vec<Span>) {
        self.max = self.max.max(t);
        if (t.wrapping_sub(self.lo) as u64) >= self.width {
            self.leave(t, spans);
        }
        self.k += 1;
    }

    /// A point outside the span: out of range (the message is refused once the series is
    /// read; nothing more is cut), or the first of a new span.
    #[inline(always)]
    fn leave(&mut self, t: i64, spans: &mut Vec<Span>) {
        if !self.in_range {
            return;
        }
        if !(-MAX_ABS_TS..=MAX_ABS_TS).contains(&t) {
            self.in_range = false;
            return;
        }
        spans.push(Span { start: self.start, at: self.from, n: self.k - self.from });
        self.open(t);
        self.from = self.k;
    }

    #[inline(always)]
    fn finish(&self, spans: &mut Vec<Span>) {
        spans.push(Span { start: self.start, at: self.from, n: self.k - self.from });
    }
}

impl SpecializedKernel {
    /// Phase 1: walks and validates the whole message (`codec/PAYLOAD.md`) in the shared
    /// reader's order, with its codes and offsets (the differential stage fuzzes the two
    /// against each other): version, org (the tenant's), strings, then each series. Fills
    /// `s_strings`, `s_tags`, `s_heads` and `s_spans`; returns the largest timestamp.
    fn walk(&mut self, p: &[u8]) -> Result<i64, DecodeError> {
        if p.is_empty() {
            return Err(DecodeError::new(ErrorCode::Empty, 0));
        }
        if p[0] != PAYLOAD_VERSION {
            return Err(DecodeError::new(ErrorCode::BadVersion, 0));
        }
        let mut pos = 1usize;
        if read_uvarint(p, &mut pos)? != spec::ORG {
            return Err(DecodeError::new(ErrorCode::WrongOrg, 1));
        }
        let strings = &mut self.s_strings;
        strings.clear();
        let nstrings = count_of(p, &mut pos, 1)?;
        for _ in 0..nstrings {
            let at = pos;
            let len = count_of(p, &mut pos, 1)?;
            let text = &p[pos..pos + len];
            if !text.is_ascii() && core::str::from_utf8(text).is_err() {
                return Err(DecodeError::new(ErrorCode::BadUtf8, at));
            }
            strings.push((pos as u32, len as u32));
            pos += len;
        }
        let nseries = count_of(p, &mut pos, 3)?;
        let (tags, heads, spans) = (&mut self.s_tags, &mut self.s_heads, &mut self.s_spans);
        tags.clear();
        heads.clear();
        spans.clear();
        let mut max_ts = i64::MIN;
        for _ in 0..nseries {
            let metric = id_of(p, &mut pos, nstrings)?;
            let ntags = count_of(p, &mut pos, 1)?;
            let t0 = tags.len() as u32;
            for _ in 0..ntags {
                let id = id_of(p, &mut pos, nstrings)?;
                tags.push(id);
            }
            let t1 = tags.len() as u32;
            let npoints = count_of(p, &mut pos, 8)?;
            let s0 = spans.len();
            if npoints > 0 {
                let at0 = pos;
                let first = zigzag_decode(read_uvarint(p, &mut pos)?);
                if !(-MAX_ABS_TS..=MAX_ABS_TS).contains(&first) {
                    return Err(DecodeError::new(ErrorCode::TsOutOfRange, at0));
                }
                if pos >= p.len() {
                    return Err(DecodeError::new(ErrorCode::Truncated, pos));
                }
                let enc_at = pos;
                let enc = p[pos];
                pos += 1;
                let deltas = npoints - 1;
                let mut cut = Cutter::new(first, max_ts);
                let mut cur = first;
                match enc {
                    TS_ENC_SVB => {
                        let clen = svb::control_len(deltas);
                        if p.len() - pos < clen {
                            return Err(DecodeError::new(ErrorCode::Truncated, pos));
                        }
                        let ctrl = &p[pos..pos + clen];
                        let dlen = svb::data_len(ctrl, deltas);
                        if p.len() - pos - clen < dlen {
                            return Err(DecodeError::new(ErrorCode::Truncated, pos + clen));
                        }
                        let data = &p[pos + clen..pos + clen + dlen];
                        svb::decode_with(ctrl, data, deltas, |z| {
                            cur = cur.wrapping_add(zigzag_decode32(z) as i64);
                            cut.point(cur, spans);
                        });
                        pos += clen + dlen;
                    }
                    TS_ENC_VARINT => {
                        for _ in 0..deltas {
                            cur = cur.wrapping_add(zigzag_decode(read_uvarint(p, &mut pos)?));
                            cut.point(cur, spans);
                        }
                    }
                    _ => return Err(DecodeError::new(ErrorCode::BadTsEncoding, enc_at)),
                }
                if !cut.in_range {
                    return Err(DecodeError::new(ErrorCode::TsOutOfRange, at0));
                }
                cut.finish(spans);
                max_ts = cut.max;
            }
            if p.len() - pos < 8 * npoints {
                return Err(DecodeError::new(ErrorCode::Truncated, pos));
            }
            for sp in &mut spans[s0..] {
                sp.at = (pos + 8 * sp.at as usize) as u32;
            }
            pos += 8 * npoints;
            heads.push(Head { metric, tags: (t0, t1), spans: (s0 as u32, spans.len() as u32) });
        }
        if pos != p.len() {
            return Err(DecodeError::new(ErrorCode::TrailingBytes, pos));
        }
        Ok(max_ts)
    }
}

"""

_POINTS_OLD = """            let ts = &ts[s.ts.0 as usize..s.ts.1 as usize];
            let values = &payload[s.values as usize..s.values as usize + 8 * ts.len()];
            stats.points += ts.len() as u64;
            stats.max_ts = ts.iter().fold(stats.max_ts, |m, &t| m.max(t));
            points.clear();
            let mut cur_start = 0i64;
            let mut have_start = false;
            for (i, &t) in ts.iter().enumerate() {
                let b = &values[8 * i..8 * i + 8];
                let v = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                if !v.is_finite() {
                    stats.nonfinite += 1;
                    continue;
                }
                // |t| <= 2^62 and interval < 2^31: `cur_start + interval` cannot overflow.
                if !have_start || t < cur_start || t >= cur_start + interval {
                    cur_start = t - t.rem_euclid(interval);
                    have_start = true;
                }
                if cur_start + interval <= self.flushed_to {
                    stats.late += 1;
                    continue;
                }
                points.push((cur_start, v));
            }
"""
_POINTS_NEW = """            points.clear();
            for sp in &spans[s.spans.0 as usize..s.spans.1 as usize] {
                stats.points += sp.n as u64;
                let late = sp.start + interval <= self.flushed_to;
                let values = &payload[sp.at as usize..sp.at as usize + 8 * sp.n as usize];
                for b in values.chunks_exact(8) {
                    let v = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                    if !v.is_finite() {
                        stats.nonfinite += 1;
                        continue;
                    }
                    if late {
                        stats.late += 1;
                        continue;
                    }
                    points.push((sp.start, v));
                }
            }
"""


def own_walk(src: str) -> str:
    """The kernel's own message walk in place of the shared reader."""
    w = "own_walk"
    src = sub(
        src,
        "use abi::message::{Decoded, SeriesRec};\n",
        "use codec::varint::{read_uvarint, zigzag_decode, zigzag_decode32};\n"
        "use codec::{svb, ErrorCode, MAX_ABS_TS, PAYLOAD_VERSION, TS_ENC_SVB, TS_ENC_VARINT};\n",
        w,
    )
    src = sub(
        src,
        "    /// The message being applied, decoded.\n    s_msg: Decoded,\n",
        "    /// The message being applied, as `walk` found it.\n"
        "    s_strings: Vec<(u32, u32)>,\n    s_tags: Vec<u32>,\n    s_heads: Vec<Head>,\n    s_spans: Vec<Span>,\n",
        w,
    )
    src = sub(
        src,
        "            s_msg: Decoded::default(),\n",
        "            s_strings: Vec::new(),\n            s_tags: Vec::new(),\n            s_heads: Vec::new(),\n            s_spans: Vec::new(),\n",
        w,
    )
    src = sub(
        src,
        "tags: &[u32], ts: &[i64], series: &[SeriesRec]) -> MessageStats {",
        "tags: &[u32], series: &[Head], spans: &[Span], max_ts: i64) -> MessageStats {",
        w,
    )
    src = sub(src, "        let mut stats = MessageStats::default();\n", "        let mut stats = MessageStats { max_ts, ..MessageStats::default() };\n", w)
    src = sub(src, _POINTS_OLD, _POINTS_NEW, w)
    src = sub(
        src,
        "        let mut m = core::mem::take(&mut self.s_msg);\n"
        "        let result = m.decode(payload, spec::ORG).map(|()| self.apply(payload, &m.strings, &m.tags, &m.ts, &m.series));\n"
        "        self.s_msg = m;\n        result\n",
        "        let max_ts = self.walk(payload)?;\n"
        "        let (strings, tags) = (core::mem::take(&mut self.s_strings), core::mem::take(&mut self.s_tags));\n"
        "        let (heads, spans) = (core::mem::take(&mut self.s_heads), core::mem::take(&mut self.s_spans));\n"
        "        let stats = self.apply(payload, &strings, &tags, &heads, &spans, max_ts);\n"
        "        (self.s_strings, self.s_tags, self.s_heads, self.s_spans) = (strings, tags, heads, spans);\n"
        "        Ok(stats)\n",
        w,
    )
    src = sub(src, "impl abi::Kernel for SpecializedKernel {\n", _WALK + "impl abi::Kernel for SpecializedKernel {\n", w)
    return src


_ONES_FN = """
/// Whether every length field of `n` StreamVByte values says one byte (all zero bits):
/// then the data is `n` bytes, without summing the control bytes.
#[inline(always)]
fn svb_all_ones(ctrl: &[u8], n: usize) -> bool {
    let full = n / 4;
    let mut any = 0u8;
    for &c in &ctrl[..full] {
        any |= c;
    }
    if n % 4 != 0 {
        any |= ctrl[full] & ((1u8 << (2 * (n % 4))) - 1);
    }
    any == 0
}

"""


def svb_bytes(src: str) -> str:
    """StreamVByte deltas that all take one byte (every length field zero, the data as long
    as the count) are read straight from the data, without summing the control bytes."""
    w = "svb_bytes"
    src = sub(src, "/// Cuts a series' timestamps into spans", _ONES_FN.lstrip("\n") + "/// Cuts a series' timestamps into spans", w)
    src = sub(
        src,
        "                        let dlen = svb::data_len(ctrl, deltas);\n",
        "                        let ones = svb_all_ones(ctrl, deltas);\n"
        "                        let dlen = if ones { deltas } else { svb::data_len(ctrl, deltas) };\n",
        w,
    )
    return sub(
        src,
        "                        svb::decode_with(ctrl, data, deltas, |z| {\n"
        "                            cur = cur.wrapping_add(zigzag_decode32(z) as i64);\n"
        "                            cut.point(cur, spans);\n"
        "                        });\n",
        "                        if ones {\n"
        "                            // Every length is one byte. (A copy of the cutter that no\n"
        "                            // closure captures stays in registers.)\n"
        "                            let (mut c, mut t) = (cut, cur);\n"
        "                            for &z in data {\n"
        "                                t = t.wrapping_add(zigzag_decode32(z as u32) as i64);\n"
        "                                c.point(t, spans);\n"
        "                            }\n"
        "                            (cut, cur) = (c, t);\n"
        "                        } else {\n"
        "                            svb::decode_with(ctrl, data, deltas, |z| {\n"
        "                                cur = cur.wrapping_add(zigzag_decode32(z) as i64);\n"
        "                                cut.point(cur, spans);\n"
        "                            });\n"
        "                        }\n",
        w,
    )


_SPAN_STATS = """            let sp = &spans[s.spans.0 as usize..s.spans.1 as usize];
            // Counts once per series; the queries fold the spans' values themselves.
            let mut live = 0u64;
            for x in sp {
                stats.points += x.n as u64;
                let late = x.start + interval <= self.flushed_to;
                let values = &payload[x.at as usize..x.at as usize + 8 * x.n as usize];
                for b in values.chunks_exact(8) {
                    let bits = u64::from_le_bytes(<[u8; 8]>::try_from(b).unwrap_or([0; 8]));
                    if bits & 0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000 {
                        stats.nonfinite += 1;
                    } else if late {
                        stats.late += 1;
                    } else {
                        live += 1;
                    }
                }
            }
"""

_FOLD_SPANS = """
/// Folds the finite values of a series' spans that are not late into one slot, in arrival
/// order; a bucket is opened only for a span with such a value.
#[inline(always)]
fn fold_spans<F: Fn(&mut Acc, f64)>(buckets: &mut Vec<(i64, Acc)>, spans: &[Span], payload: &[u8], flushed_to: i64, f: F) {
    for x in spans {
        if x.start + spec::INTERVAL <= flushed_to {
            continue;
        }
        let values = &payload[x.at as usize..x.at as usize + 8 * x.n as usize];
        // The accumulator is updated in a local and stored once per span (the same
        // operations in the same order: the same bits).
        let mut i = usize::MAX;
        let mut acc = Acc::EMPTY;
        for b in values.chunks_exact(8) {
            let v = f64::from_le_bytes(<[u8; 8]>::try_from(b).unwrap_or([0; 8]));
            if !v.is_finite() {
                continue;
            }
            if i == usize::MAX {
                i = bucket_index(buckets, x.start);
                acc = buckets[i].1;
            }
            f(&mut acc, v);
        }
        if i != usize::MAX {
            buckets[i].1 = acc;
        }
    }
}
"""


def span_fold(src: str) -> str:
    """Queries fold straight from the spans (needs ``own_walk``; not with ``preagg_runs``,
    whose aggregates merge run summaries of the point list)."""
    w = "span_fold"
    if "fn walk(&mut self, p: &[u8])" not in src:
        raise TransformError(f"{w}: needs the kernel's own walk (own_walk)")
    src = sub(src, _POINTS_NEW, _SPAN_STATS, w)
    src = sub(src, "            if m == NONE16 || points.is_empty() {", "            if m == NONE16 || live == 0 {", w)
    start = find(src, "fn aggregate(buckets: &mut Vec<(i64, Acc)>, points: &[(i64, f64)], agg: Agg) {", w)
    end = find(src, "\n}\n", w, start) + 3
    body = src[start:end]
    arms = re.findall(r"        Agg::\w+ => (\w+)\(", body)
    if not arms or any(a != "fold" for a in arms):
        raise TransformError(f"{w}: every aggregate must fold points (preagg_runs merges summaries)")
    spans_fn = body.replace(
        "fn aggregate(buckets: &mut Vec<(i64, Acc)>, points: &[(i64, f64)], agg: Agg) {",
        "fn aggregate_spans(buckets: &mut Vec<(i64, Acc)>, spans: &[Span], payload: &[u8], flushed_to: i64, agg: Agg) {",
    )
    spans_fn = spans_fn.replace("fold(buckets, points,", "fold_spans(buckets, spans, payload, flushed_to,")
    src = src[:end] + "\n/// `aggregate` over a series' spans, straight from the payload.\n#[inline]\n" + spans_fn + _FOLD_SPANS + src[end:]
    calls = re.findall(r"aggregate\((&mut self\.groups\.slots\[[^\]]+\]\.buckets), &points, ", src)
    if len(calls) < 2:
        raise TransformError(f"{w}: expected the aggregate calls, found {len(calls)}")
    src = re.sub(r"aggregate\((&mut self\.groups\.slots\[[^\]]+\]\.buckets), &points, ", r"aggregate_spans(\1, sp, payload, self.flushed_to, ", src)
    return src


_VALS_POINTS = """            // Once per series: its counts, its finite values that are not late in one
            // contiguous list, and per span a summary (start, where its values are, count,
            // first min, first max) that every query of the series reuses.
            vals.clear();
            vruns.clear();
            for x in &spans[s.spans.0 as usize..s.spans.1 as usize] {
                stats.points += x.n as u64;
                let late = x.start + interval <= self.flushed_to;
                let from = vals.len();
                let (mut lo, mut hi) = (0.0f64, 0.0f64);
                for b in payload[x.at as usize..x.at as usize + 8 * x.n as usize].chunks_exact(8) {
                    let v = f64::from_le_bytes(<[u8; 8]>::try_from(b).unwrap_or([0; 8]));
                    if !v.is_finite() {
                        stats.nonfinite += 1;
                        continue;
                    }
                    if late {
                        stats.late += 1;
                        continue;
                    }
                    if vals.len() == from {
                        (lo, hi) = (v, v);
                    } else {
                        // Strict comparisons: the first minimal and maximal value, as a fold keeps.
                        if v < lo {
                            lo = v;
                        }
                        if v > hi {
                            hi = v;
                        }
                    }
                    vals.push(v);
                }
                if vals.len() > from {
                    vruns.push(VRun { start: x.start, from: from as u32, n: (vals.len() - from) as u64, min: lo, max: hi });
                }
            }
"""

_VRUN_DEF = """
/// A span's values that count (finite, not late), summarised once per series: where they
/// are in the series' value list, how many, the first minimal and first maximal one.
#[derive(Clone, Copy)]
struct VRun {
    start: i64,
    from: u32,
    n: u64,
    min: f64,
    max: f64,
}

/// Folds each run's values into its bucket in order, through a local accumulator stored
/// once per run (the same operations in the same order: the same bits).
#[inline(always)]
fn fold_vals<F: Fn(&mut Acc, f64)>(buckets: &mut Vec<(i64, Acc)>, vruns: &[VRun], vals: &[f64], f: F) {
    let mut prev = usize::MAX;
    for r in vruns {
        let k = LOOKUP;
        prev = k;
        let mut acc = buckets[k].1;
        for &v in &vals[r.from as usize..r.from as usize + r.n as usize] {
            f(&mut acc, v);
        }
        buckets[k].1 = acc;
    }
}

/// Merges each run's summary into its bucket (min, max and count need no per-value work).
#[inline(always)]
fn merge_vruns<F: Fn(&mut Acc, &VRun)>(buckets: &mut Vec<(i64, Acc)>, vruns: &[VRun], f: F) {
    let mut prev = usize::MAX;
    for r in vruns {
        let k = LOOKUP;
        prev = k;
        f(&mut buckets[k].1, r);
    }
}
"""


def vals_fold(src: str) -> str:
    """Per series, its counted values in one list and per span a summary; queries fold the
    list run by run and merge the summaries (needs ``own_walk``; combines with everything)."""
    w = "vals_fold"
    if "fn walk(&mut self, p: &[u8])" not in src:
        raise TransformError(f"{w}: needs the kernel's own walk (own_walk)")
    src = sub(src, _POINTS_NEW, _VALS_POINTS, w)
    src = sub(src, "            if m == NONE16 || points.is_empty() {", "            if m == NONE16 || vals.is_empty() {", w)
    if "            runs_of(&points, &mut runs);\n" in src:
        src = sub(src, "            runs_of(&points, &mut runs);\n", "", w)
    src = sub(src, "    s_points: Vec<(i64, f64)>,\n", "    s_points: Vec<(i64, f64)>,\n    s_vals: Vec<f64>,\n    s_vruns: Vec<VRun>,\n", w)
    src = sub(
        src, "            s_points: Vec::new(),\n", "            s_points: Vec::new(),\n            s_vals: Vec::new(),\n            s_vruns: Vec::new(),\n", w
    )
    src = sub(
        src,
        "        let mut points = core::mem::take(&mut self.s_points);\n",
        "        let mut points = core::mem::take(&mut self.s_points);\n"
        "        let mut vals = core::mem::take(&mut self.s_vals);\n        let mut vruns = core::mem::take(&mut self.s_vruns);\n",
        w,
    )
    src = sub(src, "        self.s_points = points;\n", "        self.s_points = points;\n        self.s_vals = vals;\n        self.s_vruns = vruns;\n", w)
    start = find(src, "fn aggregate(buckets: &mut Vec<(i64, Acc)>, points: &[(i64, f64)]", w)
    end = find(src, "\n}\n", w, start) + 3
    body = src[start:end]
    head = body[: body.index("{") + 1]
    vals_fn = body.replace(head, "fn aggregate_vals(buckets: &mut Vec<(i64, Acc)>, vruns: &[VRun], vals: &[f64], agg: Agg) {", 1)
    vals_fn = vals_fn.replace("fold(buckets, points,", "fold_vals(buckets, vruns, vals,").replace("merge_runs(buckets, runs,", "merge_vruns(buckets, vruns,")
    if "points" in vals_fn.split("{", 1)[1] or re.search(r"\bruns\b", vals_fn.split("{", 1)[1]):
        raise TransformError(f"{w}: an aggregate arm neither folds points nor merges runs")
    hinted = "fn bucket_next(" in src
    lookup = (
        "if prev == usize::MAX { bucket_index(buckets, r.start) } else { bucket_next(buckets, r.start, prev) }" if hinted else "bucket_index(buckets, r.start)"
    )
    defs = _VRUN_DEF.replace("LOOKUP", lookup)
    if not hinted:
        defs = defs.replace("    let mut prev = usize::MAX;\n", "").replace("        prev = k;\n", "")
    src = src[:end] + "\n/// `aggregate` over a series' value list and run summaries.\n#[inline]\n" + vals_fn + defs + src[end:]
    pattern = r"aggregate\((&mut self\.groups\.slots\[[^\]]+\]\.buckets), &points, (?:&runs, )?"
    if len(re.findall(pattern, src)) < 2:
        raise TransformError(f"{w}: expected the aggregate calls")
    return re.sub(pattern, r"aggregate_vals(\1, &vruns, &vals, ", src)


DECODE = ("shared", "walk", "walk_bytes", "walk_spans", "walk_vals")
"""The ``decode`` gene's values; the first is the template's."""


def decode(src: str, how: str) -> str:
    """``src`` with the ``decode`` gene's rewrites for ``how`` applied."""
    if how not in DECODE:
        raise TransformError(f"decode: {how!r} is not one of {DECODE}")
    if how == "shared":
        return src
    src = own_walk(src)
    if how in ("walk_bytes", "walk_spans", "walk_vals"):
        src = svb_bytes(src)
    if how == "walk_spans":
        src = span_fold(src)
    if how == "walk_vals":
        src = vals_fold(src)
    return src
