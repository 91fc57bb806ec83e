"""The tools a user would otherwise pick (pyarrow compute, Polars, DuckDB), doing exactly
our queries with our semantics (:mod:`actors.oracle`), so that ``evoagg bench`` compares
like with like.

**What is timed.** :func:`prepare` turns decoded messages into Arrow tables once; the
caller times :func:`run` only. Decoding the binary payload is therefore *not* timed for
the peers, while our kernels decode it inside their timed call: this favours the peers.
Everything that depends on the queries (exploding tags, splitting ``key:value``, matching
filters, building group texts, bucketing, aggregating, folding into state, producing
:class:`~actors.output.Row` objects) happens inside :func:`run`: that is the engine's work.

**Input** (:class:`Prepared`), normalised as a competent user would store it: a *series*
table (``sid`` int32, ``metric`` string, ``tags`` list<string>) and a *points* table
(``sid``, ``ts`` int64, ``value`` float64), one pair per message plus one concatenated
pair for bulk, points in arrival order. Repeating the tags on every point would make
every engine redo the tag work twenty times (W1/W2 have 20 points a series).

**The plan**, the same relational steps in every engine (no Python loop per point, per
series or per query; loops only over messages, over group-by positions (at most 3 here)
and over distinct prefix lengths):

1. explode tags to ``(sid, tag)``; split ``key:value`` at the first ``:`` for the keys
   some query needs; a series' values of a key are made distinct;
2. term hits: exact terms (``key:value`` and bare tags) are equi-joined on the whole tag,
   prefix terms on the key, then ``starts_with``;
3. matches: hits joined to the (query, term, negated) relation and counted per
   (series, query): a query with positive terms matches where all of them hit and no
   negated one does and the metric agrees; a query without positive terms matches every
   series of its metric that no negated term hits (an anti-join);
4. groups: one left join per group-by *position*, multiplying rows by the series' values
   of that key (``N/A`` when it has none) and appending ``key:value``; two combinations
   that render to the same text are one group, as in the reference;
5. points: finite values only; ``bucket = ts - ts mod interval`` (floored, also for
   negative ``ts``); pre-aggregated per (series, bucket), then fanned out to the series'
   (query, group)s through an integer group id and aggregated per (query, group,
   bucket) into sum, count, min, max. The pre-aggregation is the usual "aggregate before
   the fan-out join" rewrite: a W2 series lands in 100 (query, group)s, and it shrinks the
   fanned-out rows about threefold;
6. output: the query's aggregation; ``sum + 0.0`` turns an engine's ``-0.0`` into the
   ``+0.0`` of folding from ``+0.0``; ``avg = sum / count``.

**Engines.** pyarrow: compute kernels only (``dictionary_encode``, ``index_in``,
``value_counts``, list ``take`` + ``list_flatten`` fan-outs) rather than Acero joins, whose
fixed cost (~0.2 ms a join) dominated per-message work; group texts are built as integer
ids and rendered once per distinct group; Acero group-bys for the aggregations.
Polars: one lazy query per batch, collected with the in-memory engine per message (a
third of the streaming engine's fixed cost on 1,000 points) and with the default engine
in bulk. DuckDB: one SQL statement per batch over registered Arrow tables.

**Modes.** ``bulk`` runs the plan once over all messages. ``per-message`` runs it once per
message, as a shard sees them, and folds the message's partial aggregates into running
state: DuckDB upserts into a keyed table (``INSERT ... ON CONFLICT DO UPDATE``, its
idiomatic streaming form); pyarrow and Polars have immutable tables and no keyed upsert,
so their state is a stack of runs merged four at a time when four of one level have
accumulated (:class:`_Runs`: O(log n) merges per row, where re-aggregating the whole state
per message would be quadratic), keyed by integer group ids (pyarrow: a run-wide text
dictionary; Polars: Categorical) because merging on strings costs 1.5-3 times as much.
Folding partial sums, and pre-aggregating, reassociate floating-point addition, hence the
``within-tolerance`` verdict of :func:`compare`.

**One core.** DuckDB: one connection with ``threads=1``. Polars sizes its thread pool
from ``POLARS_MAX_THREADS`` when it is first imported: this module sets it to 1 unless it
is already set, which works only if nothing imported Polars before; :func:`engine_threads`
reports what each engine really uses. pyarrow: joins and group-bys with
``use_threads=False`` (compute kernels are single-threaded); ``pa.set_cpu_count`` is not
touched (process-wide).

**Semantic gaps.** ``min``/``max`` over equal ``0.0`` and ``-0.0``: the reference keeps the
first, Polars and DuckDB keep either (``compare`` reports such rows as within tolerance,
naming them). Nothing else is known to differ: the unit tests hold every peer and mode to
the oracle on W1/W2 samples and on edge cases (bit-exact where sums are order-free).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import pyarrow as pa
import pyarrow.acero  # Acero's joins and group-bys: loaded here, not inside the first timed call
import pyarrow.compute as pc

from actors.config import TenantConfig
from actors.output import Row
from actors.payload import Message
from actors.query import MISSING

os.environ.setdefault("POLARS_MAX_THREADS", "1")
import duckdb  # after POLARS_MAX_THREADS: Polars reads it when first imported
import polars as pl

PEERS: tuple[str, ...] = ("pyarrow", "polars", "duckdb")
MODES: tuple[str, ...] = ("per-message", "bulk")

REL_TOLERANCE = 1e-9
"""Largest relative difference of a sum or avg accepted as ``within-tolerance``."""

_PolarsEngine = Literal["auto", "in-memory", "streaming"]
_AGG_CODE = {"sum": 0, "avg": 1, "count": 2, "min": 3, "max": 4}
_SERIES_SCHEMA = pa.schema([("sid", pa.int32()), ("metric", pa.string()), ("tags", pa.list_(pa.string()))])
_POINTS_SCHEMA = pa.schema([("sid", pa.int32()), ("ts", pa.int64()), ("value", pa.float64())])


# --- input ------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """Messages as Arrow tables, built once by :func:`prepare` and not timed.

    ``sid`` numbers series across all messages (message order, then series order), so the
    bulk tables are the per-message tables concatenated, and points are in arrival order.
    """

    messages: list[tuple[pa.Table, pa.Table]]
    """Per message: (series table, points table)."""
    series: pa.Table
    """All series: ``sid``, ``metric``, ``tags``."""
    points: pa.Table
    """All points: ``sid``, ``ts``, ``value``."""
    n_points: int


def prepare(cfg: TenantConfig, messages: Sequence[Message]) -> Prepared:
    """Converts decoded messages into the engine-neutral columnar input (see module doc).

    ``cfg`` is not used to shape the data: everything that depends on the queries is the
    engines' work inside :func:`run`."""
    del cfg
    per: list[tuple[pa.Table, pa.Table]] = []
    sid = 0
    for m in messages:
        s_ids, metrics, tags = [], [], []
        p_ids: list[int] = []
        ts: list[int] = []
        vs: list[float] = []
        for s in m.series:
            s_ids.append(sid)
            metrics.append(s.metric)
            tags.append(list(s.tags))
            for t, v in s.points:
                p_ids.append(sid)
                ts.append(t)
                vs.append(v)
            sid += 1
        series = pa.table([pa.array(s_ids, pa.int32()), pa.array(metrics, pa.string()), pa.array(tags, pa.list_(pa.string()))], schema=_SERIES_SCHEMA)
        points = pa.table([pa.array(p_ids, pa.int32()), pa.array(ts, pa.int64()), pa.array(vs, pa.float64())], schema=_POINTS_SCHEMA)
        per.append((series, points))
    all_series = pa.concat_tables([s for s, _ in per]).combine_chunks() if per else _SERIES_SCHEMA.empty_table()
    all_points = pa.concat_tables([p for _, p in per]).combine_chunks() if per else _POINTS_SCHEMA.empty_table()
    return Prepared(per, all_series, all_points, all_points.num_rows)


