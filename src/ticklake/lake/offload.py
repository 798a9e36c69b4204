"""Offloading warm rows to the cold tier, exactly once.

**The watermark.** Each cold table carries a table property, ``ticklake.watermark``: the last
``stored_at`` second (Unix seconds) whose rows it holds. An offload takes the warm rows with
``stored_at`` in ``(watermark, cut]`` and, in ONE Iceberg transaction, appends them and sets the
watermark to ``cut``. The property and the data files become visible in the same catalog commit, so
there is no other state to get out of step: a crash before the commit leaves the old watermark (at
worst orphan data files, which maintenance removes); a crash after it leaves the new one, and a re-run
starts from it. Table properties survive snapshot expiry, unlike snapshot summaries (stack.md).

**Why stored_at is a sound watermark.** ClickHouse sets it at insert (``DEFAULT now()``, the server's
clock, whole seconds), whatever the trade's own time: a late trade, a backfill or a repair gets the
time it was stored, never a time in the past. So the rows of a second are complete once every insert
that started in it is visible. ``cut`` never passes the server's ``now() - safety_lag_s``: the
current second is still filling, and an insert started before it may still be running (a batch is
visible only when its insert ends). The lag must exceed the longest insert; with a replicated
ClickHouse it must also cover replication delay to the replica read from, or that replica must be
read with ``select_sequential_consistency``.

**Racing offloaders.** Each commit carries pyiceberg's requirement that the branch head is still the
snapshot the transaction started from; tables have ``commit.retry.num-retries=0``, so of two
offloaders that read the same watermark exactly one commits and the other fails with
``CommitFailedException`` (a retry would re-apply its append on the winner's snapshot: duplicates).

**Candles** (gold) are offloaded by window, not by ``stored_at``: only **closed** windows, those
that end at or before the bound, reach cold. Two properties per candle table, both moved in the
commit that carries the rows: ``ticklake.closed_before`` (every window starting before it has been
offloaded) and ``ticklake.watermark`` (changes up to this ``updated_at`` second are in cold). A late
trade, a repair or a re-derivation changes a warm candle and its ``updated_at``; the next run finds
the buckets before ``closed_before`` holding a candle changed after the watermark and rewrites those
buckets in cold (every market's candle of the bucket, one filtered overwrite in the same commit).

A warm row stored twice (ReplacingMergeTree keeps both until a merge) is offloaded twice: the writer
deduplicates before insert, so this takes a bug or a manual insert; the audit (docs/lake.md) is where
the cold tier should catch it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import In
from pyiceberg.table import Table

from ticklake.lake.arrow_cast import to_lake
from ticklake.lake.tables import LakeTable, ensure_table
from ticklake.lake.warm import WarmTier
from ticklake.times import iso_seconds
from ticklake.warehouse.sql import query

log = logging.getLogger(__name__)

WATERMARK = "ticklake.watermark"
CLOSED_BEFORE = "ticklake.closed_before"


@dataclass(frozen=True)
class Batch:
    """Warm rows stored in the seconds (lower, upper], in the cold table's exact Arrow schema.

    For candles: the closed windows in [closed_from, closed_before) plus the rewritten ``late_buckets``
    (Unix seconds) before closed_from; ``upper`` is then the new ``updated_at`` watermark."""

    lower: int
    upper: int
    rows: pa.Table
    closed_from: int = 0
    closed_before: int = 0
    late_buckets: tuple[int, ...] = ()


@dataclass(frozen=True)
class OffloadResult:
    table: str
    rows: int
    commits: int
    watermark: int  # after the run
    bound: int  # the stored_at second the run offloaded up to
    seconds: float


def watermark(table: Table) -> int:
    """The last stored_at second (Unix seconds) the cold table holds; 0 before the first offload."""
    return int(table.properties.get(WATERMARK, "0"))


def closed_before(table: Table) -> int:
    """Candle tables: every window starting before this second (Unix) is in cold; 0 before the first."""
    return int(table.properties.get(CLOSED_BEFORE, "0"))


def offload_bound(client: WarmTier, safety_lag_s: int) -> int:
    """The newest stored_at second that may be offloaded now (see the module docstring)."""
    return int(client.query(query("lake_offload_bound"), parameters={"safety_lag_s": safety_lag_s}).result_rows[0][0])


# Arrow from ClickHouse uncompressed (its default is LZ4 frames, which pyarrow then decompresses,
# copying every buffer): over a server's HTTP the transport compresses anyway.
_ARROW_SETTINGS = {"output_format_arrow_compression_method": "none"}


def read_warm(client: WarmTier, spec: LakeTable, parameters: dict[str, int]) -> pa.Table:
    """The warm rows ``spec.select_query`` selects, in the cold table's exact schema and sort order.

    The queries return their rows in the table's sort order (ORDER BY ``sort_keys``): ClickHouse sorts
    on all cores, where a pyarrow sort copied every column once more (its ``take``). Measured on 1M
    silver trades, read + cast + sort: 0.5-0.8 s with the pyarrow sort, 0.34-0.45 s this way; most of
    what is left is ClickHouse's conversion to Arrow and the copy of the result into Python."""
    rows = client.query_arrow(query(spec.select_query), parameters=parameters, settings=_ARROW_SETTINGS)
    return to_lake(rows, spec, sort=False)


