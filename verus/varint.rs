//! Verified copy of the decoding half of `guest-rust/codec/src/varint.rs`.
//!
//! Proved:
//! - `read_uvarint` indexes `buf` only below `buf.len()` (every `buf[i]` is a checked
//!   index; Verus proves each in bounds), loops at most 10 times (`decreases 63 - shift`),
//!   never shifts by 64 or more, and on `Ok(v)` has consumed one complete varint
//!   (`is_varint`: 1..=10 bytes inside `buf`, continuation bits as LEB128 says, a tenth
//!   byte of 0 or 1) whose mathematical LEB128 value (`leb`, an unbounded integer) is
//!   exactly `v`: no bit is lost, i.e. the u64 never overflows. On `Err` the position is
//!   unchanged.
//! - `read_count` additionally returns at most `limit`.
//! - `zigzag_decode` / `zigzag_decode32` cannot overflow (the negation is of 0 or 1).

use crate::error::{DecodeError, ErrorCode};
use vstd::arithmetic::mul::lemma_mul_inequality;
use vstd::arithmetic::power2::{
    lemma2_to64, lemma2_to64_rest, lemma_pow2_adds, lemma_pow2_pos, lemma_pow2_strictly_increases, pow2,
};
use vstd::bits::{lemma_u64_pow2_no_overflow, lemma_u64_shl_is_mul};
use vstd::prelude::*;

