//! Verified copy of the reader half of `guest-rust/codec/src/payload.rs`.
//!
//! Proved (besides every index and slice being inside the input and no arithmetic
//! overflowing, on 32- and 64-bit `usize` alike):
//! - the position never leaves the input (`inv`, true after every call, failed or not);
//! - every loop is bounded by its input: each count is checked against the bytes left
//!   before its loop runs (`read_count_of(min_bytes)` returns `v` only when
//!   `v * min_bytes <= bytes left`), so the string loop runs at most `len` times, the tag
//!   loop at most `len`, the timestamp loops fewer than `len / 8`, and `series_left`
//!   starts at most `len / 3` and drops by one per series returned;
//! - the (offset, length) entries `read_strings` returns lie inside the input (when it
//!   is at most `u32::MAX` long, as on wasm32), so `string` cannot fail on them;
//! - each series returned consumed at least 3 bytes.
//!
//! Not modelled: the callback `read_timestamps` passes to `svb::decode_with` captures
//! mutable state, which Verus does not support; the copy passes a callback that does
//! nothing (see the `sync-rewrite` lines). The callback reads no input, so the bounds
//! argument is unchanged; what the timestamps decode to is not part of the proof.

use crate::error::{DecodeError, ErrorCode};
use crate::svb;
use crate::varint::{read_uvarint, zigzag_decode, zigzag_decode32};
use vstd::arithmetic::div_mod::{lemma_fundamental_div_mod, lemma_mod_pos_bound};
use vstd::arithmetic::mul::{lemma_mul_inequality, lemma_mul_is_commutative};
use vstd::prelude::*;

verus! {

/// The payload version this reader understands (the first byte of a payload).
pub const PAYLOAD_VERSION: u8 = 1;

/// Timestamp deltas coded as StreamVByte over zigzag32 values.
pub const TS_ENC_SVB: u8 = 0;

/// Timestamp deltas coded as zigzag64 varints.
pub const TS_ENC_VARINT: u8 = 1;

/// Timestamps must lie in [-MAX_ABS_TS, MAX_ABS_TS].
pub const MAX_ABS_TS: i64 = 1 << 62;

proof fn lemma_max_abs_ts()
    ensures
        MAX_ABS_TS == 0x4000_0000_0000_0000i64,
{
    assert(MAX_ABS_TS == 0x4000_0000_0000_0000i64) by (compute);
}

/// `v <= left / d` (what `read_count_of` checks) means `v` items of at least `d` bytes fit.
proof fn lemma_count_fits(v: int, left: int, d: int)
    requires
        1 <= d,
        0 <= left,
        0 <= v <= left / d,
    ensures
        v * d <= left,
        v <= left,
{
    lemma_fundamental_div_mod(left, d);
    lemma_mod_pos_bound(left, d);
    lemma_mul_inequality(v, left / d, d);
    lemma_mul_is_commutative(left / d, d);
    lemma_mul_inequality(1, d, v);
    lemma_mul_is_commutative(v, d);
}

/// The UTF-8 check of the string table: a pure function of its argument.
#[verifier::external_type_specification]
#[verifier::external_body]
pub struct ExUtf8Error(core::str::Utf8Error);

pub assume_specification<'b>[ core::str::from_utf8 ](v: &'b [u8]) -> Result<&'b str, core::str::Utf8Error>;

/// One decoded series.
pub struct SeriesView<'a> {
    pub metric: u32,
    pub tags_start: usize,
    pub tags_end: usize,
    pub ts_start: usize,
    pub ts_end: usize,
    pub values: &'a [u8],
}

/// Step-wise reader over one payload.
pub struct PayloadReader<'a> {
    buf: &'a [u8],
    pos: usize,
    org: u64,
    nstrings: usize,
    series_left: usize,
    strings_read: bool,
}

impl<'a> PayloadReader<'a> {
    /// The position is inside the input (true after every call, failed or not).
    pub closed spec fn inv(&self) -> bool {
        &&& self.pos <= self.buf@.len()
        &&& self.buf@.len() <= usize::MAX
    }

    pub closed spec fn input(&self) -> Seq<u8> {
        self.buf@
    }

    pub closed spec fn position(&self) -> int {
        self.pos as int
    }

    pub closed spec fn series_remaining(&self) -> int {
        self.series_left as int
    }

    pub closed spec fn string_count(&self) -> int {
        self.nstrings as int
    }

    pub closed spec fn strings_done(&self) -> bool {
        self.strings_read
    }

    /// Everything but the position is as in `o`.
    spec fn same_but_pos(&self, o: Self) -> bool {
        &&& self.buf@ == o.buf@
        &&& self.org == o.org
        &&& self.nstrings == o.nstrings
        &&& self.series_left == o.series_left
        &&& self.strings_read == o.strings_read
    }