# --- the queries as tables ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """The tenant's queries as small relations every engine joins against."""

    ids: tuple[str, ...]
    interval: int
    queries: pa.Table
    """``qid`` (index in the config), ``metric``, ``n_pos`` (distinct positive terms), ``agg`` (code)."""
    exact_terms: pa.Table
    """``term_id``, ``tag``: terms that hold when the series carries exactly ``tag``."""
    prefix_terms: pa.Table
    """``term_id``, ``key``, ``prefix``: terms that hold when some ``key`` tag's value starts with ``prefix``."""
    query_terms: pa.Table
    """``qid``, ``term_id``, ``neg``: distinct (query, term, negated)."""
    by_keys: pa.Table
    """``qid``, ``pos``, ``key``: the group-by keys in output order."""
    kv_keys: pa.Table
    """``key``: keys whose values some query needs (group-by and prefix-term keys)."""
    max_by: int


def _plan(cfg: TenantConfig) -> _Plan:
    term_ids: dict[tuple[str, str, str], int] = {}
    exact: list[tuple[int, str]] = []
    prefix: list[tuple[int, str, str]] = []
    qterms: set[tuple[int, int, bool]] = set()
    q_rows: list[tuple[int, str, int, int]] = []
    by_rows: list[tuple[int, int, str]] = []
    kv_keys: set[str] = set()
    for qid, q in enumerate(cfg.queries):
        pos_terms: set[int] = set()
        for t in q.filter:
            ident = ("p", t.key or "", t.prefix or "") if t.is_prefix else ("e", t.tag or "", "")
            tid = term_ids.get(ident)
            if tid is None:
                tid = term_ids[ident] = len(term_ids)
                if t.is_prefix:
                    prefix.append((tid, ident[1], ident[2]))
                    kv_keys.add(ident[1])
                else:
                    exact.append((tid, ident[1]))
            qterms.add((qid, tid, t.negated))
            if not t.negated:
                pos_terms.add(tid)
        q_rows.append((qid, q.metric, len(pos_terms), _AGG_CODE[q.agg]))
        for i, k in enumerate(q.by):
            by_rows.append((qid, i, k))
            kv_keys.add(k)
    qt = sorted(qterms)

    def col(rows: Sequence[tuple[Any, ...]], i: int, typ: pa.DataType) -> pa.Array:
        return pa.array([r[i] for r in rows], typ)

    i32, s = pa.int32(), pa.string()
    return _Plan(
        ids=tuple(q.id for q in cfg.queries),
        interval=cfg.interval_s,
        queries=pa.table({"qid": col(q_rows, 0, i32), "metric": col(q_rows, 1, s), "n_pos": col(q_rows, 2, i32), "agg": col(q_rows, 3, pa.int8())}),
        exact_terms=pa.table({"term_id": col(exact, 0, i32), "tag": col(exact, 1, s)}),
        prefix_terms=pa.table({"term_id": col(prefix, 0, i32), "key": col(prefix, 1, s), "prefix": col(prefix, 2, s)}),
        query_terms=pa.table({"qid": col(qt, 0, i32), "term_id": col(qt, 1, i32), "neg": col(qt, 2, pa.bool_())}),
        by_keys=pa.table({"qid": col(by_rows, 0, i32), "pos": col(by_rows, 1, i32), "key": col(by_rows, 2, s)}),
        kv_keys=pa.table({"key": pa.array(sorted(kv_keys), s)}),
        max_by=max((len(q.by) for q in cfg.queries), default=0),
    )


