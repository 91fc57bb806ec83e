//! The payload reader: step-wise, zero-copy decoding of one message (`PAYLOAD.md`).
//!
//! Usage: [`PayloadReader::new`] (version, org), [`PayloadReader::read_strings`]
//! (the interned string table), then [`PayloadReader::next_series`] until it
//! returns `None`, which also checks that no bytes trail the last series.
//! Every loop is bounded by a count that was checked against the bytes left.

use crate::error::{DecodeError, ErrorCode};
use crate::svb;
use crate::varint::{read_uvarint, zigzag_decode, zigzag_decode32};
use alloc::vec::Vec;

/// The payload version this reader understands (the first byte of a payload).
pub const PAYLOAD_VERSION: u8 = 1;
/// Timestamp deltas coded as StreamVByte over zigzag32 values.
pub const TS_ENC_SVB: u8 = 0;
/// Timestamp deltas coded as zigzag64 varints (used when a delta exceeds 32 bits).
pub const TS_ENC_VARINT: u8 = 1;
/// Timestamps must lie in [-MAX_ABS_TS, MAX_ABS_TS] so bucket arithmetic cannot overflow.
pub const MAX_ABS_TS: i64 = 1 << 62;

/// One decoded series: indices into the caller's scratch vectors plus the raw values.
#[derive(Clone, Copy, Debug)]
pub struct SeriesView<'a> {
    /// Index of the metric name in the message's string table.
    pub metric: u32,
    /// `tags[tags_start..tags_end]` (in the vector passed to `next_series`) are string ids.
    pub tags_start: usize,
    pub tags_end: usize,
    /// `ts[ts_start..ts_end]` are the decoded timestamps.
    pub ts_start: usize,
    pub ts_end: usize,
    /// `8 * npoints` bytes: little-endian f64 values.
    pub values: &'a [u8],
}

impl<'a> SeriesView<'a> {
    #[inline]
    pub fn npoints(&self) -> usize {
        self.ts_end - self.ts_start
    }

