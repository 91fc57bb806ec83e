//! The generic evoagg kernel: serves any tenant configuration, given at init.
//!
//! This is what a competent engineer writes without knowing the tenant: the
//! configuration's strings are interned once (so a message's strings are looked up,
//! not compared against every filter), queries are indexed by metric, each series is
//! matched once per query, its values and buckets are decoded once, and the bucket of
//! consecutive points is cached. Semantics (the README's query language section;
//! `actors/oracle.py` is the literal reference):
//! - a row per (query, bucket, group text) with at least one finite point;
//! - `sum` folds from +0.0 in arrival order (message, series, point); `avg` is
//!   that sum divided by the count; `min`/`max` keep the first of equal values;
//! - non-finite values are ignored by every aggregate and counted.
//!
//! State stays bounded by what is open: strings from messages are kept only as group
//! values, and (query, group) slots whose buckets have all been flushed are compacted
//! away, with the values and combinations only they used, once they outnumber the live.
// Native builds (unit tests on the host) link std; the wasm build is no_std.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod config;

use abi::message::{Decoded, SeriesRec};
use abi::{DecodeError, Kernel, MessageStats, RowWriter};
use alloc::vec::Vec;
use config::{Agg, Config, Term};
use tables::groups::Groups;
use tables::Interner;

const NONE: u32 = u32::MAX;
/// The group value of a series that lacks a group-by key.
const MISSING: &[u8] = b"N/A";

enum CompiledTerm {
    /// Id (in `strings`) of the exact tag.
    Tag(u32),
    /// Id of the key, and the value prefix.
    Prefix { key: u32, prefix: Vec<u8> },
}

struct CompiledQuery {
    agg: Agg,
    filter: Vec<(bool, CompiledTerm)>,
    /// Ids of the group-by keys, in `by` order.
    by: Vec<u32>,
    /// Id in `values` of `key:N/A` for each group-by key.
    missing: Vec<u32>,
}

#[derive(Clone, Copy)]
struct Acc {
    sum: f64,
    count: u64,
    min: f64,
    max: f64,
}

impl Acc {
    const EMPTY: Acc = Acc { sum: 0.0, count: 0, min: f64::INFINITY, max: f64::NEG_INFINITY };

    #[inline]
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.count += 1;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
    }

    fn value(&self, agg: Agg) -> f64 {
        match agg {
            Agg::Sum => self.sum,
            Agg::Min => self.min,
            Agg::Max => self.max,
            Agg::Avg => self.sum / self.count as f64,
            Agg::Count => self.count as f64,
        }
    }
}

/// The string table of the message being applied.
#[derive(Clone, Copy)]
struct Texts<'p> {
    payload: &'p [u8],
    spans: &'p [(u32, u32)],
}

impl<'p> Texts<'p> {
    #[inline]
    fn get(self, t: u32) -> &'p [u8] {
        let (o, l) = self.spans[t as usize];
        &self.payload[o as usize..(o + l) as usize]
    }
}

/// What phase 2 knows about each string of the message being applied.
#[derive(Clone, Copy)]
struct LocalString {
    /// Id in `strings` when the configuration mentions this exact string, else NONE.
    id: u32,
    /// Id in `strings` of the part before the first ':' when the configuration
    /// mentions it as a key, else NONE.
    key: u32,
    /// Byte offset of the value (after the first ':').
    value_at: u32,
    /// Id in `values`, once this message has used the string as a group value.
    value: u32,
}

pub struct GenericKernel {
    org: u64,
    interval: i64,
    /// The highest watermark flushed so far: a bucket ending at or before it is closed.
    flushed_to: i64,
    queries: Vec<CompiledQuery>,
    /// The configuration's strings: metrics, filter tags, filter and group-by keys.
    strings: Interner,
    /// Per string id: index into `by_metric` when it names a queried metric.
    metric_queries: Vec<u32>,
    by_metric: Vec<Vec<u32>>,
    /// Group values, combinations, group texts and the slots with their open buckets.
    groups: Groups<Acc>,
    // Scratch, reused across messages.
    /// The message being applied, decoded.
    s_msg: Decoded,
    s_local: Vec<LocalString>,
    s_values: Vec<u32>,
    s_ranges: Vec<(u32, u32)>,
    s_odometer: Vec<u32>,
    s_tuple: Vec<u8>,
    s_slots: Vec<u32>,
    s_points: Vec<(i64, f64)>,
}