def _to_rows(ids: Sequence[str], qid: list[int], bucket: list[int], grp: list[str], value: list[float]) -> list[Row]:
    return [Row(ids[q], b, g, v) for q, b, g, v in zip(qid, bucket, grp, value, strict=True)]


T = TypeVar("T")


class _Runs(Generic[T]):
    """Running state for engines without a keyed upsert (immutable tables): a stack of runs
    of partial aggregates, each with a level; whenever the top ``FAN_IN`` runs share a
    level they are merged into one run of the next level (a base-``FAN_IN`` counter).
    Each message's partial is folded in as it arrives; a row takes part in
    O(log n) merges instead of the whole state being re-aggregated per message."""

    FAN_IN = 4

    def __init__(self, merge: Callable[[list[T]], T], size: Callable[[T], int]) -> None:
        self.merge, self.size = merge, size
        self.runs: list[tuple[int, T]] = []

    def fold(self, part: T) -> None:
        if self.size(part) == 0:
            return
        self.runs.append((0, part))
        k = self.FAN_IN
        while len(self.runs) >= k and all(level == self.runs[-1][0] for level, _ in self.runs[-k:]):
            level = self.runs[-1][0]
            merged = self.merge([run for _, run in self.runs[-k:]])
            del self.runs[-k:]
            self.runs.append((level + 1, merged))

    def final(self) -> T | None:
        """The whole state as one run."""
        if not self.runs:
            return None
        return self.runs[0][1] if len(self.runs) == 1 else self.merge([run for _, run in self.runs])


# --- pyarrow ------------------------------------------------------------------------------------


_PARTIAL_SCHEMA = pa.schema(
    [("qid", pa.int64()), ("bucket", pa.int64()), ("grp", pa.string()), ("s", pa.float64()), ("c", pa.int64()), ("mn", pa.float64()), ("mx", pa.float64())]
)


_STATS = [("value", "sum"), ("value", "count"), ("value", "min"), ("value", "max")]
_STAT_COLS = [("s", "sum"), ("c", "count"), ("mn", "min"), ("mx", "max")]
_MERGE = [("s", "sum"), ("c", "sum"), ("mn", "min"), ("mx", "max")]


