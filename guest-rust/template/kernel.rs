//! The specialized kernel: one tenant's queries, known at compile time (`spec.rs`).
//! This is the file evolution rewrites; its semantics must stay those of the generic
//! kernel (README, query language; `actors/oracle.py` is the literal reference).
//!
//! What knowing the tenant buys over the generic kernel:
//! - a message string is classified by one perfect-hash probe against the tenant's
//!   literals (metrics, exact filter tags); the key part is looked up only when the
//!   tenant has group-by or prefix terms;
//! - a filter is a bitset test: each string carries the filter atoms it satisfies, a
//!   series ORs those of its tags, a query is `present & POS == POS && present & NEG == 0`;
//! - a query without group-by has one slot, found by index; a series' group-by values
//!   are collected once for all queries, not per query;
//! - an accumulator updates only what its query's aggregate needs.
use crate::spec::{self, Agg, NATOMS, NK, W};
use abi::message::{Decoded, SeriesRec};
use abi::{DecodeError, MessageStats, RowWriter};
use alloc::vec::Vec;
use tables::groups::Groups;

const NONE: u32 = u32::MAX;
const NONE16: u16 = u16::MAX;

#[derive(Clone, Copy)]
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
}

/// What the kernel knows about one string of the message being applied.
#[derive(Clone, Copy)]
struct Local {
    /// Metric index (spec) when the string is a queried metric.
    metric: u16,
    /// Key index (spec::KEYS) of the part before the first ':'.
    key: u16,
    /// Id in `values` once used as a group value.
    value: u32,
}

pub struct SpecializedKernel {
    flushed_to: i64,
    /// Group values (`key:N/A` of key k has id k), combinations, texts, slots.
    groups: Groups<Acc>,
    /// The message being applied, decoded.
    s_msg: Decoded,
    s_local: Vec<Local>,
    s_bits: Vec<[u64; W]>,
    s_points: Vec<(i64, f64)>,
    /// Per key: the series' first value, and whether it has more than one.
    s_kv: Vec<u32>,
    s_values: Vec<u32>,
    s_ranges: Vec<(u32, u32)>,
    s_odometer: Vec<u32>,
    s_tuple: Vec<u8>,
    s_slots: Vec<u32>,
}

impl SpecializedKernel {
    fn new() -> Self {
        SpecializedKernel {
            flushed_to: i64::MIN,
            groups: Groups::new(spec::MISSING_TEXT.iter().map(|t| t.to_vec()).collect()),
            s_msg: Decoded::default(),
            s_local: Vec::new(),
            s_bits: Vec::new(),
            s_points: Vec::new(),
            s_kv: Vec::new(),
            s_values: Vec::new(),
            s_ranges: Vec::new(),
            s_odometer: Vec::new(),
            s_tuple: Vec::new(),
            s_slots: Vec::new(),
        }
    }

