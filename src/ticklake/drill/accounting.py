"""The drill's accounts, once the run is over and everything is written: what the warehouse stored
against what the venues traded (their tapes), and the candles the API serves against a
recomputation from the stored trades.

Per market, over a window of exchange time:

* **lost**: trades on the tape, from the first trade stored for the market on, not stored;
* **duplicated**: stored rows beyond the first of each trade id (read in one export, not pages, so
  that a duplicate cannot fall between two);
* **candles differing**: candles (every timeframe the API serves, or the one-minute ones of a mode's
  window) whose open, high, low, close, volume, quote volume, taker-buy volume or trade count is not
  what the stored trades (each id once) make, in (exchange time, trade id) order, or that exist on
  one side only.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from ticklake.exchanges.mappers.common import rfc3339_to_us
from ticklake.warehouse.reader import TIMEFRAMES

Candle = tuple[Decimal, Decimal, Decimal, Decimal, Decimal, Decimal, Decimal, int]


@dataclass(frozen=True)
class ServedTrade:
    """A trade as the API serves it (its CSV export)."""

    trade_id: int
    ts_us: int
    price: Decimal
    qty: Decimal
    side: str


@dataclass
class Market:
    """One market's final tape, stored trades and served candles."""

    exchange: str
    symbol: str
    tape: dict[int, int]  # trade id -> exchange time µs
    stored: list[ServedTrade]
    served: dict[str, dict[int, Candle]]  # timeframe -> bucket start (s) -> candle


async def read_market(http: httpx.AsyncClient, api: str, tape_rows: list[list[Any]], exchange: str,
                      symbol: str) -> Market:
    response = await http.get(f"{api}/v1/trades", params={"exchange": exchange, "symbol": symbol,
                                                          "start": 946_684_800_000, "format": "csv"}, timeout=300)
    response.raise_for_status()
    stored = [ServedTrade(int(row["trade_id"]), rfc3339_to_us(row["time"]), Decimal(row["price"]),
                          Decimal(row["qty"]), row["side"])
              for row in csv.DictReader(io.StringIO(response.text))]
    served: dict[str, dict[int, Candle]] = {}
    for timeframe in TIMEFRAMES:
        body = (await http.get(f"{api}/v1/ohlcv", params={"exchange": exchange, "symbol": symbol,
                                                          "timeframe": timeframe, "limit": 5000},
                               timeout=60)).json()
        served[timeframe] = {
            rfc3339_to_us(c["time"]) // 1_000_000: (
                Decimal(c["open"]), Decimal(c["high"]), Decimal(c["low"]), Decimal(c["close"]), Decimal(c["volume"]),
                Decimal(c["quote_volume"]), Decimal(c["buy_volume"]), int(c["trades"]))
            for c in body["candles"]}
    return Market(exchange, symbol, {int(row[0]): int(row[4]) for row in tape_rows}, stored, served)


def recompute(trades: list[ServedTrade], seconds: int) -> dict[int, Candle]:
    """Candles of ``seconds`` from trades, each trade id once, ordered by (exchange time, trade id)."""
    unique = {t.trade_id: t for t in trades}
    windows: dict[int, list[ServedTrade]] = {}
    for trade in unique.values():
        windows.setdefault(trade.ts_us // 1_000_000 // seconds * seconds, []).append(trade)
    candles: dict[int, Candle] = {}
    for start, members in windows.items():
        members.sort(key=lambda t: (t.ts_us, t.trade_id))
        prices = [t.price for t in members]
        candles[start] = (prices[0], max(prices), min(prices), prices[-1], sum((t.qty for t in members), Decimal(0)),
                          sum((t.price * t.qty for t in members), Decimal(0)),
                          sum((t.qty for t in members if t.side == "buy"), Decimal(0)), len(members))
    return candles


@dataclass
class Counts:
    lost: int = 0
    duplicated: int = 0
    candle_diffs: int = 0
    trades: int = 0  # stored trades counted (each id once)
    examples: list[str] | None = None

    def add(self, other: Counts) -> None:
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.candle_diffs += other.candle_diffs
        self.trades += other.trades
        self.examples = (self.examples or []) + (other.examples or [])


def count(market: Market, start_us: int = 0, end_us: int = 2**63 - 1, timeframes: tuple[str, ...] = ("1m",)
          ) -> Counts:
    """The market's accounts over exchange time [start_us, end_us); candles of ``timeframes`` whose
    bucket overlaps it."""
    name = f"{market.exchange} {market.symbol}"
    if not market.stored:
        return Counts(lost=sum(1 for ts in market.tape.values() if start_us <= ts < end_us),
                      examples=[f"{name}: nothing stored"])
    first_stored = min(t.trade_id for t in market.stored)
    inside = [t for t in market.stored if start_us <= t.ts_us < end_us]
    ids = [t.trade_id for t in inside]
    stored_ids = {t.trade_id for t in market.stored}
    missing = sorted(i for i, ts in market.tape.items() if i >= first_stored and start_us <= ts < end_us
                     and i not in stored_ids)
    examples = []
    if missing:
        examples.append(f"{name}: {len(missing)} lost, e.g. ids {missing[:5]}")
    duplicated = len(ids) - len(set(ids))
    if duplicated:
        examples.append(f"{name}: {duplicated} stored twice")
    diffs = 0
    for timeframe in timeframes:
        seconds = TIMEFRAMES[timeframe]
        low, high = start_us // 1_000_000 // seconds * seconds, end_us // 1_000_000
        expected = {k: v for k, v in recompute(market.stored, seconds).items() if low <= k < high}
        served = {k: v for k, v in market.served[timeframe].items() if low <= k < high}
        differing = sorted(k for k in set(expected) | set(served) if expected.get(k) != served.get(k))
        diffs += len(differing)
        if differing:
            k = differing[0]
            examples.append(f"{name} {timeframe}: {len(differing)} candles differ, e.g. {k}: served "
                            f"{served.get(k)}, recomputed {expected.get(k)}")
    return Counts(lost=len(missing), duplicated=duplicated, candle_diffs=diffs, trades=len(set(ids)),
                  examples=examples)
