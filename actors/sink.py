"""Sinks: where a shard's flushed rows go downstream.

A shard flushes an org's closed buckets as a numbered batch of rows (``flush_seq``, increasing
per org) and hands it to a :class:`Sink`. After a crash the shard recovers from its last
checkpoint and may emit a flush again, with the same number and the same rows; every sink is
idempotent per ``(org, flush_seq)`` so that re-emission is harmless.

:class:`ParquetSink` writes Hive-style partitions::

    root/org=<org>/hour=<YYYYMMDDHH>/part-<flush_seq:012d>.parquet

one file per (flush, UTC hour of the bucket), each with exactly :data:`actors.output.SCHEMA`
and its rows in canonical order. :class:`MemorySink` keeps the rows in a dict (tests, and
callers that forward rows elsewhere).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import pyarrow.parquet as pq

from actors.output import SCHEMA, Row, canonical, to_table

MAX_ORG = 2**63 - 1
MAX_FLUSH_SEQ = 10**12 - 1
"""Part names carry the sequence in 12 digits (a flush a second lasts 31,000 years)."""

_PART = re.compile(r"part-(\d{12})\.parquet")
_ORG_DIR = re.compile(r"org=(\d+)")
# The year takes every digit before the last six (it may have more than four, or a sign).
_HOUR_DIR = re.compile(r"hour=(-?\d+)(\d{2})(\d{2})(\d{2})")


class Sink(Protocol):
    """Receives an org's flushed rows.

    Contract: a sink is idempotent per ``(org, flush_seq)``. After a crash and recovery the
    shard may call :meth:`write` again with an ``(org, flush_seq)`` it already wrote, with the
    same rows; the result must be as if it had been written once. ``flush_seq`` increases per
    org (numbers may be skipped: a flush with no rows is not written).
    """

    def write(self, org: int, flush_seq: int, rows: Sequence[Row]) -> None:
        """Stores ``rows``, flush ``flush_seq`` of ``org``; replaces an earlier write of the same pair."""
        ...

    def close(self) -> None:
        """Releases what the sink holds; no write follows."""
        ...


def _check_key(org: int, flush_seq: int) -> None:
    if isinstance(org, bool) or not isinstance(org, int) or not 0 <= org <= MAX_ORG:
        raise ValueError(f"org must be an integer in 0..2^63-1, got {org!r}")
    if isinstance(flush_seq, bool) or not isinstance(flush_seq, int) or not 0 <= flush_seq <= MAX_FLUSH_SEQ:
        raise ValueError(f"flush_seq must be an integer in 0..{MAX_FLUSH_SEQ}, got {flush_seq!r}")


def civil_hour(hour: int) -> tuple[int, int, int, int]:
    """``(year, month, day, hour)`` in UTC of hour number ``hour`` since the epoch (``ts // 3600``).

    Proleptic Gregorian for every integer (H. Hinnant's ``civil_from_days``): timestamps reach
    ±2^62 s, far outside :mod:`datetime`'s years 1..9999, and a sink must not fail on a row the
    kernel accepted. Within that range it equals ``datetime.fromtimestamp(hour * 3600, UTC)``.
    """
    days, hh = divmod(hour, 24)
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day, hh


def hour_label(bucket: int) -> str:
    """The ``YYYYMMDDHH`` partition of a bucket start (seconds, UTC).

    Years outside 0..9999 keep the same shape with more digits or a sign (``-0001123123``):
    the year is whatever precedes the last six digits.
    """
    year, month, day, hh = civil_hour(bucket // 3600)
    sign = "-" if year < 0 else ""
    return f"{sign}{abs(year):04d}{month:02d}{day:02d}{hh:02d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ParquetSink(Sink):
    """Writes each flush as Parquet parts under ``root``, one per UTC hour of its buckets.

    Each part is written to a temporary file in its directory and renamed over its final name
    (``os.replace``), so a reader sees a part whole or not at all; a flush spanning several hours
    is not atomic as a whole, but re-emission after recovery completes it. Parquet output is a
    function of the table, so rewriting a part with the same rows gives the same bytes.

    A crash between writing a temporary file and renaming it leaves a ``.part-*.tmp`` file;
    :func:`parts` and :func:`read_rows` never read those.
    """

    def __init__(self, root: Path | str, fsync: bool = False) -> None:
        self.root = Path(root)
        self.fsync = fsync
        """fsync each file before its rename and its directory after, for durability across power loss."""
        self._closed = False

    def part_path(self, org: int, flush_seq: int, bucket: int) -> Path:
        """Where the rows of ``bucket`` in flush ``flush_seq`` of ``org`` go."""
        return self.root / f"org={org}" / f"hour={hour_label(bucket)}" / f"part-{flush_seq:012d}.parquet"

    def write(self, org: int, flush_seq: int, rows: Sequence[Row]) -> None:
        if self._closed:
            raise ValueError("ParquetSink: write after close")
        _check_key(org, flush_seq)
        by_hour: dict[int, list[Row]] = {}
        for r in rows:
            by_hour.setdefault(r.bucket // 3600, []).append(r)
        for hour in sorted(by_hour):
            hour_rows = by_hour[hour]
            self._write_part(self.part_path(org, flush_seq, hour_rows[0].bucket), hour_rows)

    def close(self) -> None:
        # Every part is complete when write returns: nothing to flush.
        self._closed = True

    def _write_part(self, path: Path, rows: list[Row]) -> None:
        directory = path.parent
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            if self.fsync:
                # The new directory entries must survive too: hour dir, org dir, root.
                for d in (directory.parent, directory.parent.parent):
                    _fsync_dir(d)
        # Not mkstemp: its 0600 mode would end up on the part; this file gets the umask's mode.
        tmp = directory / f".{path.name}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(to_table(rows), tmp)
            if self.fsync:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.fsync:
            _fsync_dir(directory)


def _part_key(path: Path) -> tuple[int, tuple[int, int, int, int], int]:
    m_org = _ORG_DIR.fullmatch(path.parent.parent.name)
    m_hour = _HOUR_DIR.fullmatch(path.parent.name)
    m_part = _PART.fullmatch(path.name)
    assert m_org and m_hour and m_part  # parts() only yields paths that match
    hour = (int(m_hour[1]), int(m_hour[2]), int(m_hour[3]), int(m_hour[4]))
    return int(m_org[1]), hour, int(m_part[1])


def parts(root: Path | str, org: int | None = None) -> list[Path]:
    """The part files under ``root`` (of ``org``, or of every org), by org, hour, then flush_seq."""
    root = Path(root)
    org_glob = "org=*" if org is None else f"org={org}"
    found = [
        p
        for p in root.glob(f"{org_glob}/hour=*/part-*.parquet")
        if _ORG_DIR.fullmatch(p.parent.parent.name) and _HOUR_DIR.fullmatch(p.parent.name) and _PART.fullmatch(p.name)
    ]
    return sorted(found, key=_part_key)


def read_rows(root: Path | str, org: int | None = None) -> list[Row]:
    """Every row in the parts under ``root`` (of ``org``, or of every org), in canonical order.

    Rows of different orgs are not told apart (a row holds no org); pass ``org`` to keep them
    apart. Raises ``ValueError`` if a part's schema is not :data:`actors.output.SCHEMA`.
    """
    rows: list[Row] = []
    for path in parts(root, org):
        # ParquetFile, not read_table: the latter may add the Hive partition keys as columns.
        table = pq.ParquetFile(path).read()
        if not table.schema.equals(SCHEMA):
            raise ValueError(f"{path}: schema {table.schema} is not the output schema")
        cols = [table.column(name).to_pylist() for name in ("query", "bucket", "group", "value")]
        rows.extend(Row(q, b, g, v) for q, b, g, v in zip(*cols, strict=True))
    return canonical(rows)


class MemorySink(Sink):
    """Keeps every flush in memory, keyed by ``(org, flush_seq)``; a rewrite replaces."""

    def __init__(self) -> None:
        self.flushes: dict[tuple[int, int], list[Row]] = {}
        """The rows of each flush written, in canonical order."""
        self.closed = False
        """Whether :meth:`close` was called."""

    def write(self, org: int, flush_seq: int, rows: Sequence[Row]) -> None:
        if self.closed:
            raise ValueError("MemorySink: write after close")
        _check_key(org, flush_seq)
        if rows:
            self.flushes[(org, flush_seq)] = canonical(rows)

    def close(self) -> None:
        self.closed = True

    def rows(self, org: int | None = None) -> list[Row]:
        """Every row written (of ``org``, or of every org), in canonical order."""
        return canonical(r for (o, _), rs in self.flushes.items() if org is None or o == org for r in rs)
