//! StreamVByte (Lemire, Kurz, Rupp 2017), scalar form: `n` u32 values stored as
//! `ceil(n/4)` control bytes followed by the data bytes. Control byte `i/4` holds,
//! in bits `2*(i%4)..2*(i%4)+2`, the byte length minus one (1..=4) of value `i`;
//! each value is stored little-endian in that many bytes.
//!
//! Decoding first derives the data length from the control bytes and checks it
//! against the buffer once, so the value loop needs no per-byte bounds reasoning.

use alloc::vec::Vec;

/// Number of control bytes for `n` values.
#[inline]
pub const fn control_len(n: usize) -> usize {
    (n + 3) / 4
}

/// Byte length (1..=4) of value `i` as recorded in `ctrl`.
#[inline]
fn value_len(ctrl: &[u8], i: usize) -> usize {
    (((ctrl[i / 4] >> (2 * (i % 4))) & 3) + 1) as usize
}

/// Total data bytes described by the control bytes of `n` values; `ctrl.len()`
/// must be `control_len(n)`. At most `4 * n`.
#[inline]
pub fn data_len(ctrl: &[u8], n: usize) -> usize {
    debug_assert_eq!(ctrl.len(), control_len(n));
    let full = n / 4;
    let mut total = 0usize;
    for &c in &ctrl[..full] {
        total += (c & 3) as usize + ((c >> 2) & 3) as usize + ((c >> 4) & 3) as usize + (c >> 6) as usize + 4;
    }
    for i in full * 4..n {
        total += value_len(ctrl, i);
    }
    total
}

/// Decodes `n` values, calling `f` with each in order. `data.len()` must equal
/// `data_len(ctrl, n)` (the caller checks it against its buffer); returns false
/// without calling `f` further if it does not.
#[inline]
pub fn decode_with<F: FnMut(u32)>(ctrl: &[u8], data: &[u8], n: usize, mut f: F) -> bool {
    if ctrl.len() != control_len(n) || data.len() != data_len(ctrl, n) {
        return false;
    }
    let mut p = 0usize;
    for i in 0..n {
        let len = value_len(ctrl, i);
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

/// Byte length StreamVByte uses for `v`.
#[inline]
pub const fn encoded_len(v: u32) -> usize {
    if v < 1 << 8 {
        1
    } else if v < 1 << 16 {
        2
    } else if v < 1 << 24 {
        3
    } else {
        4
    }
}

/// Appends the StreamVByte encoding (control bytes, then data) of `values`.
pub fn encode(out: &mut Vec<u8>, values: &[u32]) {
    let ctrl_start = out.len();
    out.resize(ctrl_start + control_len(values.len()), 0);
    for (i, &v) in values.iter().enumerate() {
        let len = encoded_len(v);
        out[ctrl_start + i / 4] |= ((len - 1) as u8) << (2 * (i % 4));
        out.extend_from_slice(&v.to_le_bytes()[..len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn roundtrip(values: &[u32]) {
        let mut buf = Vec::new();
        encode(&mut buf, values);
        let c = control_len(values.len());
        let (ctrl, data) = buf.split_at(c);
        assert_eq!(data_len(ctrl, values.len()), data.len());
        let mut got = Vec::new();
        assert!(decode_with(ctrl, data, values.len(), |v| got.push(v)));
        assert_eq!(got, values);
    }

    #[test]
    fn roundtrips() {
        roundtrip(&[]);
        roundtrip(&[0]);
        roundtrip(&[1, 256, 65536, 1 << 24]);
        roundtrip(&[u32::MAX, 0, 255, 256, 65535, 65536, 16777215]);
        let many: Vec<u32> = (0..1001u32).map(|i| i.wrapping_mul(2654435761) >> (i % 32)).collect();
        roundtrip(&many);
    }

    #[test]
    fn known_bytes() {
        let mut buf = Vec::new();
        encode(&mut buf, &[1, 0x0102, 0x010203, 0x01020304, 5]);
        assert_eq!(buf, vec![0b11_10_01_00, 0b00, 1, 2, 1, 3, 2, 1, 4, 3, 2, 1, 5]);
    }

    #[test]
    fn rejects_wrong_data_length() {
        let mut buf = Vec::new();
        encode(&mut buf, &[70000, 3]);
        let (ctrl, data) = buf.split_at(1);
        assert!(!decode_with(ctrl, &data[..data.len() - 1], 2, |_| {}));
        assert!(!decode_with(&[], data, 2, |_| {}));
    }

    #[test]
    fn data_len_bounds() {
        for c in 0..=255u8 {
            let dl = data_len(&[c], 4);
            assert!((4..=16).contains(&dl));
            // Unused control bits of a partial group do not count.
            assert!(data_len(&[c], 1) == (c & 3) as usize + 1);
        }
    }
}
