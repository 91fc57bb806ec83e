//! A message decoded whole, into buffers a kernel reuses across messages: phase 1 of
//! every kernel's `process_message` (validate everything, then apply), shared so that
//! each kernel only writes phase 2.

use alloc::vec::Vec;
use codec::{DecodeError, ErrorCode, PayloadReader};

/// One series of the message: its metric's string id and where its parts are.
#[derive(Clone, Copy)]
pub struct SeriesRec {
    pub metric: u32,
    /// Range in `Decoded::tags`.
    pub tags: (u32, u32),
    /// Range in `Decoded::ts`.
    pub ts: (u32, u32),
    /// Byte offset of the values (8 bytes each, little-endian f64) in the payload.
    pub values: u32,
}

/// The last decoded message; `decode` overwrites it.
#[derive(Default)]
pub struct Decoded {
    /// The string table: (offset, length) in the payload.
    pub strings: Vec<(u32, u32)>,
    pub tags: Vec<u32>,
    pub ts: Vec<i64>,
    pub series: Vec<SeriesRec>,
}

impl Decoded {
    /// Decodes and validates all of `payload`, which must belong to `org`. On error the
    /// buffers hold a partial message: the caller must not apply it.
    pub fn decode(&mut self, payload: &[u8], org: u64) -> Result<(), DecodeError> {
        let mut r = PayloadReader::new(payload)?;
        if r.org() != org {
            return Err(DecodeError::new(ErrorCode::WrongOrg, 1));
        }
        self.tags.clear();
        self.ts.clear();
        self.series.clear();
        r.read_strings(&mut self.strings)?;
        while let Some(s) = r.next_series(&mut self.tags, &mut self.ts)? {
            self.series.push(SeriesRec {
                metric: s.metric,
                tags: (s.tags_start as u32, s.tags_end as u32),
                ts: (s.ts_start as u32, s.ts_end as u32),
                values: (s.values.as_ptr() as usize - payload.as_ptr() as usize) as u32,
            });
        }
        Ok(())
    }
}