    /// Reads the version byte and the org.
    // sync: src/payload.rs::new
    pub fn new(buf: &'a [u8]) -> (r: Result<Self, DecodeError>)
        ensures
            r matches Ok(rd) ==> (rd.inv() && rd.input() == buf@ && !rd.strings_done()),
    {
        proof {
            assert(buf@.len() <= usize::MAX) by {
                assert(buf.len() == buf@.len());
            }
        }
        if buf.is_empty() {
            return Err(DecodeError::new(ErrorCode::Empty, 0));
        }
        if buf[0] != PAYLOAD_VERSION {
            return Err(DecodeError::new(ErrorCode::BadVersion, 0));
        }
        let mut pos = 1;
        let org = read_uvarint(buf, &mut pos)?;
        Ok(PayloadReader { buf, pos, org, nstrings: 0, series_left: 0, strings_read: false })
    }

    // sync: src/payload.rs::left
    #[inline]
    fn left(&self) -> (l: usize)
        requires
            self.inv(),
        ensures
            l as int == self.buf@.len() - self.pos,
    {
        self.buf.len() - self.pos
    }

    /// Reads the string table into `out` as `(offset, len)` pairs and the series count.
    // sync: src/payload.rs::read_strings
    pub fn read_strings(&mut self, out: &mut Vec<(u32, u32)>) -> (r: Result<(), DecodeError>)
        requires
            old(self).inv(),
        ensures
            self.inv(),
            self.input() == old(self).input(),
            r is Ok ==> self.strings_done(),
            r is Ok ==> self.string_count() <= self.input().len(),
            r is Ok ==> out@.len() == self.string_count(),
            r is Ok ==> 3 * self.series_remaining() <= self.input().len() - self.position(),
            r is Ok && self.input().len() <= u32::MAX ==> forall|j: int|
                0 <= j < out@.len() ==> (#[trigger] out@[j]).0 + out@[j].1 <= self.input().len(),
    {
        out.clear();
        // Each string takes at least its one-byte length.
        let n = self.read_count_of(1)?;
        out.reserve(n);
        for _ in iter: 0..n
            invariant
                self.inv(),
                self.buf@ == old(self).buf@,
                n <= self.buf@.len(),
                out.len() == iter.index(),
                self.buf@.len() <= u32::MAX ==> forall|j: int|
                    0 <= j < out@.len() ==> (#[trigger] out@[j]).0 + out@[j].1 <= self.buf@.len(),
        {
            let at = self.pos;
            let len = self.read_count_of(1)?;
            let bytes = &self.buf[self.pos..self.pos + len];
            if core::str::from_utf8(bytes).is_err() {
                return Err(DecodeError::new(ErrorCode::BadUtf8, at));
            }
            out.push((self.pos as u32, len as u32));
            self.pos += len;
        }
        self.nstrings = n;
        // Each series takes at least three bytes (metric, ntags, npoints).
        self.series_left = self.read_count_of(3)?;
        self.strings_read = true;
        Ok(())
    }

    /// The bytes of a string-table entry returned by `read_strings`.
    // sync: src/payload.rs::string
    #[inline]
    pub fn string(&self, entry: (u32, u32)) -> (s: &'a [u8])
        requires
            self.inv(),
            self.input().len() <= u32::MAX,
            entry.0 + entry.1 <= self.input().len(),
        ensures
            s@ == self.input().subrange(entry.0 as int, entry.0 + entry.1),
    {
        &self.buf[entry.0 as usize..(entry.0 + entry.1) as usize]
    }

    /// Reads a count of items that each take at least `min_bytes` of the bytes left
    /// after the count itself.
    // sync: src/payload.rs::read_count_of
    #[inline]
    fn read_count_of(&mut self, min_bytes: usize) -> (r: Result<usize, DecodeError>)
        requires
            old(self).inv(),
            1 <= min_bytes,
        ensures
            self.inv(),
            self.same_but_pos(*old(self)),
            old(self).pos <= self.pos,
            r matches Ok(v) ==> (old(self).pos < self.pos && v * min_bytes <= self.buf@.len() - self.pos && v
                <= self.buf@.len() - self.pos),
    {
        let at = self.pos;
        let v = read_uvarint(self.buf, &mut self.pos)?;
        if v > (self.left() / min_bytes) as u64 {
            return Err(DecodeError::new(ErrorCode::CountTooLarge, at));
        }
        proof {
            lemma_count_fits(v as int, self.buf@.len() - self.pos, min_bytes as int);
        }
        Ok(v as usize)
    }

    // sync: src/payload.rs::read_id
    #[inline]
    fn read_id(&mut self) -> (r: Result<u32, DecodeError>)
        requires
            old(self).inv(),
        ensures
            self.inv(),
            self.same_but_pos(*old(self)),
            old(self).pos <= self.pos,
            r is Ok ==> old(self).pos < self.pos,
    {
        let at = self.pos;
        let id = read_uvarint(self.buf, &mut self.pos)?;
        if id >= self.nstrings as u64 {
            return Err(DecodeError::new(ErrorCode::IdOutOfRange, at));
        }
        Ok(id as u32)
    }

    /// Decodes the next series. `Ok(None)` after the last one.
    // sync: src/payload.rs::next_series
    pub fn next_series(&mut self, tags: &mut Vec<u32>, ts: &mut Vec<i64>) -> (r: Result<Option<SeriesView<'a>>, DecodeError>)
        requires
            old(self).inv(),
        ensures
            self.inv(),
            self.input() == old(self).input(),
            r matches Ok(Some(s)) ==> (self.series_remaining() + 1 == old(self).series_remaining() && self.position()
                >= old(self).position() + 3 && s.tags_start <= s.tags_end && s.values@.len() % 8 == 0),
            r matches Ok(None) ==> (self.series_remaining() == 0 && self.position() == self.input().len()),
    {
        if !self.strings_read {
            return Err(DecodeError::new(ErrorCode::Truncated, self.pos));
        }
        if self.series_left == 0 {
            if self.pos != self.buf.len() {
                return Err(DecodeError::new(ErrorCode::TrailingBytes, self.pos));
            }
            return Ok(None);
        }
        self.series_left -= 1;
        let metric = self.read_id()?;
        let ntags = self.read_count_of(1)?;
        let tags_start = tags.len();
        tags.reserve(ntags);
        for _ in iter: 0..ntags
            invariant
                self.inv(),
                self.buf@ == old(self).buf@,
                self.series_left + 1 == old(self).series_left,
                self.pos >= old(self).pos + 2,
                tags_start <= tags@.len(),
        {
            let id = self.read_id()?;
            tags.push(id);
        }
        let tags_end = tags.len();
        // Each point needs at least its 8 value bytes.
        let n = self.read_count_of(8)?;
        let ts_start = ts.len();
        if n > 0 {
            self.read_timestamps(n, ts)?;
        }
        let at = self.pos;
        if self.left() < 8 * n {
            return Err(DecodeError::new(ErrorCode::Truncated, at));
        }
        let values = &self.buf[self.pos..self.pos + 8 * n];
        self.pos += 8 * n;
        Ok(Some(SeriesView { metric, tags_start, tags_end, ts_start, ts_end: ts.len(), values }))
    }

    // sync: src/payload.rs::read_timestamps
    // sync-rewrite-from: |z| { cur = cur.wrapping_add(zigzag_decode32(z) as i64); in_range &= (-MAX_ABS_TS..=MAX_ABS_TS).contains(&cur); ts.push(cur); }
    // sync-rewrite-to: |z| {}
    // sync-rewrite-from: in_range &= (-MAX_ABS_TS..=MAX_ABS_TS).contains(&cur);
    // sync-rewrite-to: in_range = in_range && (-MAX_ABS_TS..=MAX_ABS_TS).contains(&cur);
    fn read_timestamps(&mut self, n: usize, ts: &mut Vec<i64>) -> (r: Result<(), DecodeError>)
        requires
            old(self).inv(),
            1 <= n,
            8 * n <= old(self).buf@.len() - old(self).pos,
        ensures
            self.inv(),
            self.same_but_pos(*old(self)),
            old(self).pos <= self.pos,
            r is Ok ==> old(self).pos < self.pos,
    {
        proof {
            lemma_max_abs_ts();
        }
        let at0 = self.pos;
        let first = zigzag_decode(read_uvarint(self.buf, &mut self.pos)?);
        if !(-MAX_ABS_TS..=MAX_ABS_TS).contains(&first) {
            return Err(DecodeError::new(ErrorCode::TsOutOfRange, at0));
        }
        ts.reserve(n);
        ts.push(first);
        if self.pos >= self.buf.len() {
            return Err(DecodeError::new(ErrorCode::Truncated, self.pos));
        }
        let enc_at = self.pos;
        let enc = self.buf[self.pos];
        self.pos += 1;
        let deltas = n - 1;
        let mut cur = first;
        let mut in_range = true;
        match enc {
            TS_ENC_SVB => {
                let clen = svb::control_len(deltas);
                if self.left() < clen {
                    return Err(DecodeError::new(ErrorCode::Truncated, self.pos));
                }
                let ctrl = &self.buf[self.pos..self.pos + clen];
                let dlen = svb::data_len(ctrl, deltas);
                if self.left() - clen < dlen {
                    return Err(DecodeError::new(ErrorCode::Truncated, self.pos + clen));
                }
                let data = &self.buf[self.pos + clen..self.pos + clen + dlen];
                svb::decode_with(ctrl, data, deltas, |z| {});
                self.pos += clen + dlen;
            }
            TS_ENC_VARINT => {
                for _ in 0..deltas
                    invariant
                        self.inv(),
                        self.same_but_pos(*old(self)),
                        old(self).pos < self.pos,
                {
                    proof {
                        lemma_max_abs_ts();
                    }
                    let d = zigzag_decode(read_uvarint(self.buf, &mut self.pos)?);
                    cur = cur.wrapping_add(d);
                    in_range = in_range && (-MAX_ABS_TS..=MAX_ABS_TS).contains(&cur);
                    ts.push(cur);
                }
            }
            _ => return Err(DecodeError::new(ErrorCode::BadTsEncoding, enc_at)),
        }
        if !in_range {
            return Err(DecodeError::new(ErrorCode::TsOutOfRange, at0));
        }
        Ok(())
    }
}

} // verus!
