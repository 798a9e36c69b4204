"""Candles reach the cold tier once their window is closed, and late trades rewrite the windows they
touched (docs/lake.md, "Candles"). Real embedded ClickHouse, SQLite catalog in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog

from tests.factories import BASE_US, recompute_candles, trade
from tests.support.lake import NAMESPACE, rows, settle, tape, write
from ticklake.lake.arrow_cast import to_lake
from ticklake.lake.catalog import open_catalog
from ticklake.lake.offload import OffloadResult, closed_before, offload_table, watermark
from ticklake.lake.tables import GOLD_OHLCV, TIMEFRAMES, LakeTable
from ticklake.model import Trade
from ticklake.settings import LakeSettings
from ticklake.warehouse.sql import query

pytestmark = pytest.mark.integration

LAG_S = 1  # as tests/lake/test_offload.py: no insert is in flight when these tests offload
HOUR_US = 3_600_000_000


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    yield open_catalog(LakeSettings(), tmp_path)


def run(warehouse: Client, catalog: Catalog, spec: LakeTable, max_rows: int = 1_000_000) -> OffloadResult:
    return offload_table(warehouse, catalog, NAMESPACE, spec, safety_lag_s=LAG_S, max_rows_per_commit=max_rows)


def cold(catalog: Catalog, spec: LakeTable) -> list[tuple[Any, ...]]:
    return rows(catalog.load_table((NAMESPACE, spec.name)).scan().to_arrow())


def warm_closed(warehouse: Client, spec: LakeTable, before: int) -> list[tuple[Any, ...]]:
    """Every warm candle of the windows starting before ``before``, as the cold table holds them."""
    everything = warehouse.query_arrow(query("lake_gold_ohlcv"), parameters={
        "timeframe": spec.timeframe, "closed_from": 0, "closed_before": before, "changed_after": 2**32 - 1})
    return rows(to_lake(everything, spec))


def without_updated_at(candles: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [c[:-1] for c in candles]


def expected(trades: list[Trade], spec: LakeTable, before: int) -> set[tuple[Any, ...]]:
    """The candles recomputed from the trades, in the cold table's columns (bar updated_at)."""
    assert spec.timeframe is not None
    result = set()
    for (exchange, symbol, start), c in recompute_candles(trades, spec.timeframe).items():
        if start < before:
            result.add((exchange, symbol, start, c.open, c.high, c.low, c.close, c.volume, c.trades))
    return result


def as_expected(candles: list[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    return {(c[0], c[1], int(c[2].timestamp()), c[3], c[4], c[5], c[6], c[7], c[10]) for c in candles}


@pytest.mark.parametrize("label", list(TIMEFRAMES))
def test_closed_windows_of_every_timeframe_reach_cold_exactly(warehouse: Client, catalog: Catalog,
                                                              label: str) -> None:
    spec = GOLD_OHLCV[label]
    trades = tape(1, 2000)
    write(warehouse, trades)
    settle(warehouse)

    result = run(warehouse, catalog, spec)

    table = catalog.load_table((NAMESPACE, spec.name))
    before = closed_before(table)
    assert result.commits == 1 and result.rows > 0
    assert cold(catalog, spec) == warm_closed(warehouse, spec, before)
    # The tape is in the past: every window is closed, and each candle equals a recomputation.
    assert as_expected(cold(catalog, spec)) == expected(trades, spec, before)
    assert run(warehouse, catalog, spec).commits == 0  # nothing new: no commit


def test_an_open_window_waits_until_it_closes(warehouse: Client, catalog: Catalog) -> None:
    spec = GOLD_OHLCV["1d"]
    now_us = int(warehouse.query("SELECT toUnixTimestamp64Micro(now64(6))").first_row[0])
    today = [t for t in tape(1, 50, ts_offset_us=now_us - BASE_US - 60_000_000 - 3 * 86_400_000_000)
             if t.ts_us // 86_400_000_000 == now_us // 86_400_000_000]
    write(warehouse, tape(100, 300) + today)
    settle(warehouse)

    run(warehouse, catalog, spec)

    today_start = now_us // 86_400_000_000 * 86_400
    assert closed_before(catalog.load_table((NAMESPACE, spec.name))) <= today_start
    assert all(int(c[2].timestamp()) < today_start for c in cold(catalog, spec))
    assert len(cold(catalog, spec)) == len(warm_closed(warehouse, spec, today_start))


def test_a_late_trade_rewrites_its_window_in_cold(warehouse: Client, catalog: Catalog) -> None:
    spec = GOLD_OHLCV["1h"]
    trades = tape(1, 900)
    write(warehouse, trades)
    settle(warehouse)
    run(warehouse, catalog, spec)
    before_late = cold(catalog, spec)
    first_watermark = watermark(catalog.load_table((NAMESPACE, spec.name)))

    # A trade the venue sent late (a backfill): its window was offloaded already.
    late = [t for t in tape(5000, 3) if t.ts_us < BASE_US + HOUR_US]
    assert late, "the late trades must fall in an offloaded window"
    write(warehouse, late)
    settle(warehouse)
    result = run(warehouse, catalog, spec)

    after = cold(catalog, spec)
    table = catalog.load_table((NAMESPACE, spec.name))
    assert result.commits == 1 and watermark(table) > first_watermark
    assert after == warm_closed(warehouse, spec, closed_before(table))
    assert as_expected(after) == expected(trades + late, spec, closed_before(table))
    # Only the late trades' bucket changed, each candle still once.
    changed = set(without_updated_at(after)) - set(without_updated_at(before_late))
    assert {c[2] for c in changed} == {after[0][2].fromtimestamp(BASE_US // 1_000_000, after[0][2].tzinfo)}
    assert len(after) == len(before_late)
    assert run(warehouse, catalog, spec).commits == 0


def test_a_backlog_of_windows_is_cut_at_bucket_boundaries(warehouse: Client, catalog: Catalog) -> None:
    spec = GOLD_OHLCV["1m"]
    markets = (("binance", "BTC/USDT"), ("kraken", "BTC/USD"))
    # Two markets, a trade every 7 s for 30 minutes: 60 one-minute candles.
    trades = [trade(i, "100.5", "0.5", exchange=markets[i % 2][0], symbol=markets[i % 2][1],
                    ts_us=BASE_US + i * 7_000_000) for i in range(1, 258)]
    write(warehouse, trades)
    settle(warehouse)

    result = run(warehouse, catalog, spec, max_rows=25)

    assert result.rows == 60 and result.commits == 3  # at most 12 whole buckets (24 candles) a commit
    table = catalog.load_table((NAMESPACE, spec.name))
    assert cold(catalog, spec) == warm_closed(warehouse, spec, closed_before(table))