impl GenericKernel {
    pub fn from_config(cfg: Config) -> Self {
        let mut k = GenericKernel {
            org: cfg.org,
            interval: cfg.interval,
            flushed_to: i64::MIN,
            queries: Vec::new(),
            strings: Interner::new(),
            metric_queries: Vec::new(),
            by_metric: Vec::new(),
            groups: Groups::new(Vec::new()),
            s_msg: Decoded::default(),
            s_local: Vec::new(),
            s_values: Vec::new(),
            s_ranges: Vec::new(),
            s_odometer: Vec::new(),
            s_tuple: Vec::new(),
            s_slots: Vec::new(),
            s_points: Vec::new(),
        };
        // Every group-by key's `key:N/A` text, in first-use order: its value id is its index.
        let mut missing_texts: Vec<Vec<u8>> = Vec::new();
        for (qi, q) in cfg.queries.iter().enumerate() {
            let metric = k.strings.intern(&q.metric).0 as usize;
            if k.metric_queries.len() <= metric {
                k.metric_queries.resize(metric + 1, NONE);
            }
            if k.metric_queries[metric] == NONE {
                k.metric_queries[metric] = k.by_metric.len() as u32;
                k.by_metric.push(Vec::new());
            }
            let mi = k.metric_queries[metric] as usize;
            k.by_metric[mi].push(qi as u32);
            let mut filter = Vec::new();
            for t in &q.filter {
                let term = match &t.term {
                    Term::Tag(tag) => CompiledTerm::Tag(k.strings.intern(tag).0),
                    Term::Prefix { key, prefix } => CompiledTerm::Prefix { key: k.strings.intern(key).0, prefix: prefix.clone() },
                };
                filter.push((t.negated, term));
            }
            let mut by = Vec::new();
            let mut missing = Vec::new();
            for key in &q.by {
                by.push(k.strings.intern(key).0);
                let mut na = key.clone();
                na.push(b':');
                na.extend_from_slice(MISSING);
                let id = match missing_texts.iter().position(|t| *t == na) {
                    Some(i) => i,
                    None => {
                        missing_texts.push(na);
                        missing_texts.len() - 1
                    }
                };
                missing.push(id as u32);
            }
            k.queries.push(CompiledQuery { agg: q.agg, filter, by, missing });
        }
        k.groups = Groups::new(missing_texts);
        k
    }

    #[inline]
    fn matches(q: &CompiledQuery, tags: &[u32], local: &[LocalString], text: Texts) -> bool {
        for (negated, term) in &q.filter {
            let hit = match term {
                CompiledTerm::Tag(id) => tags.iter().any(|&t| local[t as usize].id == *id),
                CompiledTerm::Prefix { key, prefix } => tags.iter().any(|&t| {
                    let l = local[t as usize];
                    l.key == *key && text.get(t)[l.value_at as usize..].starts_with(prefix)
                }),
            };
            if hit == *negated {
                return false;
            }
        }
        true
    }

