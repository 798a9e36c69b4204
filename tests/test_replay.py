"""Replaying the real recorded sessions (cryptofeed's 2021 samples) through the whole pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from tests.conftest import SHARED_TESTDATA
from ticklake.replay import replay
from ticklake.settings import Settings

FILES = ("BINANCE.ws.1.0", "BINANCE_US.ws.1.0", "KRAKEN.ws.48.0", "COINBASE.ws.28.0")


@pytest.fixture
def recordings() -> list[Path]:
    if not SHARED_TESTDATA.is_dir():
        pytest.skip(f"recorded sessions not present at {SHARED_TESTDATA}")
    return [SHARED_TESTDATA / name for name in FILES]


async def test_recorded_sessions_replay_into_every_layer_once(warehouse: Client, warehouse_url: str,
                                                              recordings: list[Path]) -> None:
    settings = Settings(warehouse_url=warehouse_url, database="ticklake_test")
    first = await replay(settings, recordings)
    # 2 + 11 aggTrades, 10 Kraken v1 trades, 97 match + 10 last_match (cryptofeed counts 130 too)
    assert first["trades"] == 130 and first["parse_errors"] == 0
    # last_match repeats a match the session also delivered: stored once
    assert first["stored_trades"] == first["trades"] - first["duplicates"]
    assert first["silver_trades"] == first["stored_trades"] and first["dead_letters"] == {}
    counts = warehouse.query(
        "SELECT exchange, count() FROM silver_trades GROUP BY exchange ORDER BY exchange").result_rows
    assert dict(counts)["kraken"] == 10 and dict(counts)["binance"] == 13
    # the trades keep the venues' own ids and 2021 times; candles exist for them
    assert warehouse.query("SELECT min(toYear(ts)), max(toYear(ts)) FROM silver_trades").result_rows == [(2021, 2021)]
    assert warehouse.query("SELECT countMerge(trades) FROM gold_ohlcv WHERE timeframe = 86400").result_rows[0][0] == \
        first["silver_trades"]

    again = await replay(settings, recordings)
    assert again["stored_trades"] == 0 and again["duplicates"] == again["trades"] == 130
