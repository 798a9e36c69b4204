"""Facts that migration 0001 wrote as literals, which it keeps (an applied migration never changes),
still equal their one definition: the timeframes (warehouse/reader.py's TIMEFRAMES) and the gold
candle (fragments/gold_candle_states.sql, which the queries recomputing gold from silver use).

Checked by behaviour: trades go into silver, the view makes their candles, and the queries that
recompute gold from silver must make the very same ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from clickhouse_connect.driver.client import Client

from tests.factories import BASE_US
from ticklake.warehouse import gold
from ticklake.warehouse.reader import TIMEFRAMES, timeframe_seconds
from ticklake.warehouse.sql import fragment, query, read_sql

SILVER_COLUMNS = ["exchange", "symbol", "native_symbol", "trade_id", "price", "qty", "side", "ts", "received_at",
                  "conn_id", "frame_seq"]
BASE = datetime.fromtimestamp(BASE_US / 1e6, UTC)
SAME_INSTANT = BASE + timedelta(seconds=30, microseconds=123)

# Every stored column of a candle but updated_at (the time it was written), as exact text.
CANDLES = """
SELECT exchange, symbol, timeframe, bucket,
       toString(argMinMerge(open)), toString(maxMerge(high)), toString(minMerge(low)), toString(argMaxMerge(close)),
       toString(sumMerge(volume)), toString(sumMerge(quote_volume)), toString(sumMerge(buy_volume)),
       countMerge(trades)
FROM gold_ohlcv
GROUP BY exchange, symbol, timeframe, bucket
"""
Candles = dict[tuple[str, str, int, datetime], tuple[object, ...]]


def silver_row(trade_id: int, price: str, qty: str, side: str, ts: datetime, *, symbol: str = "BTC/USDT",
               exchange: str = "binance") -> list[object]:
    return [exchange, symbol, symbol.replace("/", ""), trade_id, Decimal(price), Decimal(qty), side, ts,
            ts + timedelta(milliseconds=5), "test-conn", 1]


def tape() -> list[list[object]]:
    """Trades that exercise every aggregate, in the order they arrive (one insert, so one view block)."""
    return [
        # The same microsecond, newest id first, prices in no order: open is id 1's, close id 3's.
        silver_row(3, "103", "0.5", "sell", SAME_INSTANT),
        silver_row(1, "101", "0.25", "buy", SAME_INSTANT),
        silver_row(2, "104", "1", "unknown", SAME_INSTANT),
        silver_row(4, "99.5", "2", "buy", BASE + timedelta(minutes=7)),
        # price x qty needs 43 digits (36 decimals): it overflows unless summed as Decimal(76, 36).
        silver_row(5, "98765.123456789012345678", "49.987654321098765432", "buy", BASE + timedelta(hours=2)),
        # the next UTC day: the 1d candles split
        silver_row(6, "0.000000000000000001", "7", "sell", BASE + timedelta(days=1, seconds=1)),
        silver_row(9, "2", "3", "buy", BASE + timedelta(seconds=59), symbol="ETH/USDT"),
        silver_row(8, "1", "3", "sell", BASE + timedelta(seconds=59), symbol="ETH/USDT"),
        silver_row(7, "5", "1", "buy", BASE + timedelta(seconds=59), exchange="kraken", symbol="ETH/USD"),
    ]


def candles(client: Client) -> Candles:
    return {(e, s, int(tf), gold.as_utc(bucket)): tuple(rest)
            for e, s, tf, bucket, *rest in client.query(CANDLES).result_rows}


def view_candles(client: Client) -> Candles:
    """The candles migration 0001's view makes of the tape."""
    client.insert("silver_trades", tape(), column_names=SILVER_COLUMNS)
    return candles(client)


def test_the_views_timeframes_are_the_one_definition(warehouse: Client) -> None:
    view = view_candles(warehouse)
    assert {timeframe for _, _, timeframe, _ in view} == set(TIMEFRAMES.values())
    assert timeframe_seconds() == list(TIMEFRAMES.values())


def test_the_trades_make_the_candles_they_are_meant_to(warehouse: Client) -> None:
    """The tape exercises what it is meant to: ties broken by id, buy volume, exact quote volume."""
    view = view_candles(warehouse)
    minute = view[("binance", "BTC/USDT", 60, BASE)]
    assert minute == ("101", "104", "101", "103", "1.75", "180.75", "0.25", 3)
    hour = view[("binance", "BTC/USDT", 3600, BASE + timedelta(hours=2))]
    assert hour[5] == "4937036.850338612309851496322511812221002896"
    assert view[("binance", "ETH/USDT", 60, BASE)][:4] == ("1", "2", "1", "2")


def test_rederiving_gold_makes_the_views_candles(warehouse: Client) -> None:
    view = view_candles(warehouse)
    warehouse.command("TRUNCATE TABLE gold_ohlcv")
    warehouse.command(query("rederive_gold"), parameters={
        "start": BASE, "end": BASE + timedelta(days=2), "exchange": "", "symbol": "",
        "timeframes": timeframe_seconds()})
    assert candles(warehouse) == view


def test_recomputing_gold_windows_makes_the_views_candles(warehouse: Client) -> None:
    view = view_candles(warehouse)
    warehouse.command("TRUNCATE TABLE gold_ohlcv")
    assert gold.recompute(warehouse, view) == len(view)
    assert candles(warehouse) == view


def test_the_views_aggregate_list_is_the_fragment() -> None:
    """Word for word, too: the same expressions, in the same order (gold_ohlcv's columns)."""
    migration = read_sql("migrations", "0001_layers.up.sql")
    view = migration[migration.index("CREATE MATERIALIZED VIEW IF NOT EXISTS gold_ohlcv_mv"):]
    aggregates = view[view.index("AS bucket,") + len("AS bucket,"):view.index("FROM silver_trades")]
    assert aggregates.split() == fragment("gold_candle_states").split()