    /// Fills `s_slots` with the slots of every group the series lands in for query `q`.
    fn group_slots(&mut self, q: usize, tags: &[u32], local: &[Local]) {
        self.s_slots.clear();
        let by = spec::BY[q];
        self.s_values.clear();
        self.s_ranges.clear();
        for &k in by {
            let start = self.s_values.len();
            let first = self.s_kv[2 * k as usize];
            if first == NONE {
                self.s_values.push(k as u32);
            } else if self.s_kv[2 * k as usize + 1] == 0 {
                self.s_values.push(first);
            } else {
                // Several values for this key: distinct ones, in tag order.
                for &t in tags {
                    let l = local[t as usize];
                    if l.key == k && !self.s_values[start..].contains(&l.value) {
                        self.s_values.push(l.value);
                    }
                }
            }
            self.s_ranges.push((start as u32, self.s_values.len() as u32));
        }
        self.s_odometer.clear();
        self.s_odometer.extend(self.s_ranges.iter().map(|r| r.0));
        loop {
            self.s_tuple.clear();
            self.s_tuple.extend_from_slice(&(q as u32).to_le_bytes());
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

    /// Phase 2: aggregates a decoded, valid message.
    fn apply(&mut self, payload: &[u8], strings: &[(u32, u32)], tags: &[u32], ts: &[i64], series: &[SeriesRec]) -> MessageStats {
        let mut local = core::mem::take(&mut self.s_local);
        let mut bits = core::mem::take(&mut self.s_bits);
        local.clear();
        bits.clear();
        for &(o, l) in strings {
            let s = &payload[o as usize..(o + l) as usize];
            let mut b = [0u64; W];
            let lit = spec::literal(s);
            let metric = if lit == NONE16 { NONE16 } else { spec::LIT_METRIC[lit as usize] };
            if NATOMS > 0 && lit != NONE16 {
                let a = spec::LIT_ATOM[lit as usize];
                if a != NONE16 {
                    b[a as usize / 64] |= 1 << (a % 64);
                }
            }
            let mut key = NONE16;
            if NK > 0 {
                if let Some(p) = s.iter().position(|&c| c == b':') {
                    key = spec::key(&s[..p]);
                    if key != NONE16 {
                        for &(prefix, a) in spec::KEY_PREFIXES[key as usize] {
                            if s[p + 1..].starts_with(prefix) {
                                b[a as usize / 64] |= 1 << (a % 64);
                            }
                        }
                    }
                }
            }
            local.push(Local { metric, key, value: NONE });
            bits.push(b);
        }
        let mut stats = MessageStats::default();
        let mut points = core::mem::take(&mut self.s_points);
        let interval = spec::INTERVAL;
        for s in series {
            let ts = &ts[s.ts.0 as usize..s.ts.1 as usize];
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
            let m = local[s.metric as usize].metric;
            if m == NONE16 || points.is_empty() {
                continue;
            }
            let tags = &tags[s.tags.0 as usize..s.tags.1 as usize];
            let mut present = [0u64; W];
            if NATOMS > 0 {
                for &t in tags {
                    for w in 0..W {
                        present[w] |= bits[t as usize][w];
                    }
                }
            }
            let mut kv_done = false;
            for &q in spec::METRIC_QUERIES[m as usize] {
                let q = q as usize;
                if NATOMS > 0 && !(0..W).all(|w| present[w] & spec::POS[q][w] == spec::POS[q][w] && present[w] & spec::NEG[q][w] == 0) {
                    continue;
                }
                if spec::BY[q].is_empty() {
                    let slot = self.groups.slot_of_query(q as u32) as usize;
                    aggregate(&mut self.groups.slots[slot].buckets, &points, spec::AGG[q]);
                    continue;
                }
                if !kv_done {
                    self.series_values(tags, &mut local, payload, strings);
                    kv_done = true;
                }
                self.group_slots(q, tags, &local);
                let agg = spec::AGG[q];
                for i in 0..self.s_slots.len() {
                    let slot = self.s_slots[i] as usize;
                    aggregate(&mut self.groups.slots[slot].buckets, &points, agg);
                }
            }
        }
        self.s_points = points;
        self.s_local = local;
        self.s_bits = bits;
        stats
    }

    /// Per key (spec::KEYS): the series' first value id, and whether it has others.
    fn series_values(&mut self, tags: &[u32], local: &mut [Local], payload: &[u8], strings: &[(u32, u32)]) {
        self.s_kv.clear();
        self.s_kv.resize(2 * NK, 0);
        for k in 0..NK {
            self.s_kv[2 * k] = NONE;
        }
        for &t in tags {
            let l = &mut local[t as usize];
            if l.key == NONE16 || !spec::KEY_IS_BY[l.key as usize] {
                continue;
            }
            if l.value == NONE {
                let (o, n) = strings[t as usize];
                l.value = self.groups.value(&payload[o as usize..(o + n) as usize]);
            }
            let k = 2 * l.key as usize;
            if self.s_kv[k] == NONE {
                self.s_kv[k] = l.value;
            } else if self.s_kv[k] != l.value {
                self.s_kv[k + 1] = 1;
            }
        }
    }
}

/// Adds a series' finite points, `(bucket start, value)` in arrival order, to one slot,
/// updating only what `agg` reads.
#[inline]
fn aggregate(buckets: &mut Vec<(i64, Acc)>, points: &[(i64, f64)], agg: Agg) {
    match agg {
        Agg::Sum => fold(buckets, points, |a, v| a.sum += v),
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
        }),
    }
}

#[inline(always)]
fn fold<F: Fn(&mut Acc, f64)>(buckets: &mut Vec<(i64, Acc)>, points: &[(i64, f64)], f: F) {
    let mut cur_start = 0i64;
    let mut cur = usize::MAX;
    for &(start, v) in points {
        if cur == usize::MAX || start != cur_start {
            cur_start = start;
            cur = bucket_index(buckets, start);
        }
        f(&mut buckets[cur].1, v);
    }
}

/// Index of the bucket starting at `start` in the sorted `buckets`, opening it if new.
#[inline]
fn bucket_index(buckets: &mut Vec<(i64, Acc)>, start: i64) -> usize {
    let n = buckets.len();
    match buckets.last() {
        Some((s, _)) if *s == start => return n - 1,
        Some((s, _)) if *s > start => {}
        _ => {
            buckets.push((start, Acc::EMPTY));
            return n;
        }
    }
    // Series move forward in time but start behind the newest bucket: look among the
    // last few before searching (a binary search misses the cache at every probe).
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

impl abi::Kernel for SpecializedKernel {
    fn init(config: &[u8]) -> Result<Self, ()> {
        // Built for one configuration: refuse any other.
        if config != spec::CONFIG {
            return Err(());
        }
        Ok(Self::new())
    }

    fn process_message(&mut self, payload: &[u8]) -> Result<MessageStats, DecodeError> {
        // Phase 1: decode and validate the whole message; nothing changes on error.
        let mut m = core::mem::take(&mut self.s_msg);
        let result = m.decode(payload, spec::ORG).map(|()| self.apply(payload, &m.strings, &m.tags, &m.ts, &m.series));
        self.s_msg = m;
        result
    }

    fn flush(&mut self, watermark: i64, out: &mut RowWriter) {
        let interval = spec::INTERVAL;
        self.flushed_to = self.flushed_to.max(watermark);
        let closed = |b: &(i64, Acc)| b.0.saturating_add(interval) <= watermark;
        out.reserve(self.groups.drain_len(closed, RowWriter::row_len));
        self.groups.drain(closed, |q, text, start, acc| out.row_with(q, start, acc.value(spec::AGG[q as usize]), |g| g.extend_from_slice(text)));
    }
}