    /// Fills `s_slots` with the slots of every group the series lands in for query `qi`.
    fn group_slots(&mut self, qi: u32, tags: &[u32], local: &mut [LocalString], text: Texts) {
        self.s_slots.clear();
        self.s_values.clear();
        self.s_ranges.clear();
        let q = &self.queries[qi as usize];
        for (j, &key) in q.by.iter().enumerate() {
            let start = self.s_values.len();
            for &t in tags {
                let l = &mut local[t as usize];
                if l.key != key {
                    continue;
                }
                if l.value == NONE {
                    l.value = self.groups.value(text.get(t));
                }
                // Distinct values only: a repeated tag counts once.
                if !self.s_values[start..].contains(&l.value) {
                    self.s_values.push(l.value);
                }
            }
            if self.s_values.len() == start {
                self.s_values.push(q.missing[j]);
            }
            self.s_ranges.push((start as u32, self.s_values.len() as u32));
        }
        // Odometer over the cartesian product of the per-key values.
        self.s_odometer.clear();
        self.s_odometer.extend(self.s_ranges.iter().map(|r| r.0));
        loop {
            self.s_tuple.clear();
            self.s_tuple.extend_from_slice(&qi.to_le_bytes());
            for &i in &self.s_odometer {
                self.s_tuple.extend_from_slice(&self.s_values[i as usize].to_le_bytes());
            }
            let slot = self.groups.slot(&self.s_tuple);
            self.s_slots.push(slot);
            let mut j = self.s_odometer.len();
            loop {
                if j == 0 {
                    return;
                }
                j -= 1;
                self.s_odometer[j] += 1;
                if self.s_odometer[j] < self.s_ranges[j].1 {
                    break;
                }
                self.s_odometer[j] = self.s_ranges[j].0;
            }
        }
    }

}

/// Adds a series' finite points, `(bucket start, value)` in arrival order, to one slot.
fn aggregate(buckets: &mut Vec<(i64, Acc)>, points: &[(i64, f64)]) {
    let mut cur_start = 0i64;
    let mut cur = usize::MAX;
    for &(start, v) in points {
        if cur == usize::MAX || start != cur_start {
            cur_start = start;
            cur = bucket_index(buckets, start);
        }
        buckets[cur].1.add(v);
    }
}

/// Index of the bucket starting at `start` in the sorted `buckets`, opening it if new.
#[inline]
fn bucket_index(buckets: &mut Vec<(i64, Acc)>, start: i64) -> usize {
    // Time mostly moves forward: the newest bucket, or a new one after it, is the common
    // case; then one of the few before it; only then a binary search.
    let n = buckets.len();
    match buckets.last() {
        Some((s, _)) if *s == start => return n - 1,
        Some((s, _)) if *s > start => {}
        _ => {
            buckets.push((start, Acc::EMPTY));
            return n;
        }
    }
    let near = n.saturating_sub(8);
    let at = match buckets[near..n - 1].iter().rposition(|(s, _)| *s <= start) {
        Some(p) => near + p,
        None => match buckets[..near].binary_search_by(|(s, _)| s.cmp(&start)) {
            Ok(i) => return i,
            Err(i) => {
                buckets.insert(i, (start, Acc::EMPTY));
                return i;
            }
        },
    };
    if buckets[at].0 == start {
        return at;
    }
    buckets.insert(at + 1, (start, Acc::EMPTY));
    at + 1
}

impl Kernel for GenericKernel {
    fn init(config: &[u8]) -> Result<Self, ()> {
        Ok(Self::from_config(Config::decode(config)?))
    }

    fn process_message(&mut self, payload: &[u8]) -> Result<MessageStats, DecodeError> {
        // Phase 1: decode and validate the whole message; nothing changes on error.
        let mut m = core::mem::take(&mut self.s_msg);
        let result = m.decode(payload, self.org).map(|()| self.apply(payload, &m.strings, &m.tags, &m.ts, &m.series));
        self.s_msg = m;
        result
    }

    fn flush(&mut self, watermark: i64, out: &mut RowWriter) {
        let interval = self.interval;
        self.flushed_to = self.flushed_to.max(watermark);
        let closed = |b: &(i64, Acc)| b.0.saturating_add(interval) <= watermark;
        out.reserve(self.groups.drain_len(closed, RowWriter::row_len));
        let queries = &self.queries;
        self.groups.drain(closed, |q, text, start, acc| out.row_with(q, start, acc.value(queries[q as usize].agg), |g| g.extend_from_slice(text)));
    }
}

