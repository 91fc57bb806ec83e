//! The view's groups: which (query, group) slot a combination of group values lands in,
//! and the slots' open buckets. Shared by the generic and the specialized kernels (an
//! evolved kernel may use it or keep its own).
//!
//! A group is identified by its text (`k1:v1,k2:v2`), as users see it: two
//! combinations that render to the same text are the same group. Slots whose buckets
//! have all been flushed are compacted away once they outnumber the live ones, with the
//! values and combinations only they used, so state stays bounded by what is open.
use alloc::vec::Vec;
use crate::{Interner, U64Map};

const NONE: u32 = u32::MAX;
/// Compaction runs when at least this many slots are dead (and they outnumber the live).
const COMPACT_MIN_DEAD: usize = 4096;

/// The open buckets of one (query, group), sorted by start.
pub struct Slot<A> {
    pub query: u32,
    pub group: u32,
    pub buckets: Vec<(i64, A)>,
}

pub struct Groups<A> {
    /// The `key:N/A` texts, interned first (ids 0..) and kept by compaction.
    missing: Vec<Vec<u8>>,
    values: Interner,
    combos: Interner,
    combo_slot: Vec<u32>,
    groups: Interner,
    slot_of: U64Map,
    pub slots: Vec<Slot<A>>,
    text: Vec<u8>,
    /// Per query without group-by keys: its one slot (a cache, emptied by compaction).
    direct: Vec<u32>,
    /// Compactions so far: slot numbers from an older epoch are stale.
    epoch: u64,
}

impl<A> Groups<A> {
    /// `missing` are the `key:N/A` texts: their value ids are their indices.
    pub fn new(missing: Vec<Vec<u8>>) -> Self {
        let mut values = Interner::new();
        for na in &missing {
            values.intern(na);
        }
        Groups {
            missing,
            values,
            combos: Interner::new(),
            combo_slot: Vec::new(),
            groups: Interner::new(),
            slot_of: U64Map::new(),
            slots: Vec::new(),
            text: Vec::new(),
            direct: Vec::new(),
            epoch: 0,
        }
    }

    /// Id of a group value (a `key:value` tag text).
    #[inline]
    pub fn value(&mut self, text: &[u8]) -> u32 {
        self.values.intern(text).0
    }

    /// Changes whenever slots are renumbered (compaction): a caller caching slot numbers
    /// must drop them when this moves.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The text of a group.
    pub fn text(&self, group: u32) -> &[u8] {
        self.groups.bytes(group)
    }

    /// The slot of a combination: `tuple` is the query (u32 LE) then its value ids (u32 LE).
    #[inline]
    pub fn slot(&mut self, tuple: &[u8]) -> u32 {
        let (cid, new) = self.combos.intern(tuple);
        if new {
            let s = self.slot_for_new(tuple);
            self.combo_slot.push(s);
        }
        self.combo_slot[cid as usize]
    }

    /// The slot of query `q` when it has no group-by keys (its only group is ""):
    /// an array lookup instead of hashing the combination.
    #[inline]
    pub fn slot_of_query(&mut self, q: u32) -> u32 {
        if let Some(&s) = self.direct.get(q as usize) {
            if s != NONE {
                return s;
            }
        }
        let s = self.slot(&q.to_le_bytes());
        if self.direct.len() <= q as usize {
            self.direct.resize(q as usize + 1, NONE);
        }
        self.direct[q as usize] = s;
        s
    }

    fn slot_for_new(&mut self, tuple: &[u8]) -> u32 {
        let q = u32::from_le_bytes([tuple[0], tuple[1], tuple[2], tuple[3]]);
        self.text.clear();
        for (j, id) in tuple[4..].chunks_exact(4).enumerate() {
            if j > 0 {
                self.text.push(b',');
            }
            self.text.extend_from_slice(self.values.bytes(u32::from_le_bytes([id[0], id[1], id[2], id[3]])));
        }
        let gid = self.groups.intern(&self.text).0;
        let slots = &mut self.slots;
        self.slot_of.get_or_insert_with(((q as u64) << 32) | gid as u64, || {
            slots.push(Slot { query: q, group: gid, buckets: Vec::new() });
            (slots.len() - 1) as u32
        })
    }

    /// Bytes that `drain` will hand out: the group texts of the buckets `closed` selects,
    /// at `per_row` bytes each plus the text.
    pub fn drain_len<C: Fn(&(i64, A)) -> bool>(&self, closed: C, per_row: impl Fn(usize) -> usize) -> usize {
        self.slots.iter().map(|s| s.buckets.partition_point(&closed) * per_row(self.groups.bytes(s.group).len())).sum()
    }

    /// Removes every bucket `closed` selects (a prefix of each slot: buckets are sorted by
    /// start) and hands it to `emit(query, group text, start, accumulator)`; then compacts
    /// when enough slots are dead.
    pub fn drain<C: Fn(&(i64, A)) -> bool, E: FnMut(u32, &[u8], i64, A)>(&mut self, closed: C, mut emit: E) {
        for slot in &mut self.slots {
            let n = slot.buckets.partition_point(&closed);
            let text = self.groups.bytes(slot.group);
            for (start, acc) in slot.buckets.drain(..n) {
                emit(slot.query, text, start, acc);
            }
        }
        self.maybe_compact();
    }

    fn maybe_compact(&mut self) {
        let dead = self.slots.iter().filter(|s| s.buckets.is_empty()).count();
        if dead >= COMPACT_MIN_DEAD && dead > self.slots.len() - dead {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let mut remap = Vec::with_capacity(self.slots.len());
        let mut groups = Interner::new();
        let mut slot_of = U64Map::new();
        let mut slots = Vec::new();
        for old in core::mem::take(&mut self.slots) {
            if old.buckets.is_empty() {
                remap.push(NONE);
                continue;
            }
            let gid = groups.intern(self.groups.bytes(old.group)).0;
            let si = slots.len() as u32;
            remap.push(si);
            slot_of.get_or_insert_with(((old.query as u64) << 32) | gid as u64, || si);
            slots.push(Slot { query: old.query, group: gid, buckets: old.buckets });
        }
        let mut values = Interner::new();
        for na in &self.missing {
            values.intern(na);
        }
        let mut combos = Interner::new();
        let mut combo_slot = Vec::new();
        let mut tuple = Vec::new();
        for cid in 0..self.combos.len() as u32 {
            let slot = remap[self.combo_slot[cid as usize] as usize];
            if slot == NONE {
                continue;
            }
            let old = self.combos.bytes(cid);
            tuple.clear();
            tuple.extend_from_slice(&old[..4]);
            for id in old[4..].chunks_exact(4) {
                let v = values.intern(self.values.bytes(u32::from_le_bytes([id[0], id[1], id[2], id[3]]))).0;
                tuple.extend_from_slice(&v.to_le_bytes());
            }
            combos.intern(&tuple);
            combo_slot.push(slot);
        }
        self.values = values;
        self.combos = combos;
        self.combo_slot = combo_slot;
        self.groups = groups;
        self.slot_of = slot_of;
        self.slots = slots;
        self.direct.clear();
        self.epoch += 1;
    }
}
