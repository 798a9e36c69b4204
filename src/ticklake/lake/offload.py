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

A warm row stored twice (ReplacingMergeTree keeps both until a merge) is offloaded twice: the writer
deduplicates before insert, so this takes a bug or a manual insert; the audit (docs/lake.md) is where
the cold tier should catch it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from ticklake.lake.tables import LakeTable, ensure_table
from ticklake.warehouse.sql import query

log = logging.getLogger(__name__)

WATERMARK = "ticklake.watermark"


@dataclass(frozen=True)
class Batch:
    """Warm rows stored in the seconds (lower, upper], in the cold table's exact Arrow schema."""

    lower: int
    upper: int
    rows: pa.Table


@dataclass(frozen=True)
class OffloadResult:
    table: str
    rows: int
    commits: int
    watermark: int  # after the run
    seconds: float


def watermark(table: Table) -> int:
    """The last stored_at second (Unix seconds) the cold table holds; 0 before the first offload."""
    return int(table.properties.get(WATERMARK, "0"))


def offload_bound(client: Client, safety_lag_s: int) -> int:
    """The newest stored_at second that may be offloaded now (see the module docstring)."""
    return int(client.query(query("lake_offload_bound"), parameters={"safety_lag_s": safety_lag_s}).result_rows[0][0])


def _to_lake_column(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):  # LowCardinality columns may arrive dictionary-encoded
        column = column.cast(column.type.value_type)
    if pa.types.is_timestamp(target) and (pa.types.is_integer(column.type) or pa.types.is_timestamp(column.type)):
        if pa.types.is_integer(column.type):  # DateTime may arrive as Unix seconds
            column = column.cast(pa.int64()).cast(pa.timestamp("s", tz="UTC"))
        return column.cast(target)
    if pa.types.is_binary(column.type) and pa.types.is_string(target):
        return column.cast(target)
    # safe=True: a UInt64 above 2**63 - 1 or a lossy decimal raises instead of being stored wrong.
    return column.cast(target, safe=True)


def to_lake(rows: pa.Table, spec: LakeTable) -> pa.Table:
    """``rows`` in the cold table's exact Arrow schema (pyiceberg refuses anything else), sorted by the
    table's sort order (pyiceberg does not sort on write)."""
    schema = spec.arrow_schema
    columns = [_to_lake_column(rows.column(field.name), field.type) for field in schema]
    table = pa.Table.from_arrays(columns, schema=schema)
    if table.num_rows == 0:
        return table
    return table.take(pc.sort_indices(table, sort_keys=[(key, "ascending") for key in spec.sort_keys]))


def prepare(client: Client, table: Table, spec: LakeTable, bound: int, max_rows: int) -> Batch | None:
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
    rows = client.query_arrow(query(spec.select_query), parameters={"lower": lower, "upper": cut})
    return Batch(lower=lower, upper=cut, rows=to_lake(rows, spec))


def commit(table: Table, batch: Batch) -> None:
    """Append the batch and move the watermark, in one Iceberg commit."""
    if table.properties.get("commit.retry.num-retries") != "0":
        raise RuntimeError(f"{table.name()} must have commit.retry.num-retries=0 (see ticklake.lake.offload)")
    with table.transaction() as tx:
        tx.append(batch.rows)
        tx.set_properties({WATERMARK: str(batch.upper)})


def offload_table(client: Client, catalog: Catalog, namespace: str, spec: LakeTable, *, safety_lag_s: int,
                  max_rows_per_commit: int) -> OffloadResult:
    """Offload everything the warm table stored up to now() - safety_lag_s, in one or more commits."""
    started = time.monotonic()
    table = ensure_table(catalog, namespace, spec)
    # One bound per run: a run ends even when rows arrive faster than it offloads them.
    bound = offload_bound(client, safety_lag_s)
    rows = commits = 0
    while (batch := prepare(client, table, spec, bound, max_rows_per_commit)) is not None:
        commit(table, batch)  # the transaction updates ``table`` to the committed metadata
        rows += batch.rows.num_rows
        commits += 1
        log.info("offloaded %d %s rows stored in (%d, %d]", batch.rows.num_rows, spec.name, batch.lower, batch.upper)
    return OffloadResult(table=spec.name, rows=rows, commits=commits, watermark=watermark(table),
                         seconds=time.monotonic() - started)
