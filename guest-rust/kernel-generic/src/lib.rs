//! The generic evoagg kernel: serves any tenant configuration, given at init.
//!
//! This is what a competent engineer writes without knowing the tenant: strings
//! are interned once per kernel (so filter terms and group keys compare as ids),
//! queries are indexed by metric, each series is matched once per query, and the
//! bucket of consecutive points is cached. Semantics (the README's query language
//! section; `actors/oracle.py` is the literal reference):
//! - a row per (query, bucket, group) with at least one finite point;
//! - `sum` folds from +0.0 in arrival order (message, series, point); `avg` is
//!   that sum divided by the count; `min`/`max` keep the first of equal values;
//! - non-finite values are ignored by every aggregate and counted.
// Native builds (unit tests on the host) link std; the wasm build is no_std.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod config;
pub mod table;

use abi::{DecodeError, Kernel, MessageStats, RowWriter};
use alloc::vec::Vec;
use codec::{ErrorCode, PayloadReader};
use config::{Agg, Config, Term};
use table::{Interner, U64Map};

const NONE: u32 = u32::MAX;
/// The group value of a series that lacks a group-by key.
const MISSING: &[u8] = b"N/A";

enum CompiledTerm {
    Tag(u32),
    Prefix { key: u32, prefix: Vec<u8> },
}

struct CompiledQuery {
    agg: Agg,
    filter: Vec<(bool, CompiledTerm)>,
    /// Ids of the group-by keys, in `by` order.
    by: Vec<u32>,
    /// Ids of `key:N/A` for each group-by key.
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

/// The open buckets of one (query, group).
struct Slot {
    query: u32,
    group: u32,
    buckets: Vec<(i64, Acc)>,
}

#[derive(Clone, Copy)]
struct SeriesRec {
    metric: u32,
    tags: (u32, u32),
    ts: (u32, u32),
    values: u32,
}

pub struct GenericKernel {
    org: u64,
    interval: i64,
    queries: Vec<CompiledQuery>,
    strings: Interner,
    /// Per string id: id of the part before the first ':' (NONE for a bare tag).
    key_of: Vec<u32>,
    /// Per string id: byte offset where the value starts.
    value_at: Vec<u32>,
    /// Per string id: index into `by_metric` when it names a queried metric.
    metric_queries: Vec<u32>,
    by_metric: Vec<Vec<u32>>,
    /// Group tuples: the group-by tag ids of a group, as little-endian u32s.
    groups: Interner,
    slot_of: U64Map,
    slots: Vec<Slot>,
    // Scratch, reused across messages.
    s_strings: Vec<(u32, u32)>,
    s_tags: Vec<u32>,
    s_ts: Vec<i64>,
    s_series: Vec<SeriesRec>,
    s_values: Vec<u32>,
    s_ranges: Vec<(u32, u32)>,
    s_odometer: Vec<u32>,
    s_tuple: Vec<u8>,
    s_slots: Vec<u32>,
    s_points: Vec<(i64, f64)>,
}

impl GenericKernel {
    fn intern(&mut self, s: &[u8]) -> u32 {
        let (id, new) = self.strings.intern(s);
        if new {
            self.key_of.push(NONE);
            self.value_at.push(0);
            self.metric_queries.push(NONE);
            if let Some(p) = s.iter().position(|&b| b == b':') {
                let key = self.intern(&s[..p]);
                self.key_of[id as usize] = key;
                self.value_at[id as usize] = p as u32 + 1;
            }
        }
        id
    }

