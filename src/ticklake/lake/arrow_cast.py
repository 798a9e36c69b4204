"""Arrow conversions between the warm tier's columns and the cold tier's: the offload, the audit, the
re-derivation and maintenance all shape rows with these, so that both tiers' rows compare and load
the same way.

Towards cold (:func:`to_lake`, :func:`conform`): ClickHouse's Arrow output arrives with LowCardinality
columns dictionary-encoded, DateTime as Unix seconds (integers), String as binary and UInt64 unsigned;
the cold schema wants plain values, ``timestamp[us, UTC]``, ``string`` and signed ``long``, and pyiceberg
refuses anything but its exact Arrow schema. Every cast is safe: a UInt64 above 2**63 - 1 or a lossy
decimal raises instead of being stored wrong.

Back to warm (:func:`for_warm`): the cold tier's signed ids unsigned again, stored_at in whole seconds.

No pyiceberg here (a table's schema comes as Arrow), so the module costs nothing to import.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from ticklake.lake.tables import LakeTable

# Cold columns ClickHouse stores unsigned (Iceberg has only signed longs).
UNSIGNED = ("trade_id", "frame_seq")


def conform_column(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """One warm (or cold) column as ``target`` exactly."""
    if pa.types.is_dictionary(column.type):  # LowCardinality columns may arrive dictionary-encoded
        column = column.cast(column.type.value_type)
    if pa.types.is_timestamp(target) and pa.types.is_integer(column.type):  # DateTime may arrive as Unix seconds
        column = column.cast(pa.int64()).cast(pa.timestamp("s", tz="UTC"))
    # safe=True: a UInt64 above 2**63 - 1 or a lossy decimal raises instead of being stored wrong.
    return column.cast(target, safe=True)


def conform(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """``rows`` with exactly ``schema``'s columns and types (ClickHouse's Arrow output or a cold scan)."""
    columns = [conform_column(rows.column(field.name), field.type) for field in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def sorted_for(rows: pa.Table, spec: LakeTable) -> pa.Table:
    """``rows`` in the cold table's sort order (pyiceberg does not sort on write)."""
    if rows.num_rows == 0:
        return rows
    return rows.take(pc.sort_indices(rows, sort_keys=[(key, "ascending") for key in spec.sort_keys]))


def to_lake(rows: pa.Table, spec: LakeTable, *, sort: bool = True) -> pa.Table:
    """``rows`` in the cold table's exact Arrow schema (pyiceberg refuses anything else), sorted by the
    table's sort order. ``sort=False`` for rows that arrive sorted: the offload's select queries sort in
    ClickHouse (see :func:`ticklake.lake.offload.read_warm`)."""
    table = conform(rows, spec.arrow_schema)
    return sorted_for(table, spec) if sort else table


def for_warm(rows: pa.Table) -> pa.Table:
    """Cold rows in the warm table's types: ids unsigned again, stored_at in whole seconds (DateTime)."""
    for name in (*UNSIGNED, "stored_at"):
        if name in rows.column_names:
            kind = pa.timestamp("s", tz="UTC") if name == "stored_at" else pa.uint64()
            rows = rows.set_column(rows.schema.get_field_index(name), name, rows.column(name).cast(kind))
    return rows


def regrouped(batches: Iterable[pa.RecordBatch], rows_per_table: int) -> Iterator[pa.Table]:
    """Batches in tables of about ``rows_per_table`` rows (ClickHouse streams blocks of 8k rows; a cold
    scan a batch per row group)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if batch.num_rows:
            pending.append(batch)
            rows += batch.num_rows
        if rows >= rows_per_table:
            yield pa.Table.from_batches(pending)
            pending, rows = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def seconds_of(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A timestamp[us] column as Unix seconds (floored), for numpy."""
    return np.floor_divide(np.asarray(column.cast(pa.int64()), dtype=np.int64), 1_000_000)


def contiguous(rows: pa.Table, name: str) -> pa.Array:
    """A column of ``rows`` as one array (numpy and buffer access need one chunk)."""
    column = rows.column(name)
    return column.chunk(0) if column.num_chunks == 1 else pa.concat_arrays(column.chunks)
