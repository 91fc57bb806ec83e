//! Copy of `guest-rust/codec/src/error.rs` (the codes' `repr(u32)` values and the
//! derives are left out: no proof depends on them).

use vstd::prelude::*;

verus! {

/// Why a payload was rejected.
pub enum ErrorCode {
    Empty,
    Truncated,
    BadVersion,
    BadVarint,
    CountTooLarge,
    IdOutOfRange,
    WrongOrg,
    BadUtf8,
    TrailingBytes,
    BadTsEncoding,
    TsOutOfRange,
}

/// A decode failure: what went wrong and the byte offset where it was seen.
pub struct DecodeError {
    pub code: ErrorCode,
    pub offset: usize,
}

impl DecodeError {
    // sync: src/error.rs::new
    #[inline]
    pub const fn new(code: ErrorCode, offset: usize) -> (e: Self)
        ensures
            e.code == code,
            e.offset == offset,
    {
        DecodeError { code, offset }
    }
}

} // verus!
