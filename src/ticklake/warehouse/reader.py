"""Reading the warm tier: candles, trades, markets. The API's only way into ClickHouse."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import cast

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from ticklake.exchanges.gaps import Resume, resume_from
from ticklake.times import EPOCH as EPOCH  # re-exported: the API bounds times by it
from ticklake.times import us_from_datetime
from ticklake.warehouse.pool import ClientPool
from ticklake.warehouse.sql import query

# The candle timeframes, label -> seconds: the one definition. The API accepts these labels, the cold
# tier keeps a gold table per label, and the queries that go over every timeframe bind these seconds
# ({timeframes:Array(UInt32)}, timeframe_seconds()). Migration 0001's view gold_ohlcv_mv writes its own
# literal list, [60, 300, 900, 1800, 3600, 86400], and keeps it: an applied migration is history and
# never changes. So a timeframe added or removed here needs a new migration that replaces the view;
# tests/warehouse/test_sql_facts.py checks that the view's candles are still these.
TIMEFRAMES: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "1d": 86400}
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


# start (epoch seconds), open, high, low, close, volume, quote_volume, buy_volume (exact text), trades
CandleRow = tuple[int, str, str, str, str, str, str, str, int]


@dataclass(frozen=True, slots=True)
class Candle:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    buy_volume: Decimal
    trades: int

    @property
    def vwap(self) -> Decimal:
        return self.quote_volume / self.volume if self.volume else Decimal(0)


@dataclass(frozen=True, slots=True)
class StoredTrade:
    trade_id: int
    ts_us: int
    price: Decimal
    qty: Decimal
    side: str
    received_us: int
    native_symbol: str


@dataclass(frozen=True, slots=True)
class Market:
    exchange: str
    symbol: str
    first_day: datetime
    last_day: datetime
    trades: int


def timeframe_seconds() -> list[int]:
    """Every timeframe in seconds, as the queries bind them (a list: a tuple would not bind as an Array)."""
    return list(TIMEFRAMES.values())


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class WarehouseReader:
    """Reads through one client, or through a ``ClientPool`` (the API: connections of its own, with
    per-query limits; pool.py)."""

    def __init__(self, client: Client | ClientPool) -> None:
        self.client = client

    def ping(self) -> bool:
        return bool(self.client.query(query("ping")).result_rows[0][0] == 1)

    def ohlcv_rows(self, exchange: str, symbol: str, timeframe: str, start: datetime | None,
                   end: datetime | None, limit: int, *, newest_first: bool | None = None) -> list[CandleRow]:
        """Candles in [start, end) as exact text, oldest first: the first ``limit`` after ``start``
        when it is given, else the newest ``limit`` before ``end``. (The API's fast path.)

        ``newest_first=True`` takes the newest ``limit`` even with a ``start`` (the API's warm part of
        a range that begins in the cold tier); None means "when no start is given"."""
        seconds = TIMEFRAMES[timeframe]
        newest = start is None if newest_first is None else newest_first
        lower = _second_ceiling(start) if start else EPOCH
        upper = _second_ceiling(end) if end else FAR_FUTURE
        params = {"exchange": exchange, "symbol": symbol, "timeframe": seconds}

        def candles(low: datetime, high: datetime) -> list[CandleRow]:
            return cast(list[CandleRow], self.client.query(query("ohlcv"), parameters={
                **params, "start": low, "end": high, "newest_first": newest, "limit": limit}).result_rows)

        # Aggregate only a window that `limit` candles can fill: a market with a year of one-minute
        # candles would otherwise merge all of them to return 500 (1.2 s instead of milliseconds,
        # measured). First guess: the window right after `start`, or, for the newest candles, the one
        # ending now (a live market). Otherwise anchor on the first (last) stored candle in range and
        # let gaps in the market's history grow the window fourfold until it holds `limit` candles.
        span = timedelta(seconds=seconds * limit) * 1.25  # a little slack: a quiet minute or a late candle
        if newest:
            guess_end = min(upper, datetime.now(UTC) + timedelta(seconds=seconds))
            rows = candles(max(lower, guess_end - span), upper)
        else:
            rows = candles(lower, min(upper, lower + span))
        if len(rows) >= limit:
            if newest:
                rows.reverse()
            return rows
        first, last, count = self.client.query(query("ohlcv_bounds"), parameters={
            **params, "start": lower, "end": upper}).result_rows[0]
        if not count:
            return []
        while True:
            if count <= limit:  # few stored rows: the whole range is a small aggregation anyway
                low, high = lower, upper
            elif newest:
                low, high = max(lower, _utc(last) + timedelta(seconds=seconds) - span), upper
            else:
                low, high = lower, min(upper, _utc(first) + span)
            rows = candles(low, high)
            if len(rows) >= limit or (low == lower and high == upper):
                break
            span *= 4
        if newest:
            rows.reverse()
        return rows

    def ohlcv(self, exchange: str, symbol: str, timeframe: str, start: datetime | None, end: datetime | None,
              limit: int) -> list[Candle]:
        """The same candles as ``ohlcv_rows``, with exact ``Decimal`` values."""
        return [
            Candle(datetime.fromtimestamp(r[0], UTC), Decimal(r[1]), Decimal(r[2]), Decimal(r[3]), Decimal(r[4]),
                   Decimal(r[5]), Decimal(r[6]), Decimal(r[7]), int(r[8]))
            for r in self.ohlcv_rows(exchange, symbol, timeframe, start, end, limit)
        ]

    def trades(self, exchange: str, symbol: str, start: datetime | None, end: datetime | None, limit: int,
               after: tuple[int, int] | None = None) -> list[StoredTrade]:
        """Trades in [start, end) in (exchange time, trade id) order, after the cursor ``(ts_us, trade_id)``."""
        after_ts, after_id = after or (-1, 0)
        rows = self.client.query(query("trades"), parameters={
            "exchange": exchange, "symbol": symbol, "start": start or EPOCH, "end": end or FAR_FUTURE,
            # DateTime64 parameters take text; one microsecond before the epoch means "no cursor".
            "after_ts": _micros_text(after_ts), "after_id": after_id, "limit": limit,
        }).result_rows
        return [StoredTrade(int(r[0]), int(r[1]), r[2], r[3], r[4], int(r[5]), r[6]) for r in rows]

    def trades_arrow(self, exchange: str, symbol: str, start: datetime | None, end: datetime | None, limit: int,
                     after: tuple[int, int] | None = None, *, text: bool = False) -> pa.Table:
        """One chunk of a file export: the same trades as ``trades``, as an Arrow table in the API's
        column order (``queries/trades_export.sql``: exact decimals, times in microseconds), or with
        ``text`` as the JSON answer's text (``queries/trades_export_text.sql``, for CSV)."""
        after_ts, after_id = after or (-1, 0)
        # The chunk's lower bound is the cursor's time when later than start: the primary key
        # (exchange, symbol, ts, trade_id) then skips what earlier chunks read.
        lower = max(us_from_datetime(start) if start else 0, after_ts)
        body = self.client.raw_query(query("trades_export_text" if text else "trades_export"), parameters={
            "exchange": exchange, "symbol": symbol, "start": _micros_text(lower),
            "end": _micros_text(us_from_datetime(end or FAR_FUTURE)), "after_ts": _micros_text(after_ts),
            "after_id": after_id, "limit": limit,
        }, fmt="ArrowStream")
        return pa.ipc.open_stream(body).read_all()

    def trades_committed_after(self, exchange: str, symbol: str, after: tuple[int, int, int], limit: int
                               ) -> list[tuple[StoredTrade, int]]:
        """Trades committed after ``(committed_us, ts_us, trade_id)`` in commit order, each with its
        ``committed_us`` (``queries/trades_committed_after.sql``; migration 0006)."""
        committed, after_ts, after_id = after
        rows = self.client.query(query("trades_committed_after"), parameters={
            "exchange": exchange, "symbol": symbol, "after_commit": committed, "after_ts": _micros_text(after_ts),
            "after_id": after_id, "limit": limit}).result_rows
        return [(StoredTrade(int(r[0]), int(r[1]), r[2], r[3], r[4], int(r[5]), r[6]), int(r[7])) for r in rows]

    def trades_json(self, exchange: str, symbol: str, start: datetime | None, end: datetime | None, limit: int,
                    after: tuple[int, int] | None = None) -> list[bytes]:
        """The same trades as ``trades``, each as the API's JSON object (``queries/trades_json.sql``)."""
        after_ts, after_id = after or (-1, 0)
        body = self.client.raw_query(query("trades_json"), parameters={
            "exchange": exchange, "symbol": symbol, "start": start or EPOCH, "end": end or FAR_FUTURE,
            "after_ts": _micros_text(after_ts), "after_id": after_id, "limit": limit,
        }, fmt="JSONEachRow")
        return body.splitlines()

    def resume_points(self, window: int = 20_000) -> dict[tuple[str, str], Resume]:
        """(exchange, native symbol) -> where its feed resumes: the newest stored trade, and the holes
        among the newest ``window`` below it (``gaps.resume_from``)."""
        rows = self.client.query(query("resume_points"), parameters={"window": window}).result_rows
        result = {}
        for exchange, native_symbol, ids, times in rows:
            resume = resume_from(zip((int(i) for i in ids), (int(t) for t in times), strict=True), native_symbol)
            if resume is not None:
                result[(exchange, native_symbol)] = resume
        return result

    def markets(self) -> list[Market]:
        rows = self.client.query(query("symbols")).result_rows
        return [Market(r[0], r[1], _utc(r[2]), _utc(r[3]), int(r[4])) for r in rows]

    def layer_counts(self) -> dict[str, int]:
        result = self.client.query(query("layer_counts"))
        return {name: int(value) for name, value in zip(result.column_names, result.result_rows[0], strict=True)}


def _second_ceiling(value: datetime) -> datetime:
    # DateTime (not DateTime64) parameters are bound without the fraction of a second, which would
    # turn ``bucket >= 12:00:00.5`` into ``bucket >= 12:00:00``. Buckets are whole seconds, so rounding
    # up keeps both ``bucket >= start`` and ``bucket < end`` exact.
    value = _utc(value)
    return value.replace(microsecond=0) + timedelta(seconds=1) if value.microsecond else value


def _micros_text(ts_us: int) -> str:
    if ts_us < 0:
        return "1970-01-01 00:00:00.000000"
    moment = datetime.fromtimestamp(ts_us // 1_000_000, UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{ts_us % 1_000_000:06d}"
