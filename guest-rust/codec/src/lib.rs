//! The evoagg codec: varint, zigzag, StreamVByte and the payload reader.
//!
//! Shared by every kernel (generic, specialized, evolved) and never evolved: its
//! safety properties are proved once (see `verus/`) and hold for every caller.
//! The wire format is specified in `PAYLOAD.md` beside this crate.
//!
//! Everything here is bounds-checked against the input slice: a malformed payload
//! yields a [`DecodeError`] naming what is wrong and where, never a panic or a read
//! past the buffer.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod error;
pub mod payload;
pub mod svb;
pub mod varint;

pub use error::{DecodeError, ErrorCode};
pub use payload::{PayloadReader, SeriesView, MAX_ABS_TS, PAYLOAD_VERSION, TS_ENC_SVB, TS_ENC_VARINT};