impl GenericKernel {
    /// Phase 2: aggregates a decoded, valid message.
    fn apply(&mut self, payload: &[u8], strings: &[(u32, u32)], tags: &[u32], ts: &[i64], series: &[SeriesRec]) -> MessageStats {
        let text = Texts { payload, spans: strings };
        let mut local = core::mem::take(&mut self.s_local);
        local.clear();
        for i in 0..strings.len() as u32 {
            let s = text.get(i);
            let (key, value_at) = match s.iter().position(|&b| b == b':') {
                Some(p) => (self.strings.get(&s[..p]).unwrap_or(NONE), p as u32 + 1),
                None => (NONE, 0),
            };
            local.push(LocalString { id: self.strings.get(s).unwrap_or(NONE), key, value_at, value: NONE });
        }
        let mut stats = MessageStats::default();
        let mut points = core::mem::take(&mut self.s_points);
        let interval = self.interval;
        for s in series {
            let ts = &ts[s.ts.0 as usize..s.ts.1 as usize];
            let values = &payload[s.values as usize..s.values as usize + 8 * ts.len()];
            stats.points += ts.len() as u64;
            stats.max_ts = ts.iter().fold(stats.max_ts, |m, &t| m.max(t));
            // Decode once per series: the finite points with their bucket start.
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
                // |t| <= 2^62 and interval < 2^31: `cur_start + interval` cannot overflow (`t - cur_start` could).
                if !have_start || t < cur_start || t >= cur_start + interval {
                    cur_start = t - t.rem_euclid(interval);
                    have_start = true;
                }
                // A bucket already flushed stays closed: its late points are counted, not merged.
                if cur_start + interval <= self.flushed_to {
                    stats.late += 1;
                    continue;
                }
                points.push((cur_start, v));
            }
            let metric = local[s.metric as usize].id;
            let mq = self.metric_queries.get(metric as usize).copied().unwrap_or(NONE);
            if mq == NONE || points.is_empty() {
                continue;
            }
            let tags = &tags[s.tags.0 as usize..s.tags.1 as usize];
            for qn in 0..self.by_metric[mq as usize].len() {
                let qi = self.by_metric[mq as usize][qn];
                if !Self::matches(&self.queries[qi as usize], tags, &local, text) {
                    continue;
                }
                self.group_slots(qi, tags, &mut local, text);
                for &slot in &self.s_slots {
                    aggregate(&mut self.groups.slots[slot as usize].buckets, &points);
                }
            }
        }
        self.s_points = points;
        self.s_local = local;
        stats
    }
}

abi::export_kernel!(GenericKernel);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_stay_sorted_and_found() {
        let mut b = Vec::new();
        for s in [30, 60, 0, 90, 60, -30, 0, 120] {
            let i = bucket_index(&mut b, s);
            assert_eq!(b[i].0, s);
            b[i].1.add(1.0);
        }
        let starts: Vec<i64> = b.iter().map(|x| x.0).collect();
        assert_eq!(starts, [-30, 0, 30, 60, 90, 120]);
        assert_eq!(b[1].1.count, 2);
    }

    #[test]
    fn buckets_match_a_sorted_set_on_a_long_mixed_sequence() {
        extern crate std;
        use std::collections::BTreeMap;
        let mut b = Vec::new();
        let mut reference = BTreeMap::new();
        let mut x: u64 = 12345;
        for i in 0..20_000i64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            // Mostly forward, sometimes a little back, sometimes far back.
            let start = match x >> 61 {
                0 => (i / 3 - (x >> 40) as i64 % 500) * 10,
                1 | 2 => (i / 3 - (x >> 40) as i64 % 5) * 10,
                _ => (i / 3) * 10,
            };
            let k = bucket_index(&mut b, start);
            assert_eq!(b[k].0, start);
            b[k].1.add(1.0);
            *reference.entry(start).or_insert(0u64) += 1;
        }
        let got: Vec<(i64, u64)> = b.iter().map(|(s, a)| (*s, a.count)).collect();
        let want: Vec<(i64, u64)> = reference.into_iter().collect();
        assert_eq!(got, want);
    }
}
