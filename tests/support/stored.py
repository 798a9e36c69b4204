"""What ticklake stored, read back for comparison with the simulator's tape: silver's trades, the
API's trades page by page, candles recomputed, and a counter summed over a venue's labels."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
from clickhouse_connect.driver.client import Client

from tests.factories import recompute_candles
from ticklake.model import Trade
from ticklake.simulator.tape import TapeTrade
from ticklake.warehouse.reader import TIMEFRAMES, WarehouseReader


def stored_trades(client: Client, exchange: str, symbol: str) -> list[Trade]:
    rows = client.query(
        "SELECT trade_id, toString(price), toString(qty), toString(side), toUnixTimestamp64Micro(ts), native_symbol "
        "FROM silver_trades WHERE exchange = {e:String} AND symbol = {s:String} ORDER BY trade_id",
        parameters={"e": exchange, "s": symbol}).result_rows
    return [Trade(exchange, symbol, r[5], int(r[0]), r[1], r[2], r[3], int(r[4]), 0) for r in rows]


def assert_a_stretch_of_the_tape(stored: list[Trade], tape: list[TapeTrade], market: object) -> None:
    """What was stored is one contiguous stretch of the tape (from subscription, or the snapshot
    before it, until the feeds stopped), equal field by field."""
    first = next(i for i, t in enumerate(tape) if t.trade_id == stored[0].trade_id)
    expected = tape[first:first + len(stored)]
    assert [(t.trade_id, Decimal(t.price), Decimal(t.qty), t.side, t.ts_us) for t in expected] == \
           [(t.trade_id, Decimal(t.price), Decimal(t.qty), t.side, t.ts_us) for t in stored], market


def assert_candles_recompute(client: Client, trades: list[Trade], timeframes: dict[str, int] = TIMEFRAMES) -> None:
    """Every stored candle of ``timeframes`` over ``trades`` equals its recomputation from them."""
    reader = WarehouseReader(client)
    for name, seconds in timeframes.items():
        for (exchange, symbol, start), candle in recompute_candles(trades, seconds).items():
            [stored_candle] = [c for c in reader.ohlcv(exchange, symbol, name, None, None, 5000)
                               if int(c.start.timestamp()) == start]
            assert (stored_candle.open, stored_candle.high, stored_candle.low, stored_candle.close,
                    stored_candle.volume, stored_candle.trades) == \
                   (candle.open, candle.high, candle.low, candle.close, candle.volume, candle.trades)


def metric_sum(counter: object, exchange: str) -> float:
    total = 0.0
    for family in counter.collect():  # type: ignore[attr-defined]
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("exchange") == exchange:
                total += sample.value
    return total


def all_trades(base: str, exchange: str, symbol: str) -> list[dict[str, Any]]:
    trades: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"exchange": exchange, "symbol": symbol, "limit": 5000, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{base}/v1/trades", params=params, timeout=30).json()
        trades += page["trades"]
        cursor = page["next_cursor"]
        if not cursor:
            return trades


def rfc3339_us(text: str) -> int:
    from ticklake.exchanges.mappers.common import rfc3339_to_us

    return rfc3339_to_us(text)
