//! LEB128 unsigned varints (at most 10 bytes for a u64) and zigzag signed mapping.

use crate::error::{DecodeError, ErrorCode};
use alloc::vec::Vec;

/// The longest encoding of a u64.
pub const MAX_VARINT_LEN: usize = 10;

/// Reads an unsigned LEB128 varint at `*pos`, advancing `*pos` past it.
///
/// Rejects encodings longer than 10 bytes and 10-byte encodings whose last byte
/// carries bits beyond the 64th (both `BadVarint`); never reads past `buf`.
#[inline]
pub fn read_uvarint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let start = *pos;
    let mut result: u64 = 0;
    let mut shift: u32 = 0;
    let mut i = start;
    loop {
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
            result |= (byte as u64) << 63;
            *pos = i;
            return Ok(result);
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
#[inline]
pub fn read_count(buf: &[u8], pos: &mut usize, limit: usize) -> Result<usize, DecodeError> {
    let at = *pos;
    let v = read_uvarint(buf, pos)?;
    if v > limit as u64 {
        return Err(DecodeError::new(ErrorCode::CountTooLarge, at));
    }
    Ok(v as usize)
}

/// Maps a signed integer to unsigned so small magnitudes stay small.
#[inline]
pub const fn zigzag_encode(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag_encode`].
#[inline]
pub const fn zigzag_decode(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// 32-bit zigzag, used for StreamVByte-coded deltas.
#[inline]
pub const fn zigzag_encode32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

/// Inverse of [`zigzag_encode32`].
#[inline]
pub const fn zigzag_decode32(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// Appends the LEB128 encoding of `v` to `out`.
pub fn write_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn roundtrip_edges() {
        for v in [0u64, 1, 127, 128, 255, 300, 16383, 16384, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut buf = Vec::new();
            write_uvarint(&mut buf, v);
            let mut pos = 0;
            assert_eq!(read_uvarint(&buf, &mut pos), Ok(v));
            assert_eq!(pos, buf.len());
        }
        let mut buf = Vec::new();
        write_uvarint(&mut buf, u64::MAX);
        assert_eq!(buf.len(), MAX_VARINT_LEN);
    }

    #[test]
    fn rejects_too_long_and_overflow() {
        let eleven = vec![0x80u8; 10].into_iter().chain([0x00]).collect::<Vec<_>>();
        assert_eq!(read_uvarint(&eleven, &mut 0).unwrap_err().code, ErrorCode::BadVarint);
        let mut overflow = vec![0xffu8; 9];
        overflow.push(0x02);
        assert_eq!(read_uvarint(&overflow, &mut 0).unwrap_err().code, ErrorCode::BadVarint);
    }

    #[test]
    fn rejects_truncation() {
        let err = read_uvarint(&[0x80, 0x80], &mut 0).unwrap_err();
        assert_eq!(err, DecodeError::new(ErrorCode::Truncated, 2));
        assert_eq!(read_uvarint(&[], &mut 0).unwrap_err().code, ErrorCode::Truncated);
    }

    #[test]
    fn count_limit() {
        let mut buf = Vec::new();
        write_uvarint(&mut buf, 11);
        assert_eq!(read_count(&buf, &mut 0, 10).unwrap_err().code, ErrorCode::CountTooLarge);
        assert_eq!(read_count(&buf, &mut 0, 11), Ok(11));
    }

    #[test]
    fn zigzag_roundtrip() {
        for v in [0i64, -1, 1, -2, i64::MIN, i64::MAX, 12345, -12345] {
            assert_eq!(zigzag_decode(zigzag_encode(v)), v);
        }
        for v in [0i32, -1, 1, i32::MIN, i32::MAX] {
            assert_eq!(zigzag_decode32(zigzag_encode32(v)), v);
        }
        assert_eq!(zigzag_encode(-1), 1);
        assert_eq!(zigzag_encode(1), 2);
    }
}
