"""The cold tier's tables: Iceberg schemas, partitioning and sort orders mirroring the warm tier.

Partitioned for the queries users run: trades and frames by exchange and day (a market's day is one
partition's files; a whole day for one venue prunes everything else). Inside a file rows are sorted
by the warm table's key, so Parquet min/max statistics skip row groups for a symbol or an hour.
pyiceberg does not sort on write: the offloader sorts each batch by ``sort_keys`` before appending.

ClickHouse's UInt64 columns become Iceberg ``long`` (Iceberg has no unsigned types): a value above
2**63 - 1 fails the offload's cast loudly rather than wrapping around.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.sorting import SortField, SortOrder
from pyiceberg.transforms import DayTransform, IdentityTransform, MonthTransform, Transform, YearTransform
from pyiceberg.types import DecimalType, IntegerType, LongType, NestedField, StringType, TimestamptzType

from ticklake.lake.names import COLD_TABLES, gold_table_name
from ticklake.warehouse.reader import TIMEFRAMES

# Table properties every cold table carries.
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    # A retried commit would re-apply the append on top of a racing offloader's and store its rows
    # twice: the watermark check is only sound with no retries (stack.md, Apache Iceberg).
    "commit.retry.num-retries": "0",
    # Row groups of 131,072 rows (pyiceberg's default is 1M): a query for one market and one hour reads
    # a few small row groups instead of whole compacted files (measured: 41-56 ms against 188 ms).
    "write.parquet.row-group-limit": "131072",
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
    # Gold only: the candle length in seconds. A candle table offloads closed windows and rewrites the
    # windows whose warm candle changed after they were offloaded (offload.py), not stored_at ranges.
    timeframe: int | None = None
    # The column a row's time is read from, for audits and maintenance (day partitions, overlap).
    time_column: str = "ts"
    # Properties of this table on top of TABLE_PROPERTIES.
    extra_properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def properties(self) -> dict[str, str]:
        return {**TABLE_PROPERTIES, **self.extra_properties}

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
    sort_keys=("received_at", "conn_id", "frame_seq"), select_query="lake_raw_frames", time_column="received_at",
)

_DEAD_LETTERS = _schema(
    ("exchange", StringType()), ("native_symbol", StringType()), ("symbol", StringType()),
    ("trade_id", LongType()), ("price", StringType()), ("qty", StringType()), ("side", StringType()),
    ("ts", TimestamptzType()), ("received_at", TimestamptzType()), ("rule", StringType()), ("detail", StringType()),
    ("conn_id", StringType()), ("frame_seq", LongType()), ("raw_frame", StringType()),
    ("stored_at", TimestamptzType()),
)
# Few rows (rejects are rare): a month per partition keeps files from being tiny.
DEAD_LETTERS = LakeTable(
    name="dead_letters", schema=_DEAD_LETTERS,
    partition_spec=PartitionSpec(
        PartitionField(_DEAD_LETTERS.find_field("received_at").field_id, 1000, MonthTransform(), "received_at_month")),
    sort_order=_sorted_by(_DEAD_LETTERS, "exchange", "native_symbol", "trade_id"),
    sort_keys=("exchange", "native_symbol", "trade_id"), select_query="lake_dead_letters", time_column="received_at",
)

_BUS_DEAD_LETTERS = _schema(
    ("topic", StringType()), ("partition", IntegerType()), ("offset", LongType()), ("key", StringType()),
    ("headers", StringType()), ("value", StringType()), ("reason", StringType()), ("detail", StringType()),
    ("stored_at", TimestamptzType()),
)
BUS_DEAD_LETTERS = LakeTable(
    name="bus_dead_letters", schema=_BUS_DEAD_LETTERS,
    partition_spec=PartitionSpec(
        PartitionField(_BUS_DEAD_LETTERS.find_field("stored_at").field_id, 1000, MonthTransform(), "stored_at_month")),
    sort_order=_sorted_by(_BUS_DEAD_LETTERS, "topic", "partition", "offset"),
    sort_keys=("topic", "partition", "offset"), select_query="lake_bus_dead_letters", time_column="stored_at",
)

# Candles: exact decimals as in the warm tier. quote_volume is price x qty summed at 36 decimals
# (Decimal(76, 36) in ClickHouse), beyond Iceberg's 38 digits of precision: it is kept as its exact text.
_GOLD = _schema(
    ("exchange", StringType()), ("symbol", StringType()), ("bucket", TimestamptzType()),
    ("open", _PRICE), ("high", _PRICE), ("low", _PRICE), ("close", _PRICE), ("volume", _PRICE),
    ("quote_volume", StringType()), ("buy_volume", _PRICE), ("trades", LongType()),
    ("updated_at", TimestamptzType()),
)



def _gold_partitioning(timeframe: int) -> PartitionSpec:
    """Coarser than trades: a month of 1m candles is ~43k rows per market, a year of 1h ~8.8k; one
    partition per (period, exchange) keeps files at useful sizes while a range query still prunes by
    time. 1d candles (365 a year per market) are partitioned by exchange only."""
    transform: Transform[object, object] | None = (
        MonthTransform() if timeframe <= 300 else YearTransform() if timeframe < 86400 else None)  # type: ignore[assignment]
    fields = [PartitionField(_GOLD.find_field("exchange").field_id, 1001, IdentityTransform(), "exchange")]
    if transform is not None:
        name = "bucket_month" if isinstance(transform, MonthTransform) else "bucket_year"
        fields.insert(0, PartitionField(_GOLD.find_field("bucket").field_id, 1000, transform, name))
    return PartitionSpec(*fields)


GOLD_OHLCV = {
    label: LakeTable(
        name=gold_table_name(label), schema=_GOLD, partition_spec=_gold_partitioning(seconds),
        sort_order=_sorted_by(_GOLD, "symbol", "bucket"), sort_keys=("exchange", "symbol", "bucket"),
        select_query="lake_gold_ohlcv", timeframe=seconds, time_column="bucket",
        # Candle rows are small and read by market and range: smaller row groups made cold candle
        # reads clearly faster (a year of 1h candles, 500 per page: 22-30 ms against 55-110 ms).
        extra_properties={"write.parquet.row-group-limit": "16384"},
    )
    for label, seconds in TIMEFRAMES.items()
}

# Offloaded independently, each with its own watermark, in this order.
TABLES: dict[str, LakeTable] = {t.name: t for t in (RAW_FRAMES, BRONZE_TRADES, SILVER_TRADES, DEAD_LETTERS,
                                                    BUS_DEAD_LETTERS, *GOLD_OHLCV.values())}
if tuple(TABLES) != COLD_TABLES:  # the platform process schedules by those names (names.py)
    raise RuntimeError(f"lake.names.COLD_TABLES {COLD_TABLES} differs from the tables defined: {tuple(TABLES)}")


def ensure_table(catalog: Catalog, namespace: str, spec: LakeTable) -> Table:
    """The cold table, created when missing; idempotent, and safe when two processes race to create it."""
    try:
        # Loaded first: pyiceberg's create_table_if_not_exists writes a metadata file before it finds
        # the table exists, one stray file per table per offload run.
        table = catalog.load_table((namespace, spec.name))
    except NoSuchTableError:
        catalog.create_namespace_if_not_exists(namespace)
        table = catalog.create_table_if_not_exists(
            (namespace, spec.name), schema=spec.schema, partition_spec=spec.partition_spec,
            sort_order=spec.sort_order, properties=spec.properties,
        )
    # A table created by an older version, or edited by hand, gets the properties exactly-once needs.
    drift = {k: v for k, v in spec.properties.items() if k != "format-version" and table.properties.get(k) != v}
    if drift:
        with table.transaction() as tx:
            tx.set_properties(drift)
        table = catalog.load_table((namespace, spec.name))
    return table
