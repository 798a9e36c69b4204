"""Keeping gold equal to silver where a crash may have cut the gold view short.

The view fires inside the silver insert; a process killed between the two leaves silver rows whose
candles never counted them (stack.md, pitfall 2). Windows are compared by trade count, and a window
that disagrees is deleted and recomputed from silver.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from clickhouse_connect.driver.client import Client

from ticklake.model import Trade
from ticklake.ops import metrics
from ticklake.warehouse.reader import timeframe_seconds
from ticklake.warehouse.sql import query

log = logging.getLogger(__name__)

WindowKey = tuple[str, str, int, datetime]  # exchange, symbol, timeframe (s), bucket start


def as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def window_counts(client: Client, name: str, parameters: dict[str, object]) -> dict[WindowKey, int]:
    rows = client.query(query(name), parameters=parameters).result_rows
    return {(e, s, int(tf), as_utc(bucket)): int(n) for e, s, tf, bucket, n in rows}


def disagreeing(silver: dict[WindowKey, int], gold: dict[WindowKey, int]) -> list[WindowKey]:
    return [key for key in silver.keys() | gold.keys() if silver.get(key, 0) != gold.get(key, 0)]


def recompute(client: Client, windows: Iterable[WindowKey]) -> int:
    """Delete these gold windows and compute them again from silver; returns how many.

    Per market, one delete for all its windows, then one insert per timeframe. A reader in between
    sees the windows missing, never counted twice."""
    markets: dict[tuple[str, str], dict[int, list[datetime]]] = defaultdict(lambda: defaultdict(list))
    for exchange, symbol, timeframe, bucket in windows:
        markets[(exchange, symbol)][timeframe].append(bucket)
    count = 0
    for (exchange, symbol), timeframes in markets.items():
        client.command(query("delete_gold_windows"), parameters={
            "exchange": exchange, "symbol": symbol,
            "windows": [(tf, bucket) for tf, buckets in timeframes.items() for bucket in buckets]})
        for timeframe, buckets in timeframes.items():
            client.command(query("recompute_gold_windows"), parameters={
                "exchange": exchange, "symbol": symbol, "timeframe": timeframe, "buckets": buckets,
                "low": min(buckets), "high": max(buckets) + timedelta(seconds=timeframe)})
            count += len(buckets)
    if count:
        metrics.REPAIRS.labels("gold").inc(count)
    return count


def recheck_gold(client: Client, trades: Iterable[Trade]) -> int:
    """Check (and mend) the candle windows of the days these trades fall in, market by market."""
    days: dict[tuple[str, str], set[date]] = defaultdict(set)
    for trade in trades:
        days[(trade.exchange, trade.symbol)].add(datetime.fromtimestamp(trade.ts_us / 1e6, UTC).date())
    mended = 0
    for (exchange, symbol), market_days in days.items():
        params: dict[str, object] = {"exchange": exchange, "symbol": symbol, "days": sorted(market_days),
                                     "timeframes": timeframe_seconds()}
        wrong = disagreeing(window_counts(client, "market_silver_window_counts", params),
                            window_counts(client, "market_gold_window_counts", params))
        mended += recompute(client, wrong)
    if mended:
        log.warning("recomputed %d gold windows a crash had cut short", mended)
    return mended
