//! Test support, never deployed: `probe_roundtrip` decodes one payload with
//! `codec::PayloadReader` and re-encodes what it read with `codec::payload::encode_payload`.
//! The host's property tests feed it Python-encoded payloads and require the bytes
//! back unchanged, and decode its output with the Python decoder: a round trip
//! through both implementations in both directions.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use abi::wire;
use alloc::vec::Vec;
use codec::payload::encode_payload;
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
