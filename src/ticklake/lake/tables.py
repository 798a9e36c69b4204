"""The cold tier's tables: Iceberg schemas, partitioning and sort orders mirroring the warm tier.

Partitioned for the queries users run: trades and frames by exchange and day (a market's day is one
partition's files; a whole day for one venue prunes everything else). Inside a file rows are sorted
by the warm table's key, so Parquet min/max statistics skip row groups for a symbol or an hour.
pyiceberg does not sort on write: the offloader sorts each batch by ``sort_keys`` before appending.

ClickHouse's UInt64 columns become Iceberg ``long`` (Iceberg has no unsigned types): a value above
2**63 - 1 fails the offload's cast loudly rather than wrapping around.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.sorting import SortField, SortOrder
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import DecimalType, IntegerType, LongType, NestedField, StringType, TimestamptzType

# Table properties every cold table carries.
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    # A retried commit would re-apply the append on top of a racing offloader's and store its rows
    # twice: the watermark check is only sound with no retries (stack.md, Apache Iceberg).
    "commit.retry.num-retries": "0",
}


@dataclass(frozen=True)
class LakeTable:
    """One cold table and the warm table it mirrors."""

    name: str  # the same name as the warm table
    schema: Schema
    partition_spec: PartitionSpec
    sort_order: SortOrder
    sort_keys: tuple[str, ...]  # what the offloader sorts a batch by (the sort order, spelled for pyarrow)
    select_query: str  # queries/<select_query>.sql: the warm rows with stored_at in (lower, upper]

    @property
    def arrow_schema(self) -> pa.Schema:
        return self.schema.as_arrow()


def _field(field_id: int, name: str, kind: object) -> NestedField:
    # Every column is required: the warm tier has no Nullable columns, and the offloader casts to the
    # table's exact Arrow schema (non-nullable fields), which pyiceberg insists on.
    return NestedField(field_id, name, kind, required=True)  # type: ignore[arg-type]


_PRICE = DecimalType(38, 18)
_BUS = (("bus_topic", StringType()), ("bus_partition", IntegerType()), ("bus_offset", LongType()))


def _schema(*columns: tuple[str, object]) -> Schema:
    return Schema(*(_field(i, name, kind) for i, (name, kind) in enumerate(columns, start=1)))


def _by_day_and_exchange(schema: Schema, time_column: str) -> PartitionSpec:
    return PartitionSpec(
        PartitionField(schema.find_field(time_column).field_id, 1000, DayTransform(), f"{time_column}_day"),
        PartitionField(schema.find_field("exchange").field_id, 1001, IdentityTransform(), "exchange"),
    )


def _sorted_by(schema: Schema, *columns: str) -> SortOrder:
    return SortOrder(*(SortField(source_id=schema.find_field(c).field_id, transform=IdentityTransform())
                       for c in columns))


_SILVER = _schema(
    ("exchange", StringType()), ("symbol", StringType()), ("native_symbol", StringType()),
    ("trade_id", LongType()), ("price", _PRICE), ("qty", _PRICE), ("side", StringType()),
    ("ts", TimestamptzType()), ("received_at", TimestamptzType()), ("conn_id", StringType()),
    ("frame_seq", LongType()), ("stored_at", TimestamptzType()),
)
SILVER_TRADES = LakeTable(
    name="silver_trades", schema=_SILVER, partition_spec=_by_day_and_exchange(_SILVER, "ts"),
    sort_order=_sorted_by(_SILVER, "symbol", "ts", "trade_id"), sort_keys=("symbol", "ts", "trade_id"),
    select_query="lake_silver_trades",
)

_BRONZE = _schema(
    ("exchange", StringType()), ("native_symbol", StringType()), ("symbol", StringType()),
    ("trade_id", LongType()), ("price", StringType()), ("qty", StringType()), ("side", StringType()),
    ("ts", TimestamptzType()), ("received_at", TimestamptzType()), ("conn_id", StringType()),
    ("frame_seq", LongType()), *_BUS, ("stored_at", TimestamptzType()),
)
BRONZE_TRADES = LakeTable(
    name="bronze_trades", schema=_BRONZE, partition_spec=_by_day_and_exchange(_BRONZE, "ts"),
    sort_order=_sorted_by(_BRONZE, "native_symbol", "trade_id"), sort_keys=("native_symbol", "trade_id"),
    select_query="lake_bronze_trades",
)

_RAW = _schema(
    ("exchange", StringType()), ("conn_id", StringType()), ("frame_seq", LongType()),
    ("received_at", TimestamptzType()), ("payload", StringType()), ("error", StringType()),
    ("trade_count", LongType()), ("source", StringType()), ("native_symbol", StringType()), *_BUS,
    ("stored_at", TimestamptzType()),
)
RAW_FRAMES = LakeTable(
    name="raw_frames", schema=_RAW, partition_spec=_by_day_and_exchange(_RAW, "received_at"),
    sort_order=_sorted_by(_RAW, "received_at", "conn_id", "frame_seq"),
    sort_keys=("received_at", "conn_id", "frame_seq"), select_query="lake_raw_frames",
)

# Offloaded independently, each with its own watermark. Gold (closed candle windows) is not here yet.
TABLES: dict[str, LakeTable] = {t.name: t for t in (SILVER_TRADES, BRONZE_TRADES, RAW_FRAMES)}


def ensure_table(catalog: Catalog, namespace: str, spec: LakeTable) -> Table:
    """The cold table, created when missing; idempotent, and safe when two processes race to create it."""
    catalog.create_namespace_if_not_exists(namespace)
    table = catalog.create_table_if_not_exists(
        (namespace, spec.name), schema=spec.schema, partition_spec=spec.partition_spec,
        sort_order=spec.sort_order, properties=TABLE_PROPERTIES,
    )
    # A table created by an older version, or edited by hand, gets the properties exactly-once needs.
    drift = {k: v for k, v in TABLE_PROPERTIES.items() if k != "format-version" and table.properties.get(k) != v}
    if drift:
        with table.transaction() as tx:
            tx.set_properties(drift)
        table = catalog.load_table((namespace, spec.name))
    return table
