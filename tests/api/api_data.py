"""Test data for the API contract tests, and the answers expected for it, computed here with exact
fractions, independently of the warehouse and of the API code."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from fractions import Fraction
from typing import Any

import httpx

from ticklake.api.cursor import CursorSeal
from ticklake.model import Side, Trade
from ticklake.settings import ApiSettings, Settings

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_LIMIT = 5000
CONFIGURED = (("binance", "BTC/USDT"), ("coinbase", "SOL/USD"))  # SOL/USD: configured, never traded
TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "1d": 86400}
_WIDE = Context(prec=200)


def plain(value: Decimal | Fraction) -> str:
    """Decimal text as the API must write it: exact, no exponent, no trailing zeros."""
    if isinstance(value, Fraction):
        value = _WIDE.divide(Decimal(value.numerator), Decimal(value.denominator))  # exact: terminating
    return f"{value.normalize(_WIDE):f}"


def iso_seconds(seconds: int) -> str:
    return (EPOCH + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def iso_micros(ts_us: int) -> str:
    return (EPOCH + timedelta(microseconds=ts_us)).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _btc_usdt(rng: random.Random, start_us: int) -> list[Trade]:
    """~11.5 hours across a UTC midnight, about one trade a minute (so more than 500 one-minute
    candles), with groups of trades sharing one timestamp whose ids are not in time order."""
    trades: list[Trade] = []
    ts, next_id, price = start_us, 5_000_000, Decimal("64000.00")
    while len(trades) < 700:
        ts += rng.randint(20_000_000, 100_000_000) + rng.randint(0, 999_999)
        price += Decimal(rng.randint(-500, 500)) / 100
        group = 3 if len(trades) % 50 == 10 else 1
        ids = [next_id + i for i in range(group)]
        if group > 1:
            ids.reverse()  # the first inserted is not the smallest id: open/close break ties by id
        next_id += group
        for trade_id in ids:
            qty = Decimal(rng.randint(1, 300_000_000)).scaleb(-8)
            side: Side = rng.choice(("buy", "buy", "sell", "sell", "unknown"))
            trades.append(Trade("binance", "BTC/USDT", "BTCUSDT", trade_id, str(price), str(qty), side, ts,
                                ts + rng.randint(1_000, 80_000)))
    # Extremes of Decimal(38, 18): the finest price and quantity, and a price with 18 decimals.
    ts += 1_000_000
    trades.append(Trade("binance", "BTC/USDT", "BTCUSDT", next_id, "64000.123456789012345678",
                        "0.000000000000000001", "buy", ts, ts + 5_000))
    trades.append(Trade("binance", "BTC/USDT", "BTCUSDT", next_id + 1, "0.000000000000000001",
                        "12345678.9", "sell", ts + 1, ts + 5_000))
    return trades


def _eth_usdt(rng: random.Random, start_us: int) -> list[Trade]:
    trades = []
    ts = start_us + 3_600_000_000
    for i in range(40):
        ts += rng.randint(1, 90_000_000) if i % 7 else 0  # every 7th trade shares the previous timestamp
        trades.append(Trade("binance", "ETH/USDT", "ETHUSDT", 900 + i, f"{3100 + rng.randint(0, 9999) / 100}",
                            f"{rng.randint(1, 10**6) / 10**4}", rng.choice(("buy", "sell")), ts, ts + 10_000))
    return trades


def _kraken_btc_usd(rng: random.Random, start_us: int) -> list[Trade]:
    # Ids near 2^64: beyond a float's (and JavaScript's) exact integers.
    first_id = 2**64 - 100
    ts = start_us + 7_200_000_000
    trades = []
    for i in range(30):
        ts += rng.randint(1, 200_000_000)
        trades.append(Trade("kraken", "BTC/USD", "BTC/USD", first_id + i, f"{63000 + i}.5", "0.25",
                            "buy" if i % 2 else "sell", ts, ts + 20_000))
    return trades


@dataclass(frozen=True)
class Dataset:
    trades: tuple[Trade, ...]

    def market(self, exchange: str, symbol: str) -> list[Trade]:
        """One market's trades in the API's order: (exchange time, trade id)."""
        return sorted((t for t in self.trades if t.exchange == exchange and t.symbol == symbol),
                      key=lambda t: (t.ts_us, t.trade_id))

    def trade_records(self, exchange: str, symbol: str) -> list[dict[str, Any]]:
        return [{"trade_id": str(t.trade_id), "time": iso_micros(t.ts_us), "price": plain(Decimal(t.price)),
                 "qty": plain(Decimal(t.qty)), "side": t.side, "received_at": iso_micros(t.received_us)}
                for t in self.market(exchange, symbol)]

    def candles(self, exchange: str, symbol: str, timeframe: str) -> list[dict[str, Any]]:
        """Every candle of a market, oldest first, computed with exact fractions."""
        seconds = TIMEFRAME_SECONDS[timeframe]
        buckets: dict[int, list[Trade]] = defaultdict(list)
        for trade in self.market(exchange, symbol):
            buckets[trade.ts_us // 1_000_000 // seconds * seconds].append(trade)
        candles = []
        for bucket, trades in sorted(buckets.items()):
            prices = [Fraction(t.price) for t in trades]
            volume = sum((Fraction(t.qty) for t in trades), Fraction(0))
            quote = sum((Fraction(t.price) * Fraction(t.qty) for t in trades), Fraction(0))
            vwap = Fraction(round(quote / volume * 10**18), 10**18)  # round() on a Fraction: half-even
            candles.append({
                "time": iso_seconds(bucket),
                "open": plain(Decimal(trades[0].price)), "high": plain(max(prices)), "low": plain(min(prices)),
                "close": plain(Decimal(trades[-1].price)), "volume": plain(volume), "quote_volume": plain(quote),
                "buy_volume": plain(sum((Fraction(t.qty) for t in trades if t.side == "buy"), Fraction(0))),
                "vwap": plain(vwap), "trades": len(trades),
            })
        return candles


def build_dataset() -> Dataset:
    rng = random.Random(20261126)
    # Recent times (retention TTLs count from receive time) that cross a UTC midnight.
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start_us = int((midnight - timedelta(hours=6) - EPOCH).total_seconds()) * 1_000_000
    trades = [*_btc_usdt(rng, start_us), *_eth_usdt(rng, start_us), *_kraken_btc_usd(rng, start_us)]
    rng.shuffle(trades)  # insertion order must not matter
    return Dataset(tuple(trades))


# The installation key of the apps under test, so that tests can compare and make cursors.
CURSORS = CursorSeal(b"ticklake-tests-cursor-key")


def api_settings(max_limit: int = MAX_LIMIT) -> Settings:
    return Settings(api=ApiSettings(max_limit=max_limit))



def assert_error(response: httpx.Response, status: int, parameter: str | None) -> str:
    """The response is the API's error shape naming ``parameter``; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    if parameter is None:
        assert set(error) == {"message"}
    else:
        assert set(error) == {"parameter", "message"}
        assert error["parameter"] == parameter
    assert isinstance(error["message"], str) and error["message"]
    return str(error["message"])