    pub fn from_config(cfg: Config) -> Self {
        let mut k = GenericKernel {
            org: cfg.org,
            interval: cfg.interval,
            queries: Vec::new(),
            strings: Interner::new(),
            key_of: Vec::new(),
            value_at: Vec::new(),
            metric_queries: Vec::new(),
            by_metric: Vec::new(),
            groups: Interner::new(),
            slot_of: U64Map::new(),
            slots: Vec::new(),
            s_strings: Vec::new(),
            s_tags: Vec::new(),
            s_ts: Vec::new(),
            s_series: Vec::new(),
            s_values: Vec::new(),
            s_ranges: Vec::new(),
            s_odometer: Vec::new(),
            s_tuple: Vec::new(),
            s_slots: Vec::new(),
            s_points: Vec::new(),
        };
        for (qi, q) in cfg.queries.iter().enumerate() {
            let metric = k.intern(&q.metric);
            if k.metric_queries[metric as usize] == NONE {
                k.metric_queries[metric as usize] = k.by_metric.len() as u32;
                k.by_metric.push(Vec::new());
            }
            let mi = k.metric_queries[metric as usize] as usize;
            k.by_metric[mi].push(qi as u32);
            let mut filter = Vec::new();
            for t in &q.filter {
                let term = match &t.term {
                    Term::Tag(tag) => CompiledTerm::Tag(k.intern(tag)),
                    Term::Prefix { key, prefix } => CompiledTerm::Prefix { key: k.intern(key), prefix: prefix.clone() },
                };
                filter.push((t.negated, term));
            }
            let mut by = Vec::new();
            let mut missing = Vec::new();
            for key in &q.by {
                by.push(k.intern(key));
                let mut na = key.clone();
                na.push(b':');
                na.extend_from_slice(MISSING);
                missing.push(k.intern(&na));
            }
            k.queries.push(CompiledQuery { agg: q.agg, filter, by, missing });
        }
        k
    }

    #[inline]
    fn matches(&self, q: &CompiledQuery, tags: &[u32]) -> bool {
        for (negated, term) in &q.filter {
            let hit = match term {
                CompiledTerm::Tag(id) => tags.contains(id),
                CompiledTerm::Prefix { key, prefix } => tags.iter().any(|&t| {
                    self.key_of[t as usize] == *key && self.strings.bytes(t)[self.value_at[t as usize] as usize..].starts_with(prefix)
                }),
            };
            if hit == *negated {
                return false;
            }
        }
        true
    }

    /// Fills `s_slots` with the slots of every group the series lands in for query `qi`.
    fn group_slots(&mut self, qi: u32, tags: &[u32]) {
        self.s_slots.clear();
        self.s_values.clear();
        self.s_ranges.clear();
        let q = &self.queries[qi as usize];
        for (j, &key) in q.by.iter().enumerate() {
            let start = self.s_values.len() as u32;
            for &t in tags {
                if self.key_of[t as usize] == key && !self.s_values[start as usize..].contains(&t) {
                    self.s_values.push(t);
                }
            }
            if self.s_values.len() as u32 == start {
                self.s_values.push(q.missing[j]);
            }
            self.s_ranges.push((start, self.s_values.len() as u32));
        }
        // Odometer over the cartesian product of the per-key values.
        self.s_odometer.clear();
        self.s_odometer.extend(self.s_ranges.iter().map(|r| r.0));
        loop {
            self.s_tuple.clear();
            for &i in &self.s_odometer {
                self.s_tuple.extend_from_slice(&self.s_values[i as usize].to_le_bytes());
            }
            let gid = self.groups.intern(&self.s_tuple).0;
            let slots = &mut self.slots;
            let si = self.slot_of.get_or_insert_with(((qi as u64) << 32) | gid as u64, || {
                slots.push(Slot { query: qi, group: gid, buckets: Vec::new() });
                (slots.len() - 1) as u32
            });
            self.s_slots.push(si);
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
            // Time mostly moves forward: the bucket sought is nearly always among the last opened.
            cur = match buckets.iter().rposition(|(s, _)| *s == start) {
                Some(p) => p,
                None => {
                    buckets.push((start, Acc::EMPTY));
                    buckets.len() - 1
                }
            };
        }
        buckets[cur].1.add(v);
    }
}

impl Kernel for GenericKernel {
    fn init(config: &[u8]) -> Result<Self, ()> {
        Ok(Self::from_config(Config::decode(config)?))
    }

