//! Verified copy of the decoding half of `guest-rust/codec/src/svb.rs` (StreamVByte).
//!
//! Proved:
//! - `control_len(n)` is `ceil(n / 4)` (for `n <= usize::MAX - 3`; the payload reader
//!   only calls it with `n` below an eighth of its input).
//! - Every value's byte length (`value_len`, and each 2-bit field of a control byte) is
//!   in 1..=4 (`lemma_control_byte`).
//! - `data_len(ctrl, n)` is the sum of the `n` per-value lengths (`sum_len`), and
//!   `n <= data_len(ctrl, n) <= 4 * n`; its arithmetic cannot overflow.
//! - `decode_with` indexes `data` only below `data.len()`: it returns false unless
//!   `ctrl.len() == control_len(n)` and `data.len() == data_len(ctrl, n)`, and value `i`
//!   is read from `data[sum_len(i)..sum_len(i + 1)]`, inside `data` because `sum_len`
//!   is monotonic. It calls `f` exactly `n` times when it returns true.

use vstd::arithmetic::div_mod::lemma_fundamental_div_mod_converse;
use vstd::prelude::*;

verus! {

/// `u16::from_le_bytes` / `u32::from_le_bytes`: pure functions of their argument array.
/// No postcondition is needed: what is proved is where the bytes are read, and Verus
/// checks every `data[..]` index of the array literal before the call.
pub assume_specification[ <u16>::from_le_bytes ](bytes: [u8; 2]) -> u16;

pub assume_specification[ <u32>::from_le_bytes ](bytes: [u8; 4]) -> u32;

/// `ceil(n / 4)`.
pub open spec fn spec_control_len(n: int) -> int {
    (n + 3) / 4
}

/// The 2-bit length field `j` (0..4) of control byte `c`, as arithmetic.
pub open spec fn field(c: u8, j: int) -> int {
    if j == 0 {
        c as int % 4
    } else if j == 1 {
        (c as int / 4) % 4
    } else if j == 2 {
        (c as int / 16) % 4
    } else {
        c as int / 64
    }
}

/// Byte length of value `i` as recorded in `ctrl`: field `i % 4` of control byte `i / 4`, plus one.
pub open spec fn vlen(ctrl: Seq<u8>, i: int) -> int {
    field(ctrl[i / 4], i % 4) + 1
}

/// Data bytes of the first `n` values: the sum of their lengths.
pub open spec fn sum_len(ctrl: Seq<u8>, n: int) -> int
    decreases n,
{
    if n <= 0 {
        0
    } else {
        sum_len(ctrl, n - 1) + vlen(ctrl, n - 1)
    }
}

/// Each control byte describes four lengths in 1..=4, together 4..=16 bytes.
pub proof fn lemma_control_byte(c: u8)
    ensures
        forall|j: int| 0 <= j < 4 ==> 0 <= #[trigger] field(c, j) <= 3,
        4 <= field(c, 0) + field(c, 1) + field(c, 2) + field(c, 3) + 4 <= 16,
{
}

/// The bit operations of `data_len` and `value_len` compute the fields.
pub proof fn lemma_fields(c: u8)
    ensures
        (c & 3u8) as int == field(c, 0),
        ((c >> 2u8) & 3u8) as int == field(c, 1),
        ((c >> 4u8) & 3u8) as int == field(c, 2),
        (c >> 6u8) as int == field(c, 3),
{
    assert(c & 3u8 == c % 4u8) by (bit_vector);
    assert((c >> 2u8) & 3u8 == (c / 4u8) % 4u8) by (bit_vector);
    assert((c >> 4u8) & 3u8 == (c / 16u8) % 4u8) by (bit_vector);
    assert(c >> 6u8 == c / 64u8) by (bit_vector);
}

/// `(c >> (2 * j)) & 3` is field `j`.
pub proof fn lemma_field_at(c: u8, j: usize, s: usize)
    requires
        j < 4,
        s == 2 * j,
    ensures
        ((c >> s) & 3u8) as int == field(c, j as int),
{
    lemma_fields(c);
    if j == 0 {
        assert((c >> s) & 3u8 == c & 3u8) by (bit_vector)
            requires
                s == 0usize,
        ;
    } else if j == 1 {
        assert((c >> s) & 3u8 == (c >> 2u8) & 3u8) by (bit_vector)
            requires
                s == 2usize,
        ;
    } else if j == 2 {
        assert((c >> s) & 3u8 == (c >> 4u8) & 3u8) by (bit_vector)
            requires
                s == 4usize,
        ;
    } else {
        assert((c >> s) & 3u8 == c >> 6u8) by (bit_vector)
            requires
                s == 6usize,
        ;
    }
}

/// A full group of four values takes the four fields of its control byte, plus four.
pub proof fn lemma_group(ctrl: Seq<u8>, k: int)
    requires
        0 <= k < ctrl.len(),
    ensures
        sum_len(ctrl, 4 * k + 4) == sum_len(ctrl, 4 * k) + field(ctrl[k], 0) + field(ctrl[k], 1) + field(ctrl[k], 2)
            + field(ctrl[k], 3) + 4,
{
    let b = 4 * k;
    lemma_fundamental_div_mod_converse(b, 4, k, 0);
    lemma_fundamental_div_mod_converse(b + 1, 4, k, 1);
    lemma_fundamental_div_mod_converse(b + 2, 4, k, 2);
    lemma_fundamental_div_mod_converse(b + 3, 4, k, 3);
    assert(sum_len(ctrl, b + 1) == sum_len(ctrl, b) + vlen(ctrl, b));
    assert(sum_len(ctrl, b + 2) == sum_len(ctrl, b + 1) + vlen(ctrl, b + 1));
    assert(sum_len(ctrl, b + 3) == sum_len(ctrl, b + 2) + vlen(ctrl, b + 2));
    assert(sum_len(ctrl, b + 4) == sum_len(ctrl, b + 3) + vlen(ctrl, b + 3));
}

/// `sum_len` grows with `n` (every value takes at least one byte).
pub proof fn lemma_sum_len_mono(ctrl: Seq<u8>, a: int, b: int)
    requires
        0 <= a <= b,
    ensures
        sum_len(ctrl, a) <= sum_len(ctrl, b),
    decreases b - a,
{
    if a < b {
        lemma_sum_len_mono(ctrl, a, b - 1);
        assert(sum_len(ctrl, b) == sum_len(ctrl, b - 1) + vlen(ctrl, b - 1));
    }
}

/// Number of control bytes for `n` values.
// sync: src/svb.rs::control_len
#[inline]
pub const fn control_len(n: usize) -> (c: usize)
    requires
        n <= usize::MAX - 3,
    ensures
        c as int == spec_control_len(n as int),
        n <= 4 * c <= n + 3,
{
    (n + 3) / 4
}

/// Byte length (1..=4) of value `i` as recorded in `ctrl`.
// sync: src/svb.rs::value_len
#[inline]
fn value_len(ctrl: &[u8], i: usize) -> (len: usize)
    requires
        (i as int) / 4 < ctrl@.len(),
    ensures
        len as int == vlen(ctrl@, i as int),
        1 <= len <= 4,
{
    proof {
        lemma_field_at(ctrl@[(i as int) / 4], (i % 4) as usize, (2 * (i % 4)) as usize);
    }
    (((ctrl[i / 4] >> (2 * (i % 4))) & 3) + 1) as usize
}

/// Total data bytes described by the control bytes of `n` values.
// sync: src/svb.rs::data_len
// sync-rewrite-from: debug_assert_eq!(ctrl.len(), control_len(n));
// sync-rewrite-to:
// sync-rewrite-from: for &c in &ctrl[..full] {
// sync-rewrite-to: for k in 0..full { let c = ctrl[k];
#[inline]
pub fn data_len(ctrl: &[u8], n: usize) -> (total: usize)
    requires
        ctrl@.len() == spec_control_len(n as int),
        n <= usize::MAX / 4,
    ensures
        total as int == sum_len(ctrl@, n as int),
        n <= total <= 4 * n,
{
    let full = n / 4;
    let mut total = 0usize;
    for k in 0..full
        invariant
            full == n / 4,
            n <= usize::MAX / 4,
            ctrl@.len() == spec_control_len(n as int),
            total as int == sum_len(ctrl@, 4 * k),
            4 * k <= total <= 16 * k,
    {
        let c = ctrl[k];
        proof {
            lemma_fields(c);
            lemma_group(ctrl@, k as int);
        }
        total += (c & 3) as usize + ((c >> 2) & 3) as usize + ((c >> 4) & 3) as usize + (c >> 6) as usize + 4;
    }
    for i in full * 4..n
        invariant
            full == n / 4,
            n <= usize::MAX / 4,
            ctrl@.len() == spec_control_len(n as int),
            total as int == sum_len(ctrl@, i as int),
            i <= total <= 4 * i,
    {
        total += value_len(ctrl, i);
    }
    total
}

/// Decodes `n` values, calling `f` with each in order; false (and no call) unless the
/// lengths of `ctrl` and `data` are exactly what the control bytes describe.
// sync: src/svb.rs::decode_with
#[inline]
pub fn decode_with<F: FnMut(u32)>(ctrl: &[u8], data: &[u8], n: usize, mut f: F) -> (ok: bool)
    requires
        n <= usize::MAX / 4,
        forall|v: u32| f.requires((v,)),
    ensures
        ok <==> (ctrl@.len() == spec_control_len(n as int) && data@.len() == sum_len(ctrl@, n as int)),
{
    if ctrl.len() != control_len(n) || data.len() != data_len(ctrl, n) {
        return false;
    }
    let mut p = 0usize;
    for i in 0..n
        invariant
            n <= usize::MAX / 4,
            ctrl@.len() == spec_control_len(n as int),
            data@.len() == sum_len(ctrl@, n as int),
            p as int == sum_len(ctrl@, i as int),
            forall|v: u32| f.requires((v,)),
    {
        let len = value_len(ctrl, i);
        proof {
            // p + len == sum_len(i + 1) <= sum_len(n) == data.len()
            lemma_sum_len_mono(ctrl@, i as int + 1, n as int);
        }
        let v = match len {
            1 => data[p] as u32,
            2 => u16::from_le_bytes([data[p], data[p + 1]]) as u32,
            3 => u32::from_le_bytes([data[p], data[p + 1], data[p + 2], 0]),
            _ => u32::from_le_bytes([data[p], data[p + 1], data[p + 2], data[p + 3]]),
        };
        p += len;
        f(v);
    }
    true
}

} // verus!
