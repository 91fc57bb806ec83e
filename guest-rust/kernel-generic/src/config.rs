//! The tenant configuration as the host encodes it for `evoagg_init`
//! (`actors/kernel/abi.py::encode_config`; layout in `ABI.md`).

use alloc::vec::Vec;
use codec::varint::read_uvarint;

pub const CONFIG_VERSION: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agg {
    Sum,
    Min,
    Max,
    Avg,
    Count,
}

#[derive(Clone, Debug)]
pub enum Term {
    /// The series carries exactly this tag (`key:value` or a bare tag).
    Tag(Vec<u8>),
    /// The series carries a `key:` tag whose value starts with the prefix.
    Prefix { key: Vec<u8>, prefix: Vec<u8> },
}

#[derive(Clone, Debug)]
pub struct FilterTerm {
    pub negated: bool,
    pub term: Term,
}

#[derive(Clone, Debug)]
pub struct QuerySpec {
    pub agg: Agg,
    pub metric: Vec<u8>,
    pub filter: Vec<FilterTerm>,
    pub by: Vec<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub org: u64,
    pub interval: i64,
    pub queries: Vec<QuerySpec>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn uvarint(&mut self) -> Result<u64, ()> {
        read_uvarint(self.buf, &mut self.pos).map_err(|_| ())
    }
    fn byte(&mut self) -> Result<u8, ()> {
        let b = *self.buf.get(self.pos).ok_or(())?;
        self.pos += 1;
        Ok(b)
    }
    fn string(&mut self) -> Result<Vec<u8>, ()> {
        let n = self.uvarint()?;
        // Compare as u64 before narrowing: on wasm32 a cast would wrap.
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(());
        }
        let end = self.pos + n as usize;
        let s = self.buf.get(self.pos..end).ok_or(())?.to_vec();
        self.pos = end;
        Ok(s)
    }
    fn count(&mut self) -> Result<usize, ()> {
        let n = self.uvarint()?;
        // Every element takes at least one byte.
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(());
        }
        Ok(n as usize)
    }
}

impl Config {
    pub fn decode(buf: &[u8]) -> Result<Config, ()> {
        let mut c = Cursor { buf, pos: 0 };
        if c.byte()? != CONFIG_VERSION {
            return Err(());
        }
        let org = c.uvarint()?;
        let interval = c.uvarint()?;
        if interval == 0 || interval > i32::MAX as u64 {
            return Err(());
        }
        let nq = c.count()?;
        if nq > u16::MAX as usize {
            return Err(());
        }
        let mut queries = Vec::with_capacity(nq);
        for _ in 0..nq {
            let agg = match c.byte()? {
                0 => Agg::Sum,
                1 => Agg::Min,
                2 => Agg::Max,
                3 => Agg::Avg,
                4 => Agg::Count,
                _ => return Err(()),
            };
            let metric = c.string()?;
            let nf = c.count()?;
            let mut filter = Vec::with_capacity(nf);
            for _ in 0..nf {
                let flags = c.byte()?;
                let negated = flags & 1 != 0;
                let term = if flags & 2 != 0 { Term::Prefix { key: c.string()?, prefix: c.string()? } } else { Term::Tag(c.string()?) };
                filter.push(FilterTerm { negated, term });
            }
            let nb = c.count()?;
            let mut by = Vec::with_capacity(nb);
            for _ in 0..nb {
                by.push(c.string()?);
            }
            queries.push(QuerySpec { agg, metric, filter, by });
        }
        if c.pos != buf.len() {
            return Err(());
        }
        Ok(Config { org, interval: interval as i64, queries })
    }
}
