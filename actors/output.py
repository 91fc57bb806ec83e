"""Canonical output: rows, their order, their hash, and the files they are written to.

A row is ``(query, bucket, group, value)``. Canonical order sorts by query id, bucket
start, then group text (code-point order). The hash is SHA-256 over every row in that
order, encoded as::

    u32 len(query) | query (UTF-8) | i64 bucket | u32 len(group) | group (UTF-8) | f64 value

all little-endian, the value by its IEEE-754 bits: two outputs hash equal exactly
when they hold the same rows with bit-identical values.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa

from actors.errors import ConfigError

SCHEMA = pa.schema(
    [
        pa.field("query", pa.string(), nullable=False),
        pa.field("bucket", pa.int64(), nullable=False),
        pa.field("group", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)


class Row(NamedTuple):
    query: str
    bucket: int
    group: str
    value: float


def canonical(rows: Iterable[Row]) -> list[Row]:
    """Rows in canonical order."""
    return sorted(rows, key=lambda r: (r.query, r.bucket, r.group))


def output_hash(rows: Iterable[Row]) -> str:
    """SHA-256 (hex) of the canonical encoding of ``rows`` (sorted here)."""
    h = hashlib.sha256()
    for r in canonical(rows):
        q = r.query.encode()
        g = r.group.encode()
        h.update(struct.pack("<I", len(q)) + q + struct.pack("<qI", r.bucket, len(g)) + g + struct.pack("<d", r.value))
    return h.hexdigest()


def to_table(rows: Iterable[Row]) -> pa.Table:
    rows = canonical(rows)
    return pa.table(
        {
            "query": pa.array([r.query for r in rows], pa.string()),
            "bucket": pa.array([r.bucket for r in rows], pa.int64()),
            "group": pa.array([r.group for r in rows], pa.string()),
            "value": pa.array([r.value for r in rows], pa.float64()),
        },
        schema=SCHEMA,
    )


def write_rows(path: Path, rows: Iterable[Row]) -> None:
    """Writes canonical rows to ``.parquet``, ``.csv`` or ``.jsonl`` (by extension)."""
    table = to_table(rows)
    suffix = path.suffix
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif suffix == ".csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
    elif suffix == ".jsonl":
        import json
        import math

        with open(path, "w") as f:
            for r in table.to_pylist():
                # JSON has no infinities (a sum can overflow to one): spell them as the input does.
                if not math.isfinite(r["value"]):
                    r["value"] = repr(r["value"])
                f.write(json.dumps(r, allow_nan=False) + "\n")
    else:
        raise ConfigError(f"{path}: output must end in .parquet, .csv or .jsonl")