verus! {

/// The longest encoding of a u64.
pub const MAX_VARINT_LEN: usize = 10;

/// The LEB128 value of the `k` bytes at `s[start..start + k]`, as an unbounded integer:
/// the sum of `(s[start + j] mod 128) * 2^(7j)`.
pub open spec fn leb(s: Seq<u8>, start: int, k: nat) -> int
    decreases k,
{
    if k == 0 {
        0
    } else {
        leb(s, start, (k - 1) as nat) + ((s[start + k - 1] % 128) as int) * (pow2((7 * (k - 1)) as nat) as int)
    }
}

/// `s[start..start + k]` is one complete varint as the codec accepts it: inside `s`, at
/// most 10 bytes, the continuation bit set on every byte but the last, and a tenth byte
/// (which carries bit 63 only) of 0 or 1.
pub open spec fn is_varint(s: Seq<u8>, start: int, k: int) -> bool {
    &&& 1 <= k <= MAX_VARINT_LEN
    &&& 0 <= start
    &&& start + k <= s.len()
    &&& forall|j: int| 0 <= j < k - 1 ==> s[start + j] >= 128
    &&& s[start + k - 1] < 128
    &&& k == MAX_VARINT_LEN ==> s[start + k - 1] <= 1
}

/// `leb` of `k` bytes is below `2^(7k)`.
pub proof fn lemma_leb_bound(s: Seq<u8>, start: int, k: nat)
    ensures
        0 <= leb(s, start, k) < pow2((7 * k) as nat),
    decreases k,
{
    lemma2_to64();
    if k > 0 {
        let e = (7 * (k - 1)) as nat;
        let d = (s[start + k - 1] % 128) as int;
        let p = pow2(e) as int;
        lemma_leb_bound(s, start, (k - 1) as nat);
        lemma_pow2_pos(e);
        lemma_pow2_adds(e, 7);
        lemma_mul_inequality(0, d, p);
        lemma_mul_inequality(d, 127, p);
        assert(e + 7 == 7 * k);
        assert(pow2(e) * pow2(7) == pow2(e) * 128);
    }
}

/// OR-ing bits shifted above `a`'s highest set bit is adding them.
pub proof fn lemma_or_shifted_is_add(a: u64, d: u64, s: u64)
    by (bit_vector)
    requires
        s < 64,
        a < (1u64 << s),
    ensures
        a | (d << s) == a + (d << s),
{
}

/// One turn of `read_uvarint`'s loop before the tenth byte: OR-ing the byte's low 7 bits
/// in at `shift` adds them at weight `2^shift`, and the value stays below `2^(shift + 7)`.
pub proof fn lemma_step(s: Seq<u8>, start: int, k: nat, shift: u32, result: u64, byte: u8)
    requires
        k <= 8,
        shift == 7 * k,
        0 <= start,
        start + k < s.len(),
        s[start + k] == byte,
        result as int == leb(s, start, k),
    ensures
        (result | (((byte & 0x7f) as u64) << shift)) as int == leb(s, start, (k + 1) as nat),
{
    let s64 = shift as u64;
    let d = (byte & 0x7f) as u64;
    assert(byte & 0x7f == byte % 128) by (bit_vector);
    assert((byte & 0x7f) < 128) by (bit_vector);
    lemma2_to64();
    lemma2_to64_rest();
    lemma_leb_bound(s, start, k);
    lemma_u64_pow2_no_overflow(shift as nat);
    lemma_pow2_pos(shift as nat);
    // 1 << shift == 2^shift, so `result < 1 << shift`.
    lemma_u64_shl_is_mul(1u64, s64);
    // d << shift == d * 2^shift: d < 128 and 2^shift <= 2^56, so no bit is shifted out.
    if shift < 56 {
        lemma_pow2_strictly_increases(shift as nat, 56);
    }
    lemma_mul_inequality(d as int, 127, pow2(shift as nat) as int);
    lemma_u64_shl_is_mul(d, s64);
    lemma_or_shifted_is_add(result, d, s64);
    assert((7 * (k + 1 - 1)) as nat == shift as nat);
}

/// The tenth byte (0 or 1) lands on bit 63 and completes the value.
pub proof fn lemma_last(s: Seq<u8>, start: int, result: u64, byte: u8)
    requires
        0 <= start,
        start + 9 < s.len(),
        s[start + 9] == byte,
        byte <= 1,
        result as int == leb(s, start, 9),
    ensures
        (result | ((byte as u64) << 63u64)) as int == leb(s, start, 10),
{
    lemma2_to64();
    lemma2_to64_rest();
    lemma_leb_bound(s, start, 9);
    lemma_u64_shl_is_mul(1u64, 63u64);
    lemma_mul_inequality(byte as int, 1, pow2(63) as int);
    lemma_u64_shl_is_mul(byte as u64, 63u64);
    lemma_or_shifted_is_add(result, byte as u64, 63u64);
    assert(byte % 128 == byte);
}

pub broadcast proof fn lemma_and1_u64(v: u64)
    ensures
        #[trigger] (v & 1) <= 1,
{
    assert(v & 1 <= 1) by (bit_vector);
}

pub broadcast proof fn lemma_and1_u32(v: u32)
    ensures
        #[trigger] (v & 1) <= 1,
{
    assert(v & 1 <= 1) by (bit_vector);
}

broadcast use lemma_and1_u64, lemma_and1_u32;

/// Reads an unsigned LEB128 varint at `*pos`, advancing `*pos` past it.
// sync: src/varint.rs::read_uvarint
#[inline]
pub fn read_uvarint(buf: &[u8], pos: &mut usize) -> (r: Result<u64, DecodeError>)
    ensures
        *old(pos) <= *pos,
        r is Err ==> *pos == *old(pos),
        r matches Ok(v) ==> (is_varint(buf@, *old(pos) as int, *pos - *old(pos)) && v as int == leb(
            buf@,
            *old(pos) as int,
            (*pos - *old(pos)) as nat,
        )),
{
    let start = *pos;
    let mut result: u64 = 0;
    let mut shift: u32 = 0;
    let mut i = start;
    loop
        invariant
            start == *old(pos),
            *pos == start,
            shift <= 63,
            shift % 7 == 0,
            i == start + shift / 7,
            forall|j: int| start <= j < i ==> buf@[j] >= 128,
            result as int == leb(buf@, start as int, (i - start) as nat),
        decreases 63 - shift,
    {
        if i >= buf.len() {
            return Err(DecodeError::new(ErrorCode::Truncated, i));
        }
        let byte = buf[i];
        i += 1;
        if shift == 63 {
            // 10th byte: only the lowest bit fits, and it must end the varint.
            if byte > 1 {
                return Err(DecodeError::new(ErrorCode::BadVarint, start));
            }
            proof {
                lemma_last(buf@, start as int, result, byte);
            }
            result |= (byte as u64) << 63;
            *pos = i;
            return Ok(result);
        }
        proof {
            lemma_step(buf@, start as int, (i - 1 - start) as nat, shift, result, byte);
            assert(byte & 0x80 == 0 <==> byte < 128) by (bit_vector);
        }
        result |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            *pos = i;
            return Ok(result);
        }
        shift += 7;
    }
}

/// Reads a varint that must fit in a `usize` count no larger than `limit`.
// sync: src/varint.rs::read_count
#[inline]
pub fn read_count(buf: &[u8], pos: &mut usize, limit: usize) -> (r: Result<usize, DecodeError>)
    ensures
        *old(pos) <= *pos,
        r matches Ok(v) ==> (v <= limit && is_varint(buf@, *old(pos) as int, *pos - *old(pos)) && v as int
            == leb(buf@, *old(pos) as int, (*pos - *old(pos)) as nat)),
{
    let at = *pos;
    let v = read_uvarint(buf, pos)?;
    if v > limit as u64 {
        return Err(DecodeError::new(ErrorCode::CountTooLarge, at));
    }
    Ok(v as usize)
}

/// Inverse of `zigzag_encode`. (`v & 1` is 0 or 1 by `lemma_and1_u64`, so its negation
/// cannot overflow.)
// sync: src/varint.rs::zigzag_decode
#[inline]
pub const fn zigzag_decode(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Inverse of `zigzag_encode32`.
// sync: src/varint.rs::zigzag_decode32
#[inline]
pub const fn zigzag_decode32(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

} // verus!
