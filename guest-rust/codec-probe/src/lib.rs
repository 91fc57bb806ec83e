//! Test support, never deployed: `probe_roundtrip` decodes one payload with
//! `codec::PayloadReader` and re-encodes what it read with `codec::payload::encode_payload`.
//! The host's property tests feed it Python-encoded payloads and require the bytes
//! back unchanged, and decode its output with the Python decoder: a round trip
//! through both implementations in both directions.
//!
//! `probe_uvarint_batch` and `probe_svb_batch` expose the codec's primitives
//! (`read_uvarint`, `read_count`, `svb::control_len`, `svb::data_len`,
//! `svb::decode_with`) for the exhaustive checks of `actors/verify/proofs/`, which
//! compare the compiled code with the model the z3 checks prove things about.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use abi::wire;
use alloc::vec::Vec;
use codec::payload::encode_payload;
use codec::svb;
use codec::varint::{read_count, read_uvarint};
use codec::{DecodeError, PayloadReader};

fn roundtrip(buf: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut r = PayloadReader::new(buf)?;
    let mut entries = Vec::new();
    r.read_strings(&mut entries)?;
    let strings: Vec<&[u8]> = entries.iter().map(|e| r.string(*e)).collect();
    let (mut tags, mut ts) = (Vec::new(), Vec::new());
    let mut views = Vec::new();
    while let Some(s) = r.next_series(&mut tags, &mut ts)? {
        views.push(s);
    }
    let points: Vec<Vec<(i64, f64)>> = views.iter().map(|s| (0..s.npoints()).map(|i| (ts[s.ts_start + i], s.value(i))).collect()).collect();
    let series: Vec<(u32, &[u32], &[(i64, f64)])> =
        views.iter().zip(&points).map(|(s, p)| (s.metric, &tags[s.tags_start..s.tags_end], p.as_slice())).collect();
    Ok(encode_payload(r.org(), &strings, &series))
}

#[no_mangle]
pub extern "C" fn probe_alloc(len: i32) -> i32 {
    wire::alloc_bytes(len)
}

/// Returns the length of the re-encoded payload at `probe_result_ptr()`, or
/// `-(error code)` when the payload is malformed.
#[no_mangle]
pub extern "C" fn probe_roundtrip(ptr: i32, len: i32) -> i32 {
    let buf = unsafe { wire::input(ptr, len) };
    match roundtrip(buf) {
        Ok(out) => wire::set_result(&out),
        Err(e) => -(e.code as i32),
    }
}

#[no_mangle]
pub extern "C" fn probe_result_ptr() -> i32 {
    wire::result_ptr()
}

/// Appends one primitive's outcome as 24 bytes: `code: u32` (0 = Ok, else the
/// `ErrorCode`) | `at: u32` (Ok: the new position; Err: the error offset) | `pos: u32`
/// (the position after the call, Ok or not) | `0: u32` | `value: u64` (Ok) or 0.
fn push_outcome(out: &mut Vec<u8>, r: Result<u64, DecodeError>, pos: usize) {
    let (code, at, value) = match r {
        Ok(v) => (0u32, pos as u32, v),
        Err(e) => (e.code as u32, e.offset as u32, 0),
    };
    for word in [code, at, pos as u32, 0] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&value.to_le_bytes());
}

/// Runs `read_uvarint` and `read_count` on many small inputs in one call.
///
/// Input: records `n: u8 | start: u8 | limit: u32 LE | n bytes`. For each, appends
/// the outcome (see `push_outcome`) of `read_uvarint(bytes, &mut start)` and then of
/// `read_count(bytes, &mut start, limit)`: 48 bytes per record at `probe_result_ptr()`.
/// Returns the output length, or -1 when a record runs past the input.
#[no_mangle]
pub extern "C" fn probe_uvarint_batch(ptr: i32, len: i32) -> i32 {
    let input = unsafe { wire::input(ptr, len) };
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < input.len() {
        if input.len() - at < 6 {
            return -1;
        }
        let n = input[at] as usize;
        let start = input[at + 1] as usize;
        let limit = u32::from_le_bytes([input[at + 2], input[at + 3], input[at + 4], input[at + 5]]) as usize;
        at += 6;
        if input.len() - at < n {
            return -1;
        }
        let bytes = &input[at..at + n];
        at += n;
        let mut pos = start;
        let r = read_uvarint(bytes, &mut pos);
        push_outcome(&mut out, r, pos);
        let mut pos = start;
        let r = read_count(bytes, &mut pos, limit).map(|v| v as u64);
        push_outcome(&mut out, r, pos);
    }
    wire::set_result(&out)
}

/// Runs the StreamVByte primitives on many small inputs in one call.
///
/// Input: records `n: u16 LE | ctrl_len: u16 LE | data_len: u16 LE | ctrl bytes | data bytes`.
/// Output per record: `control_len(n): u32 | data_len(ctrl, n): u32` (`u32::MAX` when
/// `ctrl_len != control_len(n)`, data_len's precondition) `| ok: u32` (what `decode_with`
/// returned) `| delivered: u32 | delivered × u32` (the values `decode_with` passed on).
/// Returns the output length, or -1 when a record runs past the input.
#[no_mangle]
pub extern "C" fn probe_svb_batch(ptr: i32, len: i32) -> i32 {
    let input = unsafe { wire::input(ptr, len) };
    let mut out = Vec::new();
    let mut values = Vec::new();
    let mut at = 0usize;
    while at < input.len() {
        if input.len() - at < 6 {
            return -1;
        }
        let word = |i: usize| u16::from_le_bytes([input[at + i], input[at + i + 1]]) as usize;
        let (n, clen, dlen) = (word(0), word(2), word(4));
        at += 6;
        if input.len() - at < clen + dlen {
            return -1;
        }
        let ctrl = &input[at..at + clen];
        let data = &input[at + clen..at + clen + dlen];
        at += clen + dlen;
        let expected_clen = svb::control_len(n);
        let data_len = if clen == expected_clen { svb::data_len(ctrl, n) as u32 } else { u32::MAX };
        values.clear();
        let ok = svb::decode_with(ctrl, data, n, |v| values.push(v));
        for word in [expected_clen as u32, data_len, ok as u32, values.len() as u32] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        for v in &values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    wire::set_result(&out)
}
