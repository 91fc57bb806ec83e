//! Small open-addressing hash tables shared by the generic and the specialized kernels
//! (an evolved kernel may use them or bring its own). Linear probing, power-of-two
//! capacity, grown at 1/2 load; ids are dense u32s.
#![no_std]

extern crate alloc;

pub mod groups;

use alloc::vec;
use alloc::vec::Vec;

/// Fx-style multiplicative hash over 8-byte words.
#[inline]
pub fn hash_bytes(s: &[u8]) -> u64 {
    hash_seeded(s, 0)
}

/// [`hash_bytes`] with a seed: specialized kernels pick one under which their literals
/// do not collide (`actors/specialize.py::phash` mirrors this function bit for bit).
#[inline]
pub fn hash_seeded(s: &[u8], seed: u64) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = (s.len() as u64) ^ seed;
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

#[inline]
pub fn hash_u64(k: u64) -> u64 {
    let h = k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 32)
}

/// Interns byte strings as dense ids `0, 1, 2, ...`.
pub struct Interner {
    slots: Vec<u32>, // id + 1; 0 = empty
    hashes: Vec<u64>,
    spans: Vec<(u32, u32)>,
    bytes: Vec<u8>,
}

impl Default for Interner {
    fn default() -> Self {
        Self::new()
    }
}

impl Interner {
    pub fn new() -> Self {
        Interner { slots: vec![0; 64], hashes: Vec::new(), spans: Vec::new(), bytes: Vec::new() }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    #[inline]
    pub fn bytes(&self, id: u32) -> &[u8] {
        let (o, l) = self.spans[id as usize];
        &self.bytes[o as usize..(o + l) as usize]
    }

    /// Probes for `s` (of hash `h`): its id, or the empty slot where it would go.
    #[inline]
    fn find(&self, s: &[u8], h: u64) -> Result<u32, usize> {
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return Err(i);
            }
            let id = slot - 1;
            if self.hashes[id as usize] == h && self.bytes(id) == s {
                return Ok(id);
            }
            i = (i + 1) & mask;
        }
    }

    /// The id of `s`, if interned.
    pub fn get(&self, s: &[u8]) -> Option<u32> {
        self.find(s, hash_bytes(s)).ok()
    }

    /// The id of `s`, interning it if new; the flag says whether it was new.
    pub fn intern(&mut self, s: &[u8]) -> (u32, bool) {
        let h = hash_bytes(s);
        let i = match self.find(s, h) {
            Ok(id) => return (id, false),
            Err(i) => i,
        };
        let id = self.spans.len() as u32;
        self.spans.push((self.bytes.len() as u32, s.len() as u32));
        self.bytes.extend_from_slice(s);
        self.hashes.push(h);
        self.slots[i] = id + 1;
        if 2 * self.spans.len() > self.slots.len() {
            self.grow();
        }
        (id, true)
    }

    fn grow(&mut self) {
        let cap = self.slots.len() * 2;
        let mask = cap - 1;
        let mut slots = vec![0u32; cap];
        for (id, h) in self.hashes.iter().enumerate() {
            let mut i = *h as usize & mask;
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = id as u32 + 1;
        }
        self.slots = slots;
    }
}

/// Maps u64 keys to u32 values.
pub struct U64Map {
    keys: Vec<u64>,
    vals: Vec<u32>, // value + 1; 0 = empty
    len: usize,
}

impl Default for U64Map {
    fn default() -> Self {
        Self::new()
    }
}

impl U64Map {
    pub fn new() -> Self {
        U64Map { keys: vec![0; 64], vals: vec![0; 64], len: 0 }
    }

    /// The value for `k`, inserting `make()` if absent.
    #[inline]
    pub fn get_or_insert_with<F: FnOnce() -> u32>(&mut self, k: u64, make: F) -> u32 {
        let mask = self.keys.len() - 1;
        let mut i = hash_u64(k) as usize & mask;
        loop {
            let v = self.vals[i];
            if v == 0 {
                break;
            }
            if self.keys[i] == k {
                return v - 1;
            }
            i = (i + 1) & mask;
        }
        let v = make();
        self.keys[i] = k;
        self.vals[i] = v + 1;
        self.len += 1;
        if 2 * self.len > self.keys.len() {
            self.grow();
        }
        v
    }

    fn grow(&mut self) {
        let cap = self.keys.len() * 2;
        let mask = cap - 1;
        let mut keys = vec![0u64; cap];
        let mut vals = vec![0u32; cap];
        for (k, v) in self.keys.iter().zip(&self.vals) {
            if *v != 0 {
                let mut i = hash_u64(*k) as usize & mask;
                while vals[i] != 0 {
                    i = (i + 1) & mask;
                }
                keys[i] = *k;
                vals[i] = *v;
            }
        }
        self.keys = keys;
        self.vals = vals;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::format;

    #[test]
    fn interner_dedupes_and_grows() {
        let mut t = Interner::new();
        for i in 0..1000 {
            let s = format!("tag:{i}");
            assert_eq!(t.intern(s.as_bytes()), (i, true));
        }
        for i in 0..1000u32 {
            let s = format!("tag:{i}");
            assert_eq!(t.intern(s.as_bytes()), (i, false));
            assert_eq!(t.get(s.as_bytes()), Some(i));
            assert_eq!(t.bytes(i), s.as_bytes());
        }
        assert_eq!(t.get(b"nope"), None);
        assert_eq!(t.intern(b"").0, 1000);
    }

    #[test]
    fn u64map() {
        let mut m = U64Map::new();
        for k in 0..5000u64 {
            assert_eq!(m.get_or_insert_with(k * 7919, || k as u32), k as u32);
        }
        for k in 0..5000u64 {
            assert_eq!(m.get_or_insert_with(k * 7919, || unreachable!()), k as u32);
        }
    }
}
