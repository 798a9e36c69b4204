"""Reading the cold tier: silver trades and candles from Iceberg, in the warm reader's shapes and order.

``ColdReader.trades`` and ``ColdReader.ohlcv_rows`` answer like ``WarehouseReader.trades`` and
``WarehouseReader.ohlcv_rows``: the same row tuples, the same order, the same limit and cursor rules,
decimals as the same exact shortest text (no trailing zeros, never an exponent). The API puts the two
together at the tier boundary (api/tiers.py, docs/lake.md "Serving from the cold tier").

**Planning without reading manifests.** pyiceberg plans a scan by reading every manifest of the
snapshot, one per offload commit until maintenance compacts them: with 350 manifests that was
0.4-0.6 s per request, measured. Manifest files never change once written, so the reader keeps, per
manifest path, the live data files it lists with their min/max statistics (exchange, symbol, time).
A new snapshot reads only its new manifests; a request then selects its files from memory
(microseconds a file). Tables whose snapshot holds row-level delete files (pyiceberg writes none)
are planned by pyiceberg instead.

**Reading little.** The selected files are read in waves, in the order of their time bounds (oldest
first, or newest first for "the newest candles"), and reading stops as soon as no unread file can
hold a row of the page: the first 500 candles of a year in 8,760 small files read a few hundred of
them, one compacted file reads one. Each file is filtered exactly (pyarrow, with row-group
statistics) by the same row filter.

**Metadata.** A loaded table is kept and reloaded from the catalog at most every ``refresh_s``
seconds, so a request costs no catalog round trip; what an offload commits becomes visible within
that time. Each request works on one loaded snapshot.

**Memory.** pyiceberg (with what it pulls in, ~24 MB) is imported by the first read that reaches
the cold tier, not by the serving process's start: a platform whose requests stay in the warm tier
never loads it.

**Failures.** A cold table that does not exist (nothing was ever offloaded to it) is reported by
``holds_*`` as False: the caller serves the range from the warm tier. Anything else that goes wrong
while reaching the catalog or the files raises ``ColdTierUnavailable`` (the API answers 503).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from ticklake.lake.catalog import catalog_properties, lake_dir, open_catalog
from ticklake.lake.names import gold_table_name
from ticklake.settings import LakeSettings
from ticklake.times import iso_us, us_from_datetime
from ticklake.warehouse.reader import FAR_FUTURE, TIMEFRAMES, CandleRow, StoredTrade

if TYPE_CHECKING:  # at run time pyiceberg is imported where a read reaches the cold tier
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table

log = logging.getLogger(__name__)


DEFAULT_REFRESH_S = 5.0
_TRADE_COLUMNS = ("trade_id", "ts", "price", "qty", "side", "received_at", "native_symbol")
_CANDLE_COLUMNS = ("bucket", "open", "high", "low", "close", "volume", "quote_volume", "buy_volume", "trades")
_CANDLE_DECIMALS = ("open", "high", "low", "close", "volume", "buy_volume")  # quote_volume is stored as text
_FIRST_WAVE = 4  # files read in the first wave; each next wave reads twice as many
_T = TypeVar("_T")


class ColdTierUnavailable(RuntimeError):
    """The cold tier could not be read (catalog or object store unreachable, a file missing)."""


class NoColdTier(Exception):
    """Nothing to read: the embedded catalog was never created (no offload has run)."""


@dataclass(frozen=True)
class _File:
    """A live data file and what its statistics say it holds; None bounds: unknown (not pruned)."""

    data_file: DataFile
    time_low: int | None  # microseconds
    time_high: int | None
    exchange: tuple[str | None, str | None]
    symbol: tuple[str | None, str | None]

    def may_hold(self, exchange: str, symbol: str, lower_us: int, upper_us: int) -> bool:
        """Whether rows of this market with a time in [lower_us, upper_us) may be in the file."""
        return (_within(exchange, self.exchange) and _within(symbol, self.symbol)
                and (self.time_low is None or self.time_low < upper_us)
                and (self.time_high is None or self.time_high >= lower_us))


def _within(value: str, bounds: tuple[str | None, str | None]) -> bool:
    # Truncated string bounds stay safe: a truncated lower bound is a prefix (not above the minimum),
    # a truncated upper bound is rounded up. Python orders str by code point, as Iceberg by UTF-8 bytes.
    low, high = bounds
    return (low is None or low <= value) and (high is None or value <= high)


@dataclass
class _Loaded:
    table: Table | None  # None: no such table (yet)
    at: float  # time.monotonic() when loaded
    time_column: str
    snapshot_id: int | None = None  # the snapshot `files` lists
    files: list[_File] | None = None  # None: not built yet, or the snapshot has delete files
    manifests: dict[str, list[_File]] = field(default_factory=dict)  # manifest path -> its live files


class ColdReader:
    """Cold-tier reads for the API. Thread-safe: the API calls it from its thread pool."""

    def __init__(self, open_catalog: Callable[[], Catalog], namespace: str,
                 refresh_s: float = DEFAULT_REFRESH_S) -> None:
        self._open_catalog = open_catalog
        self.namespace = namespace
        self.refresh_s = refresh_s
        self._catalog: Catalog | None = None
        self._tables: dict[str, _Loaded] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: LakeSettings, data_dir: Path, refresh_s: float = DEFAULT_REFRESH_S) -> ColdReader:
        """A reader of the catalog ``settings`` name. Connects on first use, not here: an API starts
        (and serves the warm tier) while the lake is down. A wrong setting fails here, at start."""
        catalog_properties(settings, data_dir)  # raises on a setting that cannot work
        embedded = settings.catalog == "sql" and not settings.uri
        catalog_file = lake_dir(data_dir) / "catalog.db"

        def open_reading() -> Catalog:
            # Reading must not create the embedded catalog (opening SQLite creates the file).
            if embedded and not catalog_file.exists():
                raise NoColdTier(str(catalog_file))
            return open_catalog(settings, data_dir)  # the offloader's catalog, timeouts included

        return cls(open_reading, settings.namespace, refresh_s)

    # -- what the cold tier holds ------------------------------------------------------------------
    def holds_trades(self) -> bool:
        # (No pyiceberg import for this: a process whose catalog was never created never needs it.)
        return self._loaded("silver_trades", "ts").table is not None

    def holds_candles(self, timeframe: str) -> bool:
        return self._loaded(f"gold_ohlcv_{timeframe}", "bucket").table is not None  # tables.gold_table_name

    # -- reads -------------------------------------------------------------------------------------
    def trades(self, exchange: str, symbol: str, start: datetime | None, end: datetime | None, limit: int,
               after: tuple[int, int] | None = None) -> list[StoredTrade]:
        """Silver trades in [start, end) in (exchange time, trade id) order, after the cursor
        ``(ts_us, trade_id)``: ``WarehouseReader.trades`` on the cold tier."""
        rows = self.trades_table(exchange, symbol, start, end, limit, after)
        ts = rows.column("ts").cast(pa.int64()).to_pylist()
        received = rows.column("received_at").cast(pa.int64()).to_pylist()
        return [
            StoredTrade(trade_id, ts_us, price, qty, side, received_us, native_symbol)
            for trade_id, ts_us, price, qty, side, received_us, native_symbol in zip(
                rows.column("trade_id").to_pylist(), ts, rows.column("price").to_pylist(),
                rows.column("qty").to_pylist(), rows.column("side").to_pylist(), received,
                rows.column("native_symbol").to_pylist(), strict=True)
        ]

    def trades_table(self, exchange: str, symbol: str, start: datetime | None, end: datetime | None, limit: int,
                     after: tuple[int, int] | None = None) -> pa.Table:
        """The rows of ``trades`` as an Arrow table (columns trade_id, ts, price, qty, side, received_at,
        native_symbol as the cold table types them): a chunk of a file export (api/export.py)."""
        from ticklake.lake.tables import SILVER_TRADES  # pyiceberg: only once a read reaches the cold tier

        loaded = self._loaded(SILVER_TRADES.name, "ts")
        lower_us = us_from_datetime(start) if start else 0
        if after is not None:
            lower_us = max(lower_us, after[0])
        upper_us = us_from_datetime(end) if end else us_from_datetime(FAR_FUTURE)
        if loaded.table is None or lower_us >= upper_us:
            schema = SILVER_TRADES.arrow_schema
            return pa.table({name: pa.array([], schema.field(name).type) for name in _TRADE_COLUMNS})

        def after_cursor(rows: pa.Table) -> pa.Table:
            if after is None:
                return rows
            ts = rows.column("ts").cast(pa.int64())
            later = pc.or_(pc.greater(ts, after[0]),
                           pc.and_(pc.equal(ts, after[0]), pc.greater(rows.column("trade_id"), after[1])))
            return rows.filter(later)

        return self._guarded(lambda: self._read_ordered(
            loaded, exchange, symbol, lower_us, upper_us, _TRADE_COLUMNS,
            [("ts", "ascending"), ("trade_id", "ascending")], limit, newest_first=False, keep=after_cursor))

    def ohlcv_rows(self, exchange: str, symbol: str, timeframe: str, start: datetime | None,
                   end: datetime | None, limit: int, *, newest_first: bool | None = None) -> list[CandleRow]:
        """Closed candles in [start, end), oldest first: the first ``limit`` from ``start``, or the
        newest ``limit`` (without ``start``, or with ``newest_first``): ``WarehouseReader.ohlcv_rows``
        on the cold tier, the same exact text."""
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {timeframe!r}")
        loaded = self._loaded(gold_table_name(timeframe), "bucket")
        newest = start is None if newest_first is None else newest_first
        # Buckets are whole seconds: a fraction of a second rounds up, as in the warm reader.
        lower_us = _second_ceiling_us(us_from_datetime(start)) if start else 0
        upper_us = _second_ceiling_us(us_from_datetime(end)) if end else us_from_datetime(FAR_FUTURE)
        if loaded.table is None or lower_us >= upper_us:
            return []
        rows = self._guarded(lambda: self._read_ordered(
            loaded, exchange, symbol, lower_us, upper_us, _CANDLE_COLUMNS,
            [("bucket", "descending" if newest else "ascending")], limit, newest_first=newest))
        if newest:
            rows = rows.take(pa.array(range(rows.num_rows - 1, -1, -1), pa.int64()))
        starts = pc.divide(rows.column("bucket").cast(pa.int64()), 1_000_000).to_pylist()
        texts = {name: decimal_texts(rows.column(name)) for name in _CANDLE_DECIMALS}
        return list(zip(starts, texts["open"], texts["high"], texts["low"], texts["close"], texts["volume"],
                        rows.column("quote_volume").to_pylist(), texts["buy_volume"],
                        rows.column("trades").to_pylist(), strict=True))

    # -- tables ------------------------------------------------------------------------------------
    def _loaded(self, name: str, time_column: str) -> _Loaded:
        """The table as loaded at most ``refresh_s`` ago (``table`` None when it does not exist)."""
        loaded = self._tables.get(name)
        if loaded is not None and time.monotonic() - loaded.at < self.refresh_s:
            return loaded
        with self._lock:  # one reload at a time; the others use the fresh copy it leaves
            loaded = self._tables.get(name)
            if loaded is not None and time.monotonic() - loaded.at < self.refresh_s:
                return loaded
            table = self._guarded(lambda: self._load(name))
            # A new object each time, never refreshed in place: requests still reading the previous
            # one keep a consistent snapshot. What was learnt from manifests carries over.
            fresh = _Loaded(table, time.monotonic(), time_column)
            if loaded is not None:
                fresh.manifests = loaded.manifests
                if table is not None and loaded.snapshot_id == _snapshot_id(table):
                    fresh.snapshot_id, fresh.files = loaded.snapshot_id, loaded.files
            self._tables[name] = fresh
            return fresh

    def _load(self, name: str) -> Table | None:
        try:
            if self._catalog is None:
                self._catalog = self._open_catalog()
        except NoColdTier:
            return None
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        try:
            return self._catalog.load_table((self.namespace, name))
        except (NoSuchTableError, NoSuchNamespaceError):
            return None

    def _guarded(self, work: Callable[[], _T]) -> _T:
        try:
            return work()
        except Exception as exc:
            # Details (URLs, paths) go to the log, not to API clients.
            log.warning("cold tier unavailable: %s: %s", type(exc).__name__, exc)
            self._catalog = None  # a REST session or SQL engine in a bad state is opened again next time
            raise ColdTierUnavailable(f"{type(exc).__name__} while reading the Iceberg catalog or its files") from exc

    # -- planning and reading ----------------------------------------------------------------------
    def _live_files(self, loaded: _Loaded) -> list[_File] | None:
        """Every live data file of the loaded snapshot; None when it has delete files."""
        from pyiceberg.manifest import DataFileContent, ManifestContent

        table = loaded.table
        assert table is not None
        snapshot = table.current_snapshot()
        if snapshot is None:
            return []
        if loaded.snapshot_id == snapshot.snapshot_id:
            return loaded.files
        with self._lock:
            if loaded.snapshot_id == snapshot.snapshot_id:
                return loaded.files
            manifests = snapshot.manifests(table.io)
            files: list[_File] | None = None
            if all(m.content == ManifestContent.DATA for m in manifests):
                schema = table.schema()
                current: dict[str, list[_File]] = {}
                for manifest in manifests:
                    entries = loaded.manifests.get(manifest.manifest_path)
                    if entries is None:
                        entries = [_file(entry.data_file, schema, loaded.time_column)
                                   for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)]
                    current[manifest.manifest_path] = entries
                loaded.manifests = current  # manifests no longer live are forgotten
                files = [f for entries in current.values() for f in entries]
                if any(f.data_file.content != DataFileContent.DATA for f in files):
                    files = None
            loaded.files, loaded.snapshot_id = files, snapshot.snapshot_id
            return files

    def _read_ordered(self, loaded: _Loaded, exchange: str, symbol: str, lower_us: int, upper_us: int,
                      columns: Sequence[str], sort_keys: list[tuple[str, str]], limit: int, *, newest_first: bool,
                      keep: Callable[[pa.Table], pa.Table] | None = None) -> pa.Table:
        """The first ``limit`` rows of one market with a time in [lower_us, upper_us) in ``sort_keys``
        order (whose first key is the time column), reading only the files that can hold them."""
        from pyiceberg.io.pyarrow import ArrowScan
        from pyiceberg.table import FileScanTask

        table = loaded.table
        assert table is not None
        time_column = loaded.time_column
        row_filter = _market_range(exchange, symbol, time_column, lower_us, upper_us)
        scan = table.scan(row_filter=row_filter, selected_fields=tuple(columns))
        live = self._live_files(loaded)
        if live is None:  # delete files: pyiceberg plans (it pairs data files with their deletes)
            schema = table.schema()
            planned = [(_file(task.file, schema, time_column), task) for task in scan.plan_files()]
        else:
            planned = [(f, FileScanTask(f.data_file)) for f in live
                       if f.may_hold(exchange, symbol, lower_us, upper_us)]
        # Files that may hold the first rows in this order come first.
        if newest_first:
            planned.sort(key=lambda p: -(p[0].time_high if p[0].time_high is not None else 2**63))
        else:
            planned.sort(key=lambda p: p[0].time_low if p[0].time_low is not None else -(2**63))
        reader = ArrowScan(table.metadata, table.io, scan.projection(), row_filter, scan.case_sensitive)
        result = scan.projection().as_arrow().empty_table()
        read, wave = 0, _FIRST_WAVE
        while read < len(planned):
            batch = planned[read: read + wave]
            read += len(batch)
            wave *= 2
            rows = reader.to_table([task for _file, task in batch])
            if keep is not None:
                rows = keep(rows)
            result = pa.concat_tables([result, rows.cast(result.schema)])
            if result.num_rows < limit:
                continue
            if result.num_rows > limit:
                result = result.take(pc.select_k_unstable(result, limit, sort_keys))
            # The page's last time so far: an unread file whose rows all come after it in this order
            # cannot change the page.
            times = result.column(time_column).cast(pa.int64())
            if read < len(planned):
                following = planned[read][0]
                if newest_first:
                    last = pc.min(times).as_py()
                    if following.time_high is not None and following.time_high < last:
                        break
                else:
                    last = pc.max(times).as_py()
                    if following.time_low is not None and following.time_low > last:
                        break
        return result.take(pc.sort_indices(result, sort_keys=sort_keys))


def _snapshot_id(table: Table) -> int | None:
    snapshot = table.current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def _file(data_file: DataFile, schema: Any, time_column: str) -> _File:
    from pyiceberg.conversions import from_bytes
    from pyiceberg.types import PrimitiveType

    def bounds(name: str) -> tuple[Any, Any]:
        column = schema.find_field(name)
        kind = column.field_type
        assert isinstance(kind, PrimitiveType)
        low = (data_file.lower_bounds or {}).get(column.field_id)
        high = (data_file.upper_bounds or {}).get(column.field_id)
        return (None if low is None else from_bytes(kind, low), None if high is None else from_bytes(kind, high))

    time_low, time_high = bounds(time_column)
    return _File(data_file, time_low, time_high, bounds("exchange"), bounds("symbol"))


def _market_range(exchange: str, symbol: str, time_column: str, lower_us: int, upper_us: int) -> BooleanExpression:
    """One market's rows with ``time_column`` in [lower_us, upper_us), applied exactly to the rows read."""
    from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan

    return And(EqualTo(term="exchange", value=exchange), EqualTo(term="symbol", value=symbol),
               GreaterThanOrEqual(term=time_column, value=iso_us(lower_us)),
               LessThan(term=time_column, value=iso_us(upper_us)))


def decimal_texts(column: pa.ChunkedArray | pa.Array) -> list[str]:
    """Exact shortest text of decimals (scale above 0), as ClickHouse's toString writes them:
    ``"64123.1"``, ``"0"``, ``"0.000000000000000001"`` (no trailing zeros, never an exponent)."""
    if column.null_count:
        raise ValueError("a cold decimal column holds nulls; every cold column is required")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    # Arrow writes the scale's digits ("1.500000000000000000"), and an exponent below 1e-6 ("1E-18"):
    # strip the zeros in bulk (every text has a point: the scale is above 0), redo the rare
    # exponent forms exactly in Python.
    texts = column.cast(pa.string())
    result: list[str] = pc.replace_substring_regex(texts, r"\.?0+$", "").to_pylist()
    for i in pc.indices_nonzero(pc.match_substring(texts, "E")).to_pylist():
        result[i] = _plain(Decimal(texts[i].as_py()))
    return result


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _second_ceiling_us(micros: int) -> int:
    return -(-micros // 1_000_000) * 1_000_000
