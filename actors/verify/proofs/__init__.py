"""The proofs stage: what is known about the shared codec (``guest-rust/codec``), and how.

Every kernel decodes untrusted payloads with the codec, so its safety is argued once,
here, four ways. :func:`run_codec_checks` runs them all and returns one :class:`Check`
per property; a check that could not run says ``not-run`` and why, never ``passed``.

``verus`` (``verus:<module>``)
    Verus verifies ``verus/`` (see ``verus/README.md``): a copy of the codec's decoding
    functions with ``requires``/``ensures``/loop invariants. Passed means the copy is
    proved: every index in bounds, no arithmetic overflow, ``read_uvarint`` returns the
    exact LEB128 value of at most 10 bytes, ``data_len`` is the sum of the per-value
    lengths, and every payload-reader loop is bounded by its input. It proves the
    *copy*; the ``sync`` check ties the copy to the shipped code. Verus is not
    installable from any registry this project uses, so here these are ``not-run``.
``z3-model`` (``z3:<property>``)
    z3 proves the same properties of a bit-vector *model* of the decoder written in
    ``model.py`` (:func:`model_read_uvarint`, :func:`model_data_len`, ...), statement for
    statement after the Rust, for every input of the stated shape: buffers of any length
    and any start position for varints, every control byte, 0..=16 (data_len) or 0..=12
    (decode) StreamVByte values, and the payload reader's count checks as an arithmetic
    lemma over 32- and 64-bit ``usize``. Passed says nothing about the compiled code by
    itself; the exhaustive checks tie the model to it.
``exhaustive``
    Runs the *compiled, shipped* codec (``guest-rust/codec-probe`` built to wasm, the
    target that ships) on every 1- and 2-byte varint input, a sample of longer ones,
    every control byte with ``n`` in 0..=8 values, and every count against every small
    number of bytes left, and requires the exact results of the model (and of
    ``actors/payload.py`` for whole payloads). A wasm trap (an out-of-bounds index in
    Rust panics and aborts) fails the check.
``sync``
    The executable bodies of the Verus copy equal the shipped functions token for token
    once comments, attributes and Verus-only text (specs, loop invariants, ``proof``
    blocks, ``assert``, ghost variables) are stripped; the few rewrites Verus needs are
    declared beside each function (``sync-rewrite-from``/``-to``) and must each apply
    exactly once. A copy that uses ``assume``/``admit``/``external_body`` fails.

What none of this proves: that decoded values are *semantically* right beyond the
varint value and the lengths (the round-trip tests in ``tests/integration`` cover
that), anything about the kernels' aggregation code, or the Rust compiler and wasmtime
themselves. The z3 and exhaustive checks together show the model and the compiled code
agree on the inputs tried and that the model is safe on all inputs; only Verus proves
the shipped code's (copy's) safety for all inputs.

Results are cached under ``<cache>/proofs/<codec_digest>.json`` with the versions of
every tool involved; a cached check keeps its status and says ``[cached ...]`` in its
reason.

The package, one module per noun: :mod:`.check` (a :class:`Check`), :mod:`.sources`
(the codec and Verus sources and their digest), :mod:`.model` (the Python model of the
decoder), :mod:`.z3checks`, :mod:`.probe` (the compiled codec-probe) and
:mod:`.exhaustive`, :mod:`.sync` (the Verus-copy sync check), :mod:`.verus` (running
Verus), :mod:`.cache` (the result cache) and :mod:`.stage` (:func:`run_codec_checks`).
"""

from __future__ import annotations

from actors.verify.proofs.check import Check
from actors.verify.proofs.exhaustive import exhaustive_payload_counts, exhaustive_svb, exhaustive_varint
from actors.verify.proofs.model import (
    BAD_VARINT,
    COUNT_TOO_LARGE,
    OK,
    TRUNCATED,
    U64,
    Concrete,
    DecodeRun,
    Ops,
    Outcome,
    Run,
    Symbolic,
    VarintModel,
    model_control_len,
    model_data_len,
    model_decode_with,
    model_read_count,
    model_read_uvarint,
    model_value_len,
    model_zigzag_decode,
    run_concrete_varint,
)
from actors.verify.proofs.probe import Probe
from actors.verify.proofs.sources import CODEC_DIR, VERUS_DIR, codec_digest
from actors.verify.proofs.stage import run_codec_checks
from actors.verify.proofs.sync import REQUIRED_SYNC, SyncMarker, Tok, check_sync, compare_sync, sync_markers, tokenize
from actors.verify.proofs.verus import VERUS_MODULES, VERUS_ROOT, VERUS_TIMEOUT_S, check_verus
from actors.verify.proofs.z3checks import (
    Z3_TIMEOUT_MS,
    check_z3_payload_loop_bounds,
    check_z3_read_count,
    check_z3_svb_control,
    check_z3_svb_data_len,
    check_z3_svb_decode,
    check_z3_varint,
    check_z3_zigzag,
)

__all__ = [
    "BAD_VARINT",
    "CODEC_DIR",
    "COUNT_TOO_LARGE",
    "OK",
    "REQUIRED_SYNC",
    "TRUNCATED",
    "U64",
    "VERUS_DIR",
    "VERUS_MODULES",
    "VERUS_ROOT",
    "VERUS_TIMEOUT_S",
    "Z3_TIMEOUT_MS",
    "Check",
    "Concrete",
    "DecodeRun",
    "Ops",
    "Outcome",
    "Probe",
    "Run",
    "Symbolic",
    "SyncMarker",
    "Tok",
    "VarintModel",
    "check_sync",
    "check_verus",
    "check_z3_payload_loop_bounds",
    "check_z3_read_count",
    "check_z3_svb_control",
    "check_z3_svb_data_len",
    "check_z3_svb_decode",
    "check_z3_varint",
    "check_z3_zigzag",
    "codec_digest",
    "compare_sync",
    "exhaustive_payload_counts",
    "exhaustive_svb",
    "exhaustive_varint",
    "model_control_len",
    "model_data_len",
    "model_decode_with",
    "model_read_count",
    "model_read_uvarint",
    "model_value_len",
    "model_zigzag_decode",
    "run_codec_checks",
    "run_concrete_varint",
    "sync_markers",
    "tokenize",
]