def _arr(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return col


def _group(owner: pa.Array, items: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The distinct owners (ascending) and, for each, its items as a list (input order kept:
    the sort is stable). Probing ``index_in(x, owners)`` then ``take`` fans rows out."""
    order = pc.sort_indices(owner)
    counts = pc.value_counts(pc.take(owner, order))
    offsets = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(counts.field("counts"))])
    return counts.field("values"), pa.LargeListArray.from_arrays(offsets, pc.take(items, order))


def _fan(lists: pa.Array, index: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``lists[index]`` flattened, and for each item the position in ``index`` it came from."""
    picked = pc.take(lists, index)
    return pc.list_flatten(picked), pc.list_parent_indices(picked)


class _Arrow:
    """pyarrow compute kernels: hash lookups (``index_in``, ``dictionary_encode``,
    ``value_counts``) and list fan-outs (``take`` + ``list_flatten``) instead of Acero joins,
    whose fixed cost (~0.2 ms each) would dominate per-message work; one Acero group-by per
    batch for the aggregation. Single-threaded (``use_threads=False``)."""

    def __init__(self, plan: _Plan) -> None:
        self.p = plan
        queries = plan.queries.to_pylist()
        self.nq = len(queries)
        metrics = sorted({q["metric"] for q in queries})
        m_index = {m: i for i, m in enumerate(metrics)}
        self.metrics = pa.array(metrics, pa.string())
        self.q_metric = pa.array([m_index[q["metric"]] for q in queries], pa.int64())
        self.n_pos = pa.array([q["n_pos"] for q in queries], pa.int64())
        self.agg = pa.array([q["agg"] for q in queries], pa.int8())
        lists = pa.large_list(pa.int64())
        self.cross_by_metric = pa.array([[q["qid"] for q in queries if q["metric"] == m and q["n_pos"] == 0] for m in metrics], lists)
        n_terms = plan.exact_terms.num_rows + plan.prefix_terms.num_rows
        pos: list[list[int]] = [[] for _ in range(n_terms)]
        neg: list[list[int]] = [[] for _ in range(n_terms)]
        for r in plan.query_terms.to_pylist():
            (neg if r["neg"] else pos)[r["term_id"]].append(r["qid"])
        self.pos_by_term, self.neg_by_term = pa.array(pos, lists), pa.array(neg, lists)
        self.exact_tags = _arr(plan.exact_terms["tag"])
        self.exact_ids = pc.cast(_arr(plan.exact_terms["term_id"]), pa.int64())
        # A prefix term key:pre* holds when a tag starts with "key:pre" (keys have no ':').
        # pyarrow's starts_with takes one pattern, not a column, so the patterns are grouped
        # by byte length n and looked up against every tag's first n bytes.
        by_len: dict[int, list[tuple[bytes, int]]] = {}
        for r in plan.prefix_terms.to_pylist():
            pattern = f"{r['key']}:{r['prefix']}".encode()
            by_len.setdefault(len(pattern), []).append((pattern, r["term_id"]))
        self.prefix_groups = [(n, pa.array([p for p, _ in ts], pa.binary()), pa.array([t for _, t in ts], pa.int64())) for n, ts in sorted(by_len.items())]
        by = plan.by_keys.to_pylist()
        keys = sorted({r["key"] for r in by})
        k_index = {k: i for i, k in enumerate(keys)}
        self.nk = len(keys)
        self.by_keys = pa.array(keys, pa.string())
        self.missing_part = pa.array([f"{k}:{MISSING}" for k in keys], pa.string())
        key_at = {(r["qid"], r["pos"]): k_index[r["key"]] for r in by}
        self.by_kidx = [pa.array([key_at.get((q, i)) for q in range(self.nq)], pa.int64()) for i in range(plan.max_by)]
        self.texts = pa.array([], pa.string())
        """Group texts seen so far (per-message mode), indexed by the state's integer ``grp``."""

    def partial(self, series: pa.Table, points: pa.Table) -> pa.Table:
        """(qid, bucket, grp, s, c, mn, mx) of one batch of series and their points."""
        if series.num_rows == 0 or points.num_rows == 0:
            return _PARTIAL_SCHEMA.empty_table()
        nq = self.nq
        tags = _arr(series["tags"])
        # Distinct (series, tag) pairs; tag work happens once per distinct tag text.
        enc = pc.dictionary_encode(pc.list_flatten(tags))
        utags = enc.dictionary
        nt = len(utags)
        pair = pc.unique(pc.add(pc.multiply(pc.list_parent_indices(tags), nt), pc.cast(enc.indices, pa.int64())))
        ps = pc.divide(pair, nt)
        pt = pc.subtract(pair, pc.multiply(ps, nt))
        # Term hits (series, term).
        term_of = [pc.take(self.exact_ids, pc.index_in(utags, value_set=self.exact_tags))]
        if self.prefix_groups:
            ubin = pc.cast(utags, pa.binary())
            term_of += [pc.take(ids, pc.index_in(pc.binary_slice(ubin, 0, n), value_set=pats)) for n, pats, ids in self.prefix_groups]
        hs_parts, ht_parts = [], []
        for tu in term_of:
            t = pc.take(tu, pt)
            hit = pc.is_valid(t)
            hs_parts.append(pc.filter(ps, hit))
            ht_parts.append(pc.filter(t, hit))
        hs, ht = pa.concat_arrays(hs_parts), pa.concat_arrays(ht_parts)
        smetric = pc.index_in(_arr(series["metric"]), value_set=self.metrics)
        # Matches: queries with positive terms, from their hits ...
        q_neg, at = _fan(self.neg_by_term, ht)
        neg_keys = pc.add(pc.multiply(pc.take(hs, at), nq), q_neg)
        q_pos, at = _fan(self.pos_by_term, ht)
        counts = pc.value_counts(pc.add(pc.multiply(pc.take(hs, at), nq), q_pos))
        cand = counts.field("values")
        cs = pc.divide(cand, nq)
        cq = pc.subtract(cand, pc.multiply(cs, nq))
        ok = pc.and_(pc.equal(counts.field("counts"), pc.take(self.n_pos, cq)), pc.equal(pc.take(smetric, cs), pc.take(self.q_metric, cq)))
        if len(neg_keys):
            ok = pc.and_(ok, pc.invert(pc.is_in(cand, value_set=neg_keys)))
        # ... and queries without positive terms, from every series of their metric.
        xq, xs = _fan(self.cross_by_metric, smetric)
        if len(neg_keys):
            keep = pc.invert(pc.is_in(pc.add(pc.multiply(xs, nq), xq), value_set=neg_keys))
            xq, xs = pc.filter(xq, keep), pc.filter(xs, keep)
        ms = pa.concat_arrays([pc.filter(cs, ok), xs])
        mq = pa.concat_arrays([pc.filter(cq, ok), xq])
        # Groups, as integer combination ids (texts are built once per distinct group).
        if self.p.max_by:
            ms, mq, combo, texts = self._groups(utags, ps, pt, ms, mq)
            # Two combinations can render to one text (values containing ','): one group.
            tenc = pc.dictionary_encode(texts)
            combo, texts = pc.take(pc.cast(tenc.indices, pa.int64()), combo), tenc.dictionary
        else:
            combo, texts = pa.repeat(pa.scalar(0, pa.int64()), len(ms)), pa.array([""], pa.string())
        nc = max(len(texts), 1)
        penc = pc.dictionary_encode(pc.add(pc.multiply(mq, nc), combo))
        upk = penc.dictionary
        g_q = pc.divide(upk, nc)
        g_text = pc.take(texts, pc.subtract(upk, pc.multiply(g_q, nc)))
        # Points: finite ones, bucketed, fanned out to the groups of their series.
        value = _arr(points["value"])
        fin = pc.is_finite(value)
        value = pc.filter(value, fin)
        ts = pc.filter(_arr(points["ts"]), fin)
        psid = pc.index_in(pc.filter(_arr(points["sid"]), fin), value_set=_arr(series["sid"]))
        r = pc.subtract(ts, pc.multiply(pc.divide(ts, self.p.interval), self.p.interval))  # truncated remainder, sign of ts
        bucket = pc.if_else(pc.less(r, 0), pc.subtract(pc.subtract(ts, r), self.p.interval), pc.subtract(ts, r))
        owners, gid_lists = _group(ms, penc.indices)
        # Pre-aggregate per (series, bucket) before the fan-out (a series lands in many
        # (query, group)s in W2): fewer rows to fan out and hash, partial sums reassociated.
        x0 = pa.table({"sid": psid, "bucket": bucket, "value": value}).group_by(["sid", "bucket"], use_threads=False).aggregate(_STATS)
        gid, at = _fan(gid_lists, pc.index_in(x0["sid"], value_set=owners))
        x = pa.table({"gid": gid, "bucket": pc.take(x0["bucket"], at), **{c: pc.take(x0[f"value_{f}"], at) for c, f in _STAT_COLS}})
        a = x.group_by(["gid", "bucket"], use_threads=False).aggregate(_MERGE)
        return pa.table([pc.take(g_q, a["gid"]), a["bucket"], pc.take(g_text, a["gid"]), *(a[f"{c}_{f}"] for c, f in _MERGE)], schema=_PARTIAL_SCHEMA)

    def _groups(self, utags: pa.Array, ps: pa.Array, pt: pa.Array, ms: pa.Array, mq: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
        """Fans matched (series, query) rows out to their groups, one by-position at a time.

        A row's group is an integer: at each position the pair (previous id, part) is
        dictionary-encoded, where the part is the tag "key:value" itself (a series' tags are
        distinct), "key:N/A", or none (the query has fewer keys). Returns the rows
        (series, query, group id) and the text of every group id."""
        nk, nt = self.nk, len(utags)
        none = nt + nk
        split = pc.split_pattern(utags, ":", max_splits=1)
        ukey = pc.if_else(pc.equal(pc.list_value_length(split), 2), pc.list_element(split, 0), pa.scalar(None, pa.string()))
        kid = pc.take(pc.index_in(ukey, value_set=self.by_keys), pt)
        has = pc.is_valid(kid)
        owners, lists = _group(pc.add(pc.multiply(pc.filter(ps, has), nk), pc.filter(kid, has)), pc.filter(pt, has))
        # Choices of part per row: a (series, key)'s tags, else that key's N/A, else none.
        choices = pa.concat_arrays([lists, pa.array([[nt + k] for k in range(nk)] + [[none]], pa.large_list(pa.int64()))])
        n_owners = len(owners)
        n_parts = none + 1
        combo = pa.repeat(pa.scalar(0, pa.int64()), len(ms))
        levels = []
        for kq in self.by_kidx:
            k = pc.take(kq, mq)
            u = pc.index_in(pc.add(pc.multiply(ms, nk), k), value_set=owners)
            part, at = _fan(choices, pc.coalesce(pc.cast(u, pa.int64()), pc.add(k, n_owners), n_owners + nk))
            ms, mq = pc.take(ms, at), pc.take(mq, at)
            enc = pc.dictionary_encode(pc.add(pc.multiply(pc.take(combo, at), n_parts), part))
            combo = pc.cast(enc.indices, pa.int64())
            levels.append(enc.dictionary)
        # Texts of the final ids, walking the levels back.
        part_text = pa.concat_arrays([utags, self.missing_part, pa.array([None], pa.string())])
        ids = levels[-1]
        texts = []
        for level in reversed(levels):
            pair = pc.take(level, ids) if level is not levels[-1] else ids
            prev = pc.divide(pair, n_parts)
            texts.append(pc.take(part_text, pc.subtract(pair, pc.multiply(prev, n_parts))))
            ids = prev
        # Joined after a leading "" that is then sliced off with its ',': with
        # null_handling="skip", pyarrow drops rows whose inputs are all null.
        lead = pa.repeat(pa.scalar("", pa.string()), len(ids))
        return ms, mq, combo, pc.utf8_slice_codeunits(pc.binary_join_element_wise(lead, *reversed(texts), ",", null_handling="skip"), 1)

    def keyed(self, part: pa.Table) -> pa.Table:
        """A partial with its group text replaced by a run-wide integer id: merging on
        integer keys is about three times faster than on strings in Acero's group-by."""
        enc = pc.dictionary_encode(_arr(part["grp"]))
        known = pc.cast(pc.index_in(enc.dictionary, value_set=self.texts), pa.int64())
        if known.null_count:
            new = pc.is_null(known)
            rank = pc.subtract(pc.cumulative_sum(pc.cast(new, pa.int64())), 1)
            known = pc.coalesce(known, pc.add(rank, len(self.texts)))
            self.texts = pa.concat_arrays([self.texts, pc.filter(enc.dictionary, new)])
        return part.set_column(2, "grp", pc.take(known, enc.indices))

    @staticmethod
    def merge(parts: list[pa.Table]) -> pa.Table:
        a = pa.concat_tables(parts).group_by(["qid", "bucket", "grp"], use_threads=False).aggregate(_MERGE)
        return pa.table([a["qid"], a["bucket"], a["grp"], *(a[f"{c}_{f}"] for c, f in _MERGE)], names=_PARTIAL_SCHEMA.names)

    def rows(self, a: pa.Table | None) -> list[Row]:
        if a is None or a.num_rows == 0:
            return []
        grp = a["grp"] if pa.types.is_string(a.schema.field("grp").type) else pc.take(self.texts, a["grp"])
        s = pc.add(a["s"], 0.0)
        c = pc.cast(a["c"], pa.float64())
        value = pc.choose(pc.take(self.agg, a["qid"]), s, pc.divide(s, c), c, a["mn"], a["mx"])
        return _to_rows(self.p.ids, a["qid"].to_pylist(), a["bucket"].to_pylist(), grp.to_pylist(), value.to_pylist())


def _run_pyarrow(mode: str, plan: _Plan, prepared: Prepared) -> list[Row]:
    eng = _Arrow(plan)
    if mode == "bulk":
        return eng.rows(eng.partial(prepared.series, prepared.points))
    state = _Runs[pa.Table](eng.merge, lambda t: t.num_rows)
    for series, points in prepared.messages:
        state.fold(eng.keyed(eng.partial(series, points)))
    return eng.rows(state.final())


# --- Polars -------------------------------------------------------------------------------------


class _Polars:
    """Polars: each batch's whole plan is one lazy query, optimized and collected once."""

    def __init__(self, plan: _Plan) -> None:
        self.p = plan
        q = pl.DataFrame(pl.from_arrow(plan.queries))
        self.q = q.select("qid", "agg")
        self.q_hit = q.filter(pl.col("n_pos") > 0).select("qid", "metric", "n_pos").lazy()
        self.q_cross = q.filter(pl.col("n_pos") == 0).select("qid", "metric").lazy()
        self.has_cross = self.q_cross.collect().height > 0
        self.et = pl.DataFrame(pl.from_arrow(plan.exact_terms)).lazy()
        self.pt = pl.DataFrame(pl.from_arrow(plan.prefix_terms)).lazy()
        self.has_prefix = plan.prefix_terms.num_rows > 0
        self.qt = pl.DataFrame(pl.from_arrow(plan.query_terms)).lazy()
        self.kv_keys = pl.DataFrame(pl.from_arrow(plan.kv_keys)).lazy()
        self.has_kv = plan.kv_keys.num_rows > 0
        by = pl.DataFrame(pl.from_arrow(plan.by_keys))
        self.by_pos = [by.filter(pl.col("pos") == i).select("qid", "key").lazy() for i in range(plan.max_by)]

    def partial(self, series_tbl: pa.Table, points_tbl: pa.Table, engine: _PolarsEngine, grp_type: type[pl.DataType]) -> pl.DataFrame:
        """(qid, bucket, grp, s, c, mn, mx) of one batch of series and their points.

        Per message, ``grp`` is Categorical (process-wide integer codes), which makes the
        state's merges hash integers, not strings (about a third faster)."""
        series = pl.DataFrame(pl.from_arrow(series_tbl)).lazy()
        points = pl.DataFrame(pl.from_arrow(points_tbl)).lazy()
        t = series.select("sid", tag=pl.col("tags")).explode("tag").drop_nulls("tag")
        kv: pl.LazyFrame | None = None
        if self.has_kv:
            kv = (
                t.filter(pl.col("tag").str.contains(":", literal=True))
                .select("sid", pl.col("tag").str.splitn(":", 2).struct.rename_fields(["key", "value"]).alias("kv"))
                .unnest("kv")
                .join(self.kv_keys, on="key", how="semi")
                .unique()
            )
        hits = [t.join(self.et, on="tag").select("sid", "term_id")]
        if kv is not None and self.has_prefix:
            hits.append(kv.join(self.pt, on="key").filter(pl.col("value").str.starts_with(pl.col("prefix"))).select("sid", "term_id"))
        h = pl.concat(hits).unique()
        neg = pl.col("neg")
        qh = h.join(self.qt, on="term_id").group_by("sid", "qid").agg(pos=(~neg).sum(), neg=neg.sum())
        sm = series.select("sid", "metric")
        hit = (
            qh.join(self.q_hit, on="qid").filter((pl.col("pos") == pl.col("n_pos")) & (pl.col("neg") == 0)).join(sm, on=["sid", "metric"]).select("sid", "qid")
        )
        parts = [hit]
        if self.has_cross:
            cross = sm.join(self.q_cross, on="metric").select("sid", "qid")
            parts.append(cross.join(qh.filter(pl.col("neg") > 0).select("sid", "qid"), on=["sid", "qid"], how="anti"))
        g = pl.concat(parts).with_columns(grp=pl.lit("", pl.String))
        for i, by in enumerate(self.by_pos):
            assert kv is not None
            g = g.join(by, on="qid", how="left").join(kv, on=["sid", "key"], how="left")
            part = pl.col("key") + ":" + pl.col("value").fill_null(MISSING)
            text = part if i == 0 else pl.col("grp") + "," + part
            g = g.select("sid", "qid", grp=pl.when(pl.col("key").is_null()).then(pl.col("grp")).otherwise(text))
        keys = g.select("qid", "grp").unique().with_row_index("gid")
        gs = g.join(keys, on=["qid", "grp"]).select("sid", "gid")
        iv = self.p.interval
        v = pl.col("value")
        # Pre-aggregate per (series, bucket) before the fan-out to (query, group)s.
        pts = (
            points.filter(v.is_finite())
            .group_by("sid", (pl.col("ts") - pl.col("ts") % iv).alias("bucket"))
            .agg(s=v.sum(), c=v.count().cast(pl.Int64), mn=v.min(), mx=v.max())
        )
        a = pts.join(gs, on="sid").group_by("gid", "bucket").agg(pl.col("s").sum(), pl.col("c").sum(), pl.col("mn").min(), pl.col("mx").max())
        return a.join(keys, on="gid").select("qid", "bucket", pl.col("grp").cast(grp_type), "s", "c", "mn", "mx").collect(engine=engine)

    @staticmethod
    def merge(parts: list[pl.DataFrame]) -> pl.DataFrame:
        return pl.concat(parts).group_by("qid", "bucket", "grp").agg(pl.col("s").sum(), pl.col("c").sum(), pl.col("mn").min(), pl.col("mx").max())

    def rows(self, a: pl.DataFrame | None) -> list[Row]:
        if a is None or a.height == 0:
            return []
        agg, s, c = pl.col("agg"), pl.col("s") + 0.0, pl.col("c").cast(pl.Float64)
        value = pl.when(agg == 0).then(s).when(agg == 1).then(s / c).when(agg == 2).then(c).when(agg == 3).then(pl.col("mn")).otherwise(pl.col("mx"))
        out = a.join(self.q, on="qid").select("qid", "bucket", pl.col("grp").cast(pl.String), value.alias("value"))
        return _to_rows(self.p.ids, out["qid"].to_list(), out["bucket"].to_list(), out["grp"].to_list(), out["value"].to_list())


def _run_polars(mode: str, plan: _Plan, prepared: Prepared) -> list[Row]:
    eng = _Polars(plan)
    if mode == "bulk":
        return eng.rows(eng.partial(prepared.series, prepared.points, "auto", pl.String))
    state = _Runs[pl.DataFrame](eng.merge, lambda t: t.height)
    for series, points in prepared.messages:
        state.fold(eng.partial(series, points, "in-memory", pl.Categorical))
    return eng.rows(state.final())


# --- DuckDB -------------------------------------------------------------------------------------


class _DuckDB:
    """DuckDB SQL on registered Arrow tables: one statement per batch covering every query."""

    def __init__(self, plan: _Plan, con: duckdb.DuckDBPyConnection) -> None:
        self.p, self.con = plan, con
        for name, tbl in (
            ("cfg_q", plan.queries),
            ("cfg_et", plan.exact_terms),
            ("cfg_pt", plan.prefix_terms),
            ("cfg_qt", plan.query_terms),
            ("cfg_qb", plan.by_keys),
            ("cfg_kvkeys", plan.kv_keys),
        ):
            con.register(name, tbl)
        self.sql = self._partial_sql()

    def _partial_sql(self) -> str:
        """The query giving (qid, bucket, grp, s, c, mn, mx) of the series in ``in_s`` and
        the points in ``in_p``. No user text is spliced in: strings come from the tables."""
        p = self.p
        ctes = ["t AS (SELECT sid, unnest(tags) AS tag FROM in_s)"]
        has_kv = p.kv_keys.num_rows > 0
        if has_kv:
            ctes.append(
                "kv AS (SELECT DISTINCT sid, key, value FROM ("
                "SELECT sid, substr(tag, 1, instr(tag, ':') - 1) AS key, substr(tag, instr(tag, ':') + 1) AS value FROM t WHERE instr(tag, ':') > 0"
                ") WHERE key IN (SELECT key FROM cfg_kvkeys))"
            )
        hits = ["SELECT t.sid, e.term_id FROM t JOIN cfg_et e ON t.tag = e.tag"]
        if has_kv and p.prefix_terms.num_rows:
            hits.append("SELECT kv.sid, pt.term_id FROM kv JOIN cfg_pt pt ON kv.key = pt.key AND starts_with(kv.value, pt.prefix)")
        ctes.append(f"hits AS (SELECT DISTINCT sid, term_id FROM ({' UNION ALL '.join(hits)}))")
        ctes.append(
            "qh AS (SELECT h.sid, qt.qid, count(*) FILTER (WHERE NOT qt.neg) AS npos, count(*) FILTER (WHERE qt.neg) AS nneg "
            "FROM hits h JOIN cfg_qt qt ON h.term_id = qt.term_id GROUP BY h.sid, qt.qid)"
        )
        matches = [
            "SELECT qh.sid, qh.qid FROM qh JOIN cfg_q q ON q.qid = qh.qid JOIN in_s s ON s.sid = qh.sid AND s.metric = q.metric "
            "WHERE q.n_pos > 0 AND qh.npos = q.n_pos AND qh.nneg = 0"
        ]
        if pc.any(pc.equal(p.queries["n_pos"], 0)).as_py():
            matches.append(
                "SELECT s.sid, q.qid FROM in_s s JOIN cfg_q q ON q.metric = s.metric AND q.n_pos = 0 "
                "ANTI JOIN (SELECT sid, qid FROM qh WHERE nneg > 0) n ON n.sid = s.sid AND n.qid = q.qid"
            )
        ctes.append(f"g0 AS (SELECT sid, qid, '' AS grp FROM ({' UNION ALL '.join(matches)}))")
        for i in range(p.max_by):
            text = "b.key || ':' || coalesce(kv.value, 'N/A')"
            if i:
                text = "g.grp || ',' || " + text
            ctes.append(
                f"g{i + 1} AS (SELECT g.sid, g.qid, CASE WHEN b.key IS NULL THEN g.grp ELSE {text} END AS grp FROM g{i} g "
                f"LEFT JOIN cfg_qb b ON b.qid = g.qid AND b.pos = {i} LEFT JOIN kv ON kv.sid = g.sid AND kv.key = b.key)"
            )
        iv = int(p.interval)
        bucket = f"ts - ((ts % {iv}) + {iv}) % {iv}"
        # Pre-aggregate per (series, bucket) before the fan-out, and aggregate on an integer
        # group id rather than the group text (half the time in bulk).
        ctes += [
            f"keys AS (SELECT qid, grp, row_number() OVER () AS gid FROM (SELECT DISTINCT qid, grp FROM g{p.max_by}))",
            f"gs AS (SELECT g.sid, k.gid FROM g{p.max_by} g JOIN keys k ON k.qid = g.qid AND k.grp = g.grp)",
            f"pts AS (SELECT sid, {bucket} AS bucket, sum(value) AS s, count(*) AS c, min(value) AS mn, max(value) AS mx "
            "FROM in_p WHERE isfinite(value) GROUP BY ALL)",
            "a AS (SELECT gs.gid, pts.bucket, sum(s) AS s, sum(c) AS c, min(mn) AS mn, max(mx) AS mx FROM pts JOIN gs ON gs.sid = pts.sid GROUP BY ALL)",
        ]
        return f"WITH {', '.join(ctes)} SELECT k.qid, a.bucket, k.grp, a.s, a.c, a.mn, a.mx FROM a JOIN keys k ON k.gid = a.gid"

    _VALUE = "CASE q.agg WHEN 0 THEN a.s + 0.0::DOUBLE WHEN 1 THEN (a.s + 0.0::DOUBLE) / a.c WHEN 2 THEN a.c::DOUBLE WHEN 3 THEN a.mn ELSE a.mx END AS value"

    def rows_of(self, source: str) -> list[Row]:
        out = self.con.sql(f"SELECT a.qid, a.bucket, a.grp, {self._VALUE} FROM ({source}) a JOIN cfg_q q ON q.qid = a.qid").to_arrow_table()
        return _to_rows(self.p.ids, out["qid"].to_pylist(), out["bucket"].to_pylist(), out["grp"].to_pylist(), out["value"].to_pylist())

    def bulk(self, prepared: Prepared) -> list[Row]:
        self.con.register("in_s", prepared.series)
        self.con.register("in_p", prepared.points)
        return self.rows_of(self.sql)

    def per_message(self, prepared: Prepared) -> list[Row]:
        con = self.con
        con.execute(
            "CREATE TEMP TABLE state (qid INTEGER, bucket BIGINT, grp VARCHAR, s DOUBLE, c BIGINT, mn DOUBLE, mx DOUBLE, PRIMARY KEY (qid, bucket, grp))"
        )
        upsert = (
            f"INSERT INTO state SELECT * FROM ({self.sql}) ON CONFLICT DO UPDATE SET s = s + EXCLUDED.s, c = c + EXCLUDED.c, "
            "mn = CASE WHEN EXCLUDED.mn < mn THEN EXCLUDED.mn ELSE mn END, mx = CASE WHEN EXCLUDED.mx > mx THEN EXCLUDED.mx ELSE mx END"
        )
        for series, points in prepared.messages:
            con.register("in_s", series)
            con.register("in_p", points)
            con.execute(upsert)
        return self.rows_of("SELECT * FROM state")


def _run_duckdb(mode: str, plan: _Plan, prepared: Prepared) -> list[Row]:
    con = duckdb.connect(config={"threads": 1})
    try:
        eng = _DuckDB(plan, con)
        return eng.bulk(prepared) if mode == "bulk" else eng.per_message(prepared)
    finally:
        con.close()


# --- entry points --------------------------------------------------------------------------------

_RUNNERS: dict[str, Callable[[str, _Plan, Prepared], list[Row]]] = {"pyarrow": _run_pyarrow, "polars": _run_polars, "duckdb": _run_duckdb}


def run(peer: str, mode: str, cfg: TenantConfig, prepared: Prepared) -> list[Row]:
    """Every row (all buckets flushed) of ``cfg``'s queries over ``prepared``, computed by
    ``peer`` in ``mode``; the caller times this call. Rows are in no particular order."""
    if peer not in _RUNNERS:
        raise ValueError(f"unknown peer {peer!r}; expected one of {', '.join(PEERS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    return _RUNNERS[peer](mode, _plan(cfg), prepared)


def engine_threads() -> dict[str, int]:
    """Threads each engine really uses (for the bench to print): Polars' pool is fixed at import."""
    con = duckdb.connect(config={"threads": 1})
    try:
        row = con.execute("SELECT current_setting('threads')").fetchone()
    finally:
        con.close()
    return {"pyarrow": 1, "polars": pl.thread_pool_size(), "duckdb": int(row[0]) if row else -1}


# --- agreement ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """How a peer's rows agree with the reference's."""

    verdict: str
    """``exact``: the same rows with bit-identical values (so equal ``output_hash``);
    ``within-tolerance``: the same rows, counts/min/max equal (``0.0 == -0.0``), sums and
    averages within :data:`REL_TOLERANCE` (summation order differs); ``wrong``: otherwise."""
    detail: str
    """The first difference (empty when exact)."""


def _bits(v: float) -> bytes:
    return struct.pack("<d", v)


def _rel_diff(a: float, b: float) -> float:
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return 0.0 if a == b else math.inf
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale


def _keyed(rows: Sequence[Row], who: str) -> tuple[dict[tuple[str, int, str], float], str]:
    out: dict[tuple[str, int, str], float] = {}
    for r in rows:
        key = (r.query, r.bucket, r.group)
        if key in out:
            return out, f"{who} has row {key} twice"
        out[key] = r.value
    return out, ""


def compare(rows: Sequence[Row], reference: Sequence[Row], cfg: TenantConfig | None = None) -> Agreement:
    """Compares ``rows`` with ``reference`` (the oracle's). With ``cfg``, each row's
    aggregation is known and ``count``/``min``/``max`` must be equal, only ``sum``/``avg``
    get the tolerance; without it every value gets the tolerance (a count that differs by
    one still fails unless it is above 10^9)."""
    got, dup = _keyed(rows, "output")
    want, dup_ref = _keyed(reference, "reference")
    if dup or dup_ref:
        return Agreement("wrong", dup or dup_ref)
    missing = sorted(want.keys() - got.keys())
    extra = sorted(got.keys() - want.keys())
    if missing or extra:
        first = [f"missing row {missing[0]} (reference value {want[missing[0]]!r})"] if missing else []
        first += [f"extra row {extra[0]} (value {got[extra[0]]!r})"] if extra else []
        return Agreement("wrong", f"{len(missing)} rows missing, {len(extra)} extra; " + "; ".join(first))
    agg_of = {q.id: q.agg for q in cfg.queries} if cfg is not None else {}
    first_off, n_off, worst = "", 0, 0.0
    for k in sorted(want):  # canonical order: query, bucket, group
        a, b = got[k], want[k]
        if _bits(a) == _bits(b):
            continue
        agg = agg_of.get(k[0])
        diff = (0.0 if a == b else math.inf) if agg in ("count", "min", "max") else _rel_diff(a, b)
        if diff > REL_TOLERANCE:
            return Agreement("wrong", f"row {k} ({agg or 'aggregation unknown'}): value {a!r}, reference {b!r}")
        n_off += 1
        worst = max(worst, diff)
        first_off = first_off or f"row {k} ({agg or 'aggregation unknown'}): value {a!r}, reference {b!r}"
    if n_off == 0:
        return Agreement("exact", "")
    return Agreement("within-tolerance", f"{n_off} of {len(want)} values differ, largest relative difference {worst:.3g}; first: {first_off}")
