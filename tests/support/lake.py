"""Writing a small warm tier and reading warm and cold rows back, for the cold-tier tests."""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from tests.factories import BASE_US, frame, trade
from ticklake.lake.arrow_cast import to_lake
from ticklake.lake.offload import offload_bound
from ticklake.lake.tables import SILVER_TRADES, LakeTable
from ticklake.model import Trade
from ticklake.settings import ValidationSettings
from ticklake.warehouse.sql import query
from ticklake.warehouse.writer import WarehouseWriter

# The safety lag must outlast any insert still in flight (settings demand at least 2 s of a running
# platform). These tests write synchronously and never offload while an insert runs, so the lag only
# has to pass the current second: 1 s, which halves what every test waits.
LAG_S = 1


NAMESPACE = "ticklake"


DAY_US = 86_400_000_000


def write(warehouse: Client, trades: list[Trade]) -> None:
    WarehouseWriter(warehouse, ValidationSettings()).write([frame("{}", trade_count=len(trades))], trades)


def settle(warehouse: Client, lag_s: int = LAG_S) -> None:
    """Wait until every stored row is older than the safety lag, by the warehouse's clock."""
    # A candle's updated_at may fall a second after its trade's stored_at: wait for both.
    newest = int(warehouse.query("SELECT greatest((SELECT toUInt32(max(stored_at)) FROM silver_trades), "
                                 "(SELECT toUInt32(max(updated_at)) FROM gold_ohlcv))").first_row[0])
    while offload_bound(warehouse, lag_s) < newest:
        time.sleep(0.2)


def rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(tuple(row.values()) for row in table.to_pylist())


def warm(warehouse: Client, spec: LakeTable = SILVER_TRADES) -> list[tuple[Any, ...]]:
    everything = warehouse.query_arrow(query(spec.select_query), parameters={"lower": 0, "upper": 2**32 - 1})
    return rows(to_lake(everything, spec))


def tape(first_id: int, count: int, *, ts_offset_us: int = 0) -> list[Trade]:
    """Trades on two venues, two symbols and three days."""
    markets = (("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("kraken", "BTC/USD"))
    return [trade(i, f"{100 + i % 7}.{i % 1000:03d}", "0.125", exchange=markets[i % 3][0], symbol=markets[i % 3][1],
                  side=("buy", "sell")[i % 2], ts_us=BASE_US + ts_offset_us + (i % 3) * DAY_US + i * 1000)
            for i in range(first_id, first_id + count)]
