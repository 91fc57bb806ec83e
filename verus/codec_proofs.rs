//! Verus proofs of the evoagg codec (`guest-rust/codec/`).
//!
//! Each module is a verified copy of the decoding half of one codec source file: the
//! executable bodies are the shipped ones token for token (checked by the `sync`
//! check of `actors/verify/proofs/`; the few rewrites Verus needs are listed beside
//! each function as `sync-rewrite-from` / `sync-rewrite-to` comments), with
//! `requires` / `ensures` / `invariant` / `decreases` and proof blocks added.
//!
//! Run (see README.md): `verus verus/codec_proofs.rs`, or one module at a time with
//! `verus verus/codec_proofs.rs --verify-module varint` (also `error`, `svb`, `payload`).
#![allow(unused_imports, unused_variables, unused_mut, dead_code)]

use vstd::prelude::*;

pub mod error;
pub mod payload;
pub mod svb;
pub mod varint;

fn main() {}