    /// The i-th value.
    #[inline]
    pub fn value(&self, i: usize) -> f64 {
        let b = &self.values[8 * i..8 * i + 8];
        f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }
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
    /// Reads the version byte and the org.
    pub fn new(buf: &'a [u8]) -> Result<Self, DecodeError> {
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

    #[inline]
    pub fn org(&self) -> u64 {
        self.org
    }

    #[inline]
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads the string table into `out` as `(offset, len)` pairs (see [`Self::string`])
    /// and the series count. Strings must be UTF-8.
    pub fn read_strings(&mut self, out: &mut Vec<(u32, u32)>) -> Result<(), DecodeError> {
        out.clear();
        // Each string takes at least its one-byte length.
        let n = self.read_count_of(1)?;
        out.reserve(n);
        for _ in 0..n {
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
    #[inline]
    pub fn string(&self, entry: (u32, u32)) -> &'a [u8] {
        &self.buf[entry.0 as usize..(entry.0 + entry.1) as usize]
    }

    /// Number of strings in the table.
    #[inline]
    pub fn string_count(&self) -> usize {
        self.nstrings
    }

    /// Series not yet read.
    #[inline]
    pub fn series_left(&self) -> usize {
        self.series_left
    }

    /// Reads a count of items that each take at least `min_bytes` of the bytes
    /// left after the count itself.
    #[inline]
    fn read_count_of(&mut self, min_bytes: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let v = read_uvarint(self.buf, &mut self.pos)?;
        if v > (self.left() / min_bytes) as u64 {
            return Err(DecodeError::new(ErrorCode::CountTooLarge, at));
        }
        Ok(v as usize)
    }

    #[inline]
    fn read_id(&mut self) -> Result<u32, DecodeError> {
        let at = self.pos;
        let id = read_uvarint(self.buf, &mut self.pos)?;
        if id >= self.nstrings as u64 {
            return Err(DecodeError::new(ErrorCode::IdOutOfRange, at));
        }
        Ok(id as u32)
    }

    /// Decodes the next series, appending its tag ids to `tags` and its timestamps
    /// to `ts`. Returns `Ok(None)` after the last one (and then requires that the
    /// payload ends there).
    pub fn next_series(&mut self, tags: &mut Vec<u32>, ts: &mut Vec<i64>) -> Result<Option<SeriesView<'a>>, DecodeError> {
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
        for _ in 0..ntags {
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

    fn read_timestamps(&mut self, n: usize, ts: &mut Vec<i64>) -> Result<(), DecodeError> {
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
                svb::decode_with(ctrl, data, deltas, |z| {
                    cur = cur.wrapping_add(zigzag_decode32(z) as i64);
                    in_range &= (-MAX_ABS_TS..=MAX_ABS_TS).contains(&cur);
                    ts.push(cur);
                });
                self.pos += clen + dlen;
            }
            TS_ENC_VARINT => {
                for _ in 0..deltas {
                    let d = zigzag_decode(read_uvarint(self.buf, &mut self.pos)?);
                    cur = cur.wrapping_add(d);
                    in_range &= (-MAX_ABS_TS..=MAX_ABS_TS).contains(&cur);
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

/// Appends a payload for tests and tools: `series` is (metric id, tag ids, points).
pub fn encode_payload(org: u64, strings: &[&[u8]], series: &[(u32, &[u32], &[(i64, f64)])]) -> Vec<u8> {
    use crate::varint::{write_uvarint, zigzag_encode, zigzag_encode32};
    let mut out = Vec::new();
    out.push(PAYLOAD_VERSION);
    write_uvarint(&mut out, org);
    write_uvarint(&mut out, strings.len() as u64);
    for s in strings {
        write_uvarint(&mut out, s.len() as u64);
        out.extend_from_slice(s);
    }
    write_uvarint(&mut out, series.len() as u64);
    for (metric, tags, points) in series {
        write_uvarint(&mut out, *metric as u64);
        write_uvarint(&mut out, tags.len() as u64);
        for t in *tags {
            write_uvarint(&mut out, *t as u64);
        }
        write_uvarint(&mut out, points.len() as u64);
        if let Some((t0, _)) = points.first() {
            write_uvarint(&mut out, zigzag_encode(*t0));
            let deltas: Vec<i64> = points.windows(2).map(|w| w[1].0.wrapping_sub(w[0].0)).collect();
            if deltas.iter().all(|d| i32::try_from(*d).is_ok()) {
                out.push(TS_ENC_SVB);
                let z: Vec<u32> = deltas.iter().map(|d| zigzag_encode32(*d as i32)).collect();
                svb::encode(&mut out, &z);
            } else {
                out.push(TS_ENC_VARINT);
                for d in deltas {
                    write_uvarint(&mut out, zigzag_encode(d));
                }
            }
        }
        for (_, v) in *points {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    type Decoded = (u64, Vec<Vec<u8>>, Vec<(u32, Vec<u32>, Vec<(i64, u64)>)>);

    fn decode(buf: &[u8]) -> Result<Decoded, DecodeError> {
        let mut r = PayloadReader::new(buf)?;
        let mut strings = Vec::new();
        r.read_strings(&mut strings)?;
        let names = strings.iter().map(|e| r.string(*e).to_vec()).collect();
        let (mut tags, mut ts) = (Vec::new(), Vec::new());
        let mut out = Vec::new();
        while let Some(s) = r.next_series(&mut tags, &mut ts)? {
            let pts = (0..s.npoints()).map(|i| (ts[s.ts_start + i], s.value(i).to_bits())).collect();
            out.push((s.metric, tags[s.tags_start..s.tags_end].to_vec(), pts));
        }
        Ok((r.org(), names, out))
    }

    fn sample() -> Vec<u8> {
        encode_payload(
            1042,
            &[b"cpu.usage", b"host:h1", b"canary"],
            &[
                (0, &[1, 2], &[(1_764_000_000, 0.5), (1_764_000_010, f64::NAN), (1_764_000_005, -1.0)]),
                (0, &[], &[]),
                (0, &[1], &[(-5, 1.0), (i32::MAX as i64 * 4, 2.0)]),
            ],
        )
    }

    #[test]
    fn roundtrip() {
        let (org, names, series) = decode(&sample()).unwrap();
        assert_eq!(org, 1042);
        assert_eq!(names[2], b"canary");
        assert_eq!(series.len(), 3);
        assert_eq!(series[0].2[2], (1_764_000_005, (-1.0f64).to_bits()));
        assert!(f64::from_bits(series[0].2[1].1).is_nan());
        assert_eq!(series[2].2[1].0, i32::MAX as i64 * 4);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let buf = sample();
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "prefix of {cut} bytes decoded");
        }
    }

    #[test]
    fn bad_inputs() {
        let mut buf = sample();
        buf[0] = 2;
        assert_eq!(decode(&buf).unwrap_err().code, ErrorCode::BadVersion);
        let mut trailing = sample();
        trailing.push(0);
        assert_eq!(decode(&trailing).unwrap_err().code, ErrorCode::TrailingBytes);
        let bad_id = encode_payload(1, &[b"m"], &[(1, &[], &[])]);
        assert_eq!(decode(&bad_id).unwrap_err().code, ErrorCode::IdOutOfRange);
        let bad_utf8 = encode_payload(1, &[b"\xff"], &[]);
        assert_eq!(decode(&bad_utf8).unwrap_err().code, ErrorCode::BadUtf8);
        assert_eq!(decode(&[]).unwrap_err().code, ErrorCode::Empty);
        // A string count larger than the bytes left.
        assert_eq!(decode(&[1, 5, 200, 1]).unwrap_err().code, ErrorCode::CountTooLarge);
        let far = encode_payload(1, &[b"m"], &[(0, &[], &[(MAX_ABS_TS + 1, 0.0)])]);
        assert_eq!(decode(&far).unwrap_err().code, ErrorCode::TsOutOfRange);
        let mut bad_enc = encode_payload(1, &[b"m"], &[(0, &[], &[(1, 0.0), (2, 0.0)])]);
        // version, org, nstr, len, 'm', nseries, metric, ntags, npoints, ts0, enc
        bad_enc[10] = 7;
        assert_eq!(decode(&bad_enc).unwrap_err().code, ErrorCode::BadTsEncoding);
    }

    #[test]
    fn empty_message_is_valid() {
        let (_, names, series) = decode(&encode_payload(9, &[], &[])).unwrap();
        assert!(names.is_empty() && series.is_empty());
        assert_eq!(decode(&vec![1, 9, 0, 0]).unwrap().0, 9);
    }
}

/// The shared test vector (`testdata/payload_v1.hex`), also checked by
/// `tests/unit/test_payload.py`: the Python encoder and this crate agree byte for byte.
#[cfg(test)]
mod shared_vector {
    use super::*;
    use alloc::vec::Vec;

    fn vector() -> Vec<u8> {
        let hex = include_str!("../testdata/payload_v1.hex").trim();
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn decodes_python_encoding() {
        let buf = vector();
        let mut r = PayloadReader::new(&buf).unwrap();
        assert_eq!(r.org(), 1042);
        let mut strings = Vec::new();
        r.read_strings(&mut strings).unwrap();
        let names: Vec<&[u8]> = strings.iter().map(|e| r.string(*e)).collect();
        assert_eq!(names, [&b"cpu.usage"[..], b"host:h1", b"service:web", b"canary", b"mem.used", "zone:é".as_bytes()]);
        let (mut tags, mut ts) = (Vec::new(), Vec::new());
        let s0 = r.next_series(&mut tags, &mut ts).unwrap().unwrap();
        assert_eq!((s0.metric, &tags[s0.tags_start..s0.tags_end]), (0, &[1u32, 2, 3][..]));
        assert_eq!(&ts[s0.ts_start..s0.ts_end], &[1_764_000_000, 1_764_000_010, 1_764_000_005]);
        assert_eq!((s0.value(0), s0.value(1), s0.value(2)), (0.5, -1.25, f64::INFINITY));
        let s1 = r.next_series(&mut tags, &mut ts).unwrap().unwrap();
        assert_eq!((s1.metric, s1.npoints(), s1.tags_end - s1.tags_start), (4, 0, 0));
        let s2 = r.next_series(&mut tags, &mut ts).unwrap().unwrap();
        assert_eq!(&ts[s2.ts_start..s2.ts_end], &[-5, 8_589_934_588]);
        assert!(r.next_series(&mut tags, &mut ts).unwrap().is_none());
    }

    #[test]
    fn rust_encoder_matches_python_bytes() {
        let strings: [&[u8]; 6] = [b"cpu.usage", b"host:h1", b"service:web", b"canary", b"mem.used", "zone:é".as_bytes()];
        let again = encode_payload(
            1042,
            &strings,
            &[
                (0, &[1, 2, 3], &[(1_764_000_000, 0.5), (1_764_000_010, -1.25), (1_764_000_005, f64::INFINITY)]),
                (4, &[], &[]),
                (0, &[1, 5], &[(-5, 1.0), (8_589_934_588, 2.0)]),
            ],
        );
        assert_eq!(again, vector());
    }
}
