"""Candle answers are kept while they are true: a repeated request is answered without a query, and
the first request after a write (or a recompute) of its market reads the warehouse again."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette

from tests.api.api_data import CONFIGURED, Dataset, api_settings
from tests.factories import trade
from ticklake.api import create_app
from ticklake.ops import metrics
from ticklake.settings import ValidationSettings
from ticklake.warehouse.changes import StoredChanges
from ticklake.warehouse.reader import WarehouseReader
from ticklake.warehouse.writer import WarehouseWriter

MakeApi = Callable[[Starlette], httpx.AsyncClient]
NEWEST = "/v1/ohlcv?exchange=binance&symbol=BTC/USDT&timeframe=1d&limit=3"
ETH = "/v1/ohlcv?exchange=binance&symbol=ETH/USDT&timeframe=1d&limit=3"


def cache(result: str) -> float:
    return metrics.REGISTRY.get_sample_value("ticklake_api_candle_cache_total", {"result": result}) or 0.0


class CountingReader(WarehouseReader):
    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.reads = 0

    def ohlcv_rows(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().ohlcv_rows(*args, **kwargs)


def newest_trade_us(dataset: Dataset, symbol: str = "BTC/USDT") -> int:
    return max(t.ts_us for t in dataset.trades if t.symbol == symbol and t.exchange == "binance")


async def test_a_repeated_request_is_answered_from_the_cache_until_its_market_is_written(
        warehouse: Client, loaded: Dataset, make_api: MakeApi) -> None:
    changes = StoredChanges()
    writer = WarehouseWriter(warehouse, ValidationSettings(), changes)
    reader = CountingReader(warehouse)
    hits = cache("hit")
    async with make_api(create_app(reader, api_settings(), configured_markets=CONFIGURED, changes=changes)) as api:
        first = (await api.get(NEWEST)).json()
        second = (await api.get(NEWEST)).json()
        assert second == first and reader.reads == 1 and cache("hit") == hits + 1

        # Another market's trade leaves this answer true, and kept.
        writer.write([], [trade(10**9, symbol="ETH/USDT", ts_us=int(time.time() * 1e6))])
        assert (await api.get(NEWEST)).json() == first and reader.reads == 1

        # A trade of this market: the very next request reads it.
        ts = newest_trade_us(loaded) + 1
        writer.write([], [trade(10**9 + 1, price="1", qty="2", ts_us=ts)])
        third = (await api.get(NEWEST)).json()
        assert reader.reads == 2
        newest_before, newest_after = first["candles"][-1], third["candles"][-1]
        assert newest_after["time"] == newest_before["time"]
        assert newest_after["trades"] == newest_before["trades"] + 1 and newest_after["close"] == "1"
        assert (await api.get(NEWEST)).json() == third and reader.reads == 2


async def test_candles_rewritten_outside_the_writer_are_read_again_once_everything_is_touched(
        warehouse: Client, loaded: Dataset, make_api: MakeApi) -> None:
    """A gold recompute (the completeness check's) touches everything: no kept candle survives it."""
    changes = StoredChanges()
    reader = CountingReader(warehouse)
    async with make_api(create_app(reader, api_settings(), configured_markets=CONFIGURED, changes=changes)) as api:
        before = (await api.get(ETH)).json()
        WarehouseWriter(warehouse, ValidationSettings()).write(  # a writer that tells no one
            [], [trade(10**9 + 2, symbol="ETH/USDT", ts_us=newest_trade_us(loaded, "ETH/USDT") + 1)])
        assert (await api.get(ETH)).json() == before  # unknown to the cache: kept
        changes.touch_everything()
        after = (await api.get(ETH)).json()
    assert after["candles"][-1]["trades"] == before["candles"][-1]["trades"] + 1
    assert reader.reads == 2


async def test_without_changes_every_request_reads_the_warehouse(warehouse: Client, loaded: Dataset,
                                                                 make_api: MakeApi) -> None:
    """An API process that does not write (a ClickHouse server others write to) keeps nothing."""
    reader = CountingReader(warehouse)
    async with make_api(create_app(reader, api_settings(), configured_markets=CONFIGURED)) as api:
        for _ in range(3):
            assert (await api.get(NEWEST)).status_code == 200
    assert reader.reads == 3
