"""The embedded platform end to end: simulated venues -> feeds -> bus -> ingester -> every layer.

What is stored must be exactly the venues' tape (ids, prices, quantities, taker sides, times), with
no gap and no duplicate, and every candle must equal its recomputation from the stored trades.
"""

from __future__ import annotations

import asyncio

import pytest
from clickhouse_connect.driver.client import Client

from tests.support.simulated import SimulatedPlatform
from tests.support.stored import assert_a_stretch_of_the_tape, assert_candles_recompute, stored_trades
from ticklake.model import Trade
from ticklake.settings import Settings, SimulatorSettings, VenueSettings, VenuesSettings
from ticklake.venues import NAMES
from ticklake.warehouse.reader import WarehouseReader

pytestmark = pytest.mark.integration

MARKETS = {"binance": ["BTC/USDT", "ETH/USDT"], "kraken": ["BTC/USD", "DOGE/USD"], "coinbase": ["BTC/USD", "SOL/USD"],
           "okx": ["BTC/USDT", "ETH/USDC"], "bybit": ["BTC/USDT", "ETH/USDC"]}


async def test_simulated_session_is_stored_exactly_as_the_venues_traded(warehouse: Client, warehouse_url: str) -> None:
    settings = Settings(
        warehouse_url=warehouse_url, database="ticklake_test",
        venues=VenuesSettings(**{ex: VenueSettings(symbols=symbols) for ex, symbols in MARKETS.items()}),
        simulator=SimulatorSettings(trades_per_second=40, seed=42),
    )
    platform = SimulatedPlatform(settings, serve_api=False)
    await platform.start()
    await asyncio.sleep(4)
    await platform.stop()
    assert platform.simulator is not None

    everything: list[Trade] = []
    for exchange, symbols in MARKETS.items():
        for symbol in symbols:
            tape = platform.simulator.tape(exchange, symbol)
            stored = stored_trades(warehouse, exchange, symbol)
            assert len(stored) > 20, (exchange, symbol, len(stored))
            assert_a_stretch_of_the_tape(stored, tape, (exchange, symbol))
            everything += stored

    assert WarehouseReader(warehouse).layer_counts()["dead_letters"] == 0
    assert_candles_recompute(warehouse, everything)


async def test_malformed_frames_and_invalid_trades_land_where_described(warehouse: Client, warehouse_url: str) -> None:
    """A garbled frame stays in raw with its error and is counted; a trade with a negative price goes to
    dead letters with its rule and raw frame; the feed and everything else keep going."""
    from ticklake.ops import metrics

    settings = Settings(
        warehouse_url=warehouse_url, database="ticklake_test",
        venues=VenuesSettings(binance=VenueSettings(symbols=["BTC/USDT"]),  # the others disabled: binance only
                              **{name: VenueSettings(enabled=False) for name in NAMES if name != "binance"}),
        simulator=SimulatorSettings(trades_per_second=40, seed=3),
    )
    errors_before = metrics.FEED_PARSE_ERRORS.labels("binance")._value.get()
    sent = {"garbled": 0, "negative": 0}

    def corrupt(conn: object, text: str) -> list[str]:
        if '"e":"trade"' not in text:
            return [text]
        if sent["garbled"] < 3:
            sent["garbled"] += 1
            return [text[: len(text) // 2], text]  # a cut-off frame, then the real one
        if sent["negative"] < 2 and '"p":"' in text:
            sent["negative"] += 1
            return [text.replace('"p":"', '"p":"-', 1)]
        return [text]

    platform = SimulatedPlatform(settings, serve_api=False)
    await platform.start()
    assert platform.simulator is not None
    platform.simulator.venue("binance").frame_filter = corrupt
    await asyncio.sleep(3)
    await platform.stop()

    raw_errors = warehouse.query("SELECT payload, error FROM raw_frames WHERE error != ''").result_rows
    assert len(raw_errors) == 3 and all("invalid JSON" in error or "JSON" in error for _, error in raw_errors)
    assert metrics.FEED_PARSE_ERRORS.labels("binance")._value.get() - errors_before == 3
    dead = warehouse.query("SELECT rule, price, raw_frame FROM dead_letters").result_rows
    assert [row[0] for row in dead] == ["non_positive_price"] * 2
    assert all(row[1].startswith("-") and f'"p":"{row[1]}"' in row[2] for row in dead)
    # every other trade of the tape reached silver
    tape_ids = {t.trade_id for t in platform.simulator.tape("binance", "BTC/USDT")}
    silver_ids = {t.trade_id for t in stored_trades(warehouse, "binance", "BTC/USDT")}
    dead_ids = {int(r[0]) for r in warehouse.query("SELECT trade_id FROM dead_letters").result_rows}
    assert silver_ids and silver_ids.isdisjoint(dead_ids) and (silver_ids | dead_ids) <= tape_ids
    assert len(silver_ids) + len(dead_ids) == max(silver_ids | dead_ids) - min(silver_ids | dead_ids) + 1