def prepare(client: WarmTier, table: Table, spec: LakeTable, bound: int, max_rows: int) -> Batch | None:
    """The next batch to offload, up to the second ``bound``; None when nothing is stored beyond the
    watermark. Reads the watermark from ``table`` as loaded: its commit fails if another offloader
    committed since."""
    lower = watermark(table)
    if bound <= lower:
        return None
    cut = int(client.query(query("lake_stored_seconds"), parameters={
        "table": spec.name, "lower": lower, "upper": bound, "max_rows": max_rows}).result_rows[0][0])
    if cut == 0:
        # Nothing stored since the watermark: no commit (an empty snapshot a run would cost a manifest
        # and slow planning down); the next run scans the same seconds again, cheaply.
        return None
    rows = read_warm(client, spec, {"lower": lower, "upper": cut})
    return Batch(lower=lower, upper=cut, rows=rows)


def prepare_candles(client: WarmTier, table: Table, spec: LakeTable, bound: int, max_rows: int,
                    rewrite_late: bool = True) -> Batch | None:
    """The candle windows closed by the second ``bound`` and not yet in cold (at most about
    ``max_rows`` candles, whole buckets), plus the buckets to rewrite because a candle changed after
    the watermark. None when there is neither."""
    assert spec.timeframe is not None
    timeframe = spec.timeframe
    changed_after = watermark(table)
    closed_from = closed_before(table)
    closes = bound // timeframe * timeframe  # windows starting before this have ended by bound
    cut = closed_from
    if closes > closed_from:
        found = client.query(query("lake_gold_cut"), parameters={
            "timeframe": timeframe, "closed_from": closed_from, "closed_before": closes, "max_rows": max_rows,
        }).result_rows
        # No candle in the closed windows: nothing to commit (an empty snapshot costs a manifest); the
        # next run looks at the same windows again, cheaply.
        cut = int(found[0][0]) if found else closed_from
    if cut == closed_from and not rewrite_late:
        return None  # no window to add and no late bucket to look for: spare the candle query
    rows = read_warm(client, spec, {
        "timeframe": timeframe, "closed_from": closed_from, "closed_before": cut,
        # Not rewriting: a changed_after past every updated_at selects no late bucket.
        "changed_after": changed_after if rewrite_late else 2**32 - 1,
    })
    # Unix seconds of the buckets (timestamp[us] in the cold schema; a bucket is a whole second).
    buckets = pc.unique(pc.divide(rows.column("bucket").cast(pa.int64()), 1_000_000)).to_pylist() \
        if rows.num_rows else []
    late = tuple(sorted(b for b in buckets if b < closed_from))
    if cut == closed_from and not late:
        return None
    return Batch(lower=changed_after, upper=max(bound, changed_after), rows=rows,
                 closed_from=closed_from, closed_before=cut, late_buckets=late)


def commit(table: Table, batch: Batch) -> None:
    """Append the batch and move the watermark, in one Iceberg commit. For candles, rewrite the late
    buckets (delete their cold rows, append the warm ones) in the same commit."""
    if table.properties.get("commit.retry.num-retries") != "0":
        raise RuntimeError(f"{table.name()} must have commit.retry.num-retries=0 (see ticklake.lake.offload)")
    properties = {WATERMARK: str(batch.upper)}
    if batch.closed_before:
        properties[CLOSED_BEFORE] = str(batch.closed_before)
    with table.transaction() as tx:
        if batch.late_buckets:
            # Called through Any: pyiceberg 0.12 types In.__new__ without its term argument, which mypy
            # reports differently with and without its cache.
            late = cast(Any, In)("bucket", [iso_seconds(second) for second in batch.late_buckets])
            tx.overwrite(batch.rows, overwrite_filter=late)
        elif batch.rows.num_rows:
            tx.append(batch.rows)
        tx.set_properties(properties)


def offload_table(client: WarmTier, catalog: Catalog, namespace: str, spec: LakeTable, *, safety_lag_s: int,
                  max_rows_per_commit: int, on_commit: Callable[[Batch], None] | None = None) -> OffloadResult:
    """Offload everything the warm table stored up to now() - safety_lag_s, in one or more commits.
    ``on_commit`` hears of each commit as it lands (a failure after it leaves the commit standing)."""
    started = time.monotonic()
    table = ensure_table(catalog, namespace, spec)
    # One bound per run: a run ends even when rows arrive faster than it offloads them.
    bound = offload_bound(client, safety_lag_s)
    rows = commits = 0
    while True:
        if spec.timeframe is None:
            batch = prepare(client, table, spec, bound, max_rows_per_commit)
        else:
            # Late buckets are rewritten by the first commit of a run only, so that a run ends even
            # while late trades keep arriving; the next run takes what changed since.
            batch = prepare_candles(client, table, spec, bound, max_rows_per_commit, rewrite_late=commits == 0)
        if batch is None:
            break
        commit(table, batch)  # the transaction updates ``table`` to the committed metadata
        rows += batch.rows.num_rows
        commits += 1
        if on_commit is not None:
            on_commit(batch)
        if spec.timeframe is None:
            log.debug("offloaded %d %s rows stored in (%d, %d]", batch.rows.num_rows, spec.name, batch.lower,
                     batch.upper)
        else:
            log.debug("offloaded %d %s candles: windows [%d, %d), %d late buckets rewritten", batch.rows.num_rows,
                     spec.name, batch.closed_from, batch.closed_before, len(batch.late_buckets))
    return OffloadResult(table=spec.name, rows=rows, commits=commits, watermark=watermark(table), bound=bound,
                         seconds=time.monotonic() - started)
