//! Decode errors. The numeric codes are part of the ABI: the host maps them to
//! rejection reasons (`actors/payload.py::REJECT_REASONS` mirrors this table).

/// Why a payload was rejected. `repr(u32)` values are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    /// A zero-length payload.
    Empty = 1,
    /// The payload ends inside a field.
    Truncated = 2,
    /// The first byte is not a version this reader understands.
    BadVersion = 3,
    /// A varint longer than 10 bytes, or one whose value does not fit in 64 bits.
    BadVarint = 4,
    /// A count (strings, series, tags, points) larger than the bytes left could hold.
    CountTooLarge = 5,
    /// A string id at or past the end of the message's string table.
    IdOutOfRange = 6,
    /// The payload's org is not the kernel's tenant.
    WrongOrg = 7,
    /// A string that is not UTF-8.
    BadUtf8 = 8,
    /// Bytes left after the last series.
    TrailingBytes = 9,
    /// An unknown timestamp encoding byte.
    BadTsEncoding = 10,
    /// A timestamp outside [-2^62, 2^62].
    TsOutOfRange = 11,
}

/// A decode failure: what went wrong and the byte offset where it was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub code: ErrorCode,
    pub offset: usize,
}

impl DecodeError {
    #[inline]
    pub const fn new(code: ErrorCode, offset: usize) -> Self {
        DecodeError { code, offset }
    }
}