    fn process_message(&mut self, payload: &[u8]) -> Result<MessageStats, DecodeError> {
        // Phase 1: decode and validate the whole message; nothing changes on error.
        let mut r = PayloadReader::new(payload)?;
        if r.org() != self.org {
            return Err(DecodeError::new(ErrorCode::WrongOrg, 1));
        }
        let mut strings = core::mem::take(&mut self.s_strings);
        let mut tags = core::mem::take(&mut self.s_tags);
        let mut ts = core::mem::take(&mut self.s_ts);
        let mut series = core::mem::take(&mut self.s_series);
        tags.clear();
        ts.clear();
        series.clear();
        let decoded = (|| {
            r.read_strings(&mut strings)?;
            while let Some(s) = r.next_series(&mut tags, &mut ts)? {
                series.push(SeriesRec {
                    metric: s.metric,
                    tags: (s.tags_start as u32, s.tags_end as u32),
                    ts: (s.ts_start as u32, s.ts_end as u32),
                    values: (s.values.as_ptr() as usize - payload.as_ptr() as usize) as u32,
                });
            }
            Ok(())
        })();
        let result = decoded.map(|()| {
            // Phase 2: intern the message's strings, then aggregate.
            let local: Vec<u32> = strings.iter().map(|e| self.intern(r.string(*e))).collect();
            for t in tags.iter_mut() {
                *t = local[*t as usize];
            }
            let mut stats = MessageStats::default();
            let mut points = core::mem::take(&mut self.s_points);
            let interval = self.interval;
            for s in &series {
                let ts = &ts[s.ts.0 as usize..s.ts.1 as usize];
                let values = &payload[s.values as usize..s.values as usize + 8 * ts.len()];
                stats.points += ts.len() as u64;
                // Decode once per series: the finite points with their bucket start.
                points.clear();
                let mut cur_start = 0i64;
                for (i, &t) in ts.iter().enumerate() {
                    let b = &values[8 * i..8 * i + 8];
                    let v = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                    if !v.is_finite() {
                        stats.nonfinite += 1;
                        continue;
                    }
                    // |t| <= 2^62 and interval < 2^31: `cur_start + interval` cannot overflow (`t - cur_start` could).
                    if points.is_empty() || t < cur_start || t >= cur_start + interval {
                        cur_start = t - t.rem_euclid(interval);
                    }
                    points.push((cur_start, v));
                }
                let mq = self.metric_queries[local[s.metric as usize] as usize];
                if mq == NONE || points.is_empty() {
                    continue;
                }
                let tags = &tags[s.tags.0 as usize..s.tags.1 as usize];
                for qn in 0..self.by_metric[mq as usize].len() {
                    let qi = self.by_metric[mq as usize][qn];
                    if !self.matches(&self.queries[qi as usize], tags) {
                        continue;
                    }
                    self.group_slots(qi, tags);
                    for &slot in &self.s_slots {
                        aggregate(&mut self.slots[slot as usize].buckets, &points);
                    }
                }
            }
            self.s_points = points;
            stats
        });
        self.s_strings = strings;
        self.s_tags = tags;
        self.s_ts = ts;
        self.s_series = series;
        result
    }

    fn flush(&mut self, watermark: i64, out: &mut RowWriter) {
        let interval = self.interval;
        for slot in &mut self.slots {
            if slot.buckets.is_empty() {
                continue;
            }
            let agg = self.queries[slot.query as usize].agg;
            let tuple = self.groups.bytes(slot.group);
            let strings = &self.strings;
            slot.buckets.retain(|(start, acc)| {
                if start.saturating_add(interval) > watermark {
                    return true;
                }
                out.row_with(slot.query, *start, acc.value(agg), |g| {
                    for (i, id) in tuple.chunks_exact(4).enumerate() {
                        if i > 0 {
                            g.push(b',');
                        }
                        g.extend_from_slice(strings.bytes(u32::from_le_bytes([id[0], id[1], id[2], id[3]])));
                    }
                });
                false
            });
        }
    }
}

abi::export_kernel!(GenericKernel);
