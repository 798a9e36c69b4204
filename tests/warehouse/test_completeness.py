"""The completeness check on the embedded platform: trades lost after the feed handed them on (here:
a bus that drops some, as a broker losing acknowledged messages would) are found missing in what the
warehouse stored, and filled from the venues' REST APIs until the stored tape is exact; what a venue
cannot serve is counted once per market and not asked for again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
from clickhouse_connect.driver.client import Client

from tests.support.simulated import SimulatedPlatform
from tests.support.stored import assert_a_stretch_of_the_tape, assert_candles_recompute, stored_trades
from ticklake import platform as platform_module
from ticklake.bus import MemoryBus
from ticklake.model import Message, Trade
from ticklake.ops.metrics import REGISTRY
from ticklake.settings import CompletenessSettings, Settings, SimulatorSettings, VenueSettings, VenuesSettings
from ticklake.venues import NAMES

pytestmark = pytest.mark.integration

MARKETS = {"binance": ["BTC/USDT"], "kraken": ["BTC/USD"], "coinbase": ["ETH/USD"]}


class LossyBus(MemoryBus):
    """The embedded bus, losing the first copy of the trades whose ids a test names (per exchange),
    after the feed handed them on: the feed sees no gap, only the warehouse misses them."""

    lose: dict[str, set[int]] = {}
    lost: dict[str, list[int]] = {}

    async def publish(self, messages: Sequence[Message]) -> None:
        kept = []
        for message in messages:
            value = message.value
            if isinstance(value, Trade) and value.trade_id in self.lose.get(value.exchange, set()):
                self.lose[value.exchange].discard(value.trade_id)
                self.lost.setdefault(value.exchange, []).append(value.trade_id)
                continue
            kept.append(message)
        await super().publish(kept)


def metric(name: str, exchange: str, symbol: str) -> float:
    return REGISTRY.get_sample_value(name, {"exchange": exchange, "symbol": symbol}) or 0.0


def settings_for(warehouse_url: str, **completeness: float) -> Settings:
    return Settings(
        warehouse_url=warehouse_url, database="ticklake_test",
        venues=VenuesSettings(**{ex: VenueSettings(symbols=symbols) for ex, symbols in MARKETS.items()}),
        simulator=SimulatorSettings(trades_per_second=60, seed=16),
        completeness=CompletenessSettings(**completeness),  # type: ignore[arg-type]
    )


async def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def lossy(monkeypatch: pytest.MonkeyPatch) -> type[LossyBus]:
    """The platforms of this test use the lossy bus, losing nothing until told what."""
    monkeypatch.setattr(platform_module, "MemoryBus", LossyBus)
    monkeypatch.setattr(LossyBus, "lose", {})
    monkeypatch.setattr(LossyBus, "lost", {})
    return LossyBus


async def test_trades_lost_after_the_feed_are_found_in_storage_and_filled(
        warehouse: Client, warehouse_url: str, lossy: type[LossyBus]) -> None:
    settings = settings_for(warehouse_url, interval_s=0.5, settle_s=1.0)
    before = {(ex, sym): [metric(f"ticklake_{name}_total", ex, sym) for name in
                          ("completeness_trades_filled", "completeness_trades_unrecoverable", "feed_gaps")]
              for ex, syms in MARKETS.items() for sym in syms}
    platform = SimulatedPlatform(settings, serve_api=False)
    await platform.start()
    try:
        sim = platform.simulator
        assert sim is not None
        # Once every market trades, lose a stretch of each a little ahead of the tape's end.
        await wait_until(lambda: all(len(sim.tape(ex, syms[0])) > 40 for ex, syms in MARKETS.items()), 20, "trades")
        for exchange, symbols in MARKETS.items():
            newest = sim.tape(exchange, symbols[0])[-1].trade_id
            lossy.lose[exchange] = set(range(newest + 20, newest + 45)) | {newest + 60}
        await wait_until(lambda: all(not ids for ids in lossy.lose.values()), 60, "the lost trades to pass")
        assert {ex: len(ids) for ex, ids in lossy.lost.items()} == {ex: 26 for ex in MARKETS}

        def complete() -> bool:
            for exchange, symbols in MARKETS.items():
                ids = {t.trade_id for t in stored_trades(warehouse, exchange, symbols[0])}
                if not set(lossy.lost[exchange]) <= ids:
                    return False
            return True

        await wait_until(complete, 60, "the lost trades to be filled from the warehouse's check")
        health = platform._health_sources(None)["completeness"]()
        assert health["status"] == "ok" and health["last_check_at"] is not None
    finally:
        await platform.stop()

    everything: list[Trade] = []
    for exchange, symbols in MARKETS.items():
        symbol = symbols[0]
        stored = stored_trades(warehouse, exchange, symbol)
        assert_a_stretch_of_the_tape(stored, sim.tape(exchange, symbol), exchange)
        everything += stored
        filled, unrecoverable, feed_gaps = (
            metric(f"ticklake_{name}_total", exchange, symbol) - was for name, was in zip(
                ("completeness_trades_filled", "completeness_trades_unrecoverable", "feed_gaps"),
                before[(exchange, symbol)], strict=True))
        # Found by the warehouse's check (the feed saw no gap), each lost trade fetched once.
        assert (filled, unrecoverable, feed_gaps) == (26, 0, 0), exchange
    assert_candles_recompute(warehouse, everything)


async def test_a_hole_the_venue_cannot_serve_is_counted_once_and_not_asked_again(
        warehouse: Client, warehouse_url: str, lossy: type[LossyBus]) -> None:
    settings = settings_for(warehouse_url, interval_s=0.5, settle_s=1.0)
    settings.venues.kraken.enabled = settings.venues.coinbase.enabled = False
    before = metric("ticklake_completeness_trades_unrecoverable_total", "binance", "BTC/USDT")
    platform = SimulatedPlatform(settings, serve_api=False)
    await platform.start()
    try:
        sim = platform.simulator
        check = platform.completeness
        assert sim is not None and check is not None
        await wait_until(lambda: len(sim.tape("binance", "BTC/USDT")) > 40, 20, "trades")
        newest = sim.tape("binance", "BTC/USDT")[-1].trade_id
        lossy.lose["binance"] = set(range(newest + 10, newest + 15))
        await wait_until(lambda: not lossy.lose["binance"], 60, "the lost trades to pass")
        sim.rest_fail_next("binance", 1, status=400, retry_after_s=None)  # refused outright: not retried
        await wait_until(lambda: metric("ticklake_completeness_trades_unrecoverable_total", "binance",
                                        "BTC/USDT") > before, 30, "the hole to be given up")
        requests = len(sim.rest_requests("binance"))
        checks = REGISTRY.get_sample_value("ticklake_completeness_checks_total", {"result": "ok"}) or 0
        await wait_until(lambda: (REGISTRY.get_sample_value("ticklake_completeness_checks_total",
                                                            {"result": "ok"}) or 0) >= checks + 4, 20, "more checks")
        assert check.missing == 5  # still missing from storage, and said so
        assert len(sim.rest_requests("binance")) == requests  # but not asked for again
    finally:
        await platform.stop()
    assert metric("ticklake_completeness_trades_unrecoverable_total", "binance", "BTC/USDT") - before == 5


async def test_candle_windows_a_crash_left_short_are_recomputed_from_silver(warehouse: Client) -> None:
    """A batch cut short inside the gold view, whose messages the broker then lost, is replayed by
    nothing: silver holds its trades, the candles do not count them. The check finds the minute whose
    counts disagree and recomputes its windows of every timeframe from silver."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime

    from tests.factories import trade
    from ticklake.warehouse.completeness import CompletenessCheck
    from ticklake.warehouse.sql import query
    from ticklake.warehouse.writer import WarehouseWriter

    settings = Settings(venues=VenuesSettings(binance=VenueSettings(symbols=["BTC/USDT"]),
                                              **{name: VenueSettings(enabled=False) for name in NAMES
                                                 if name != "binance"}),
                        completeness=CompletenessSettings(settle_s=0))
    start_us = (time.time_ns() // 1000 - 900_000_000) // 60_000_000 * 60_000_000  # a whole minute, 15 min ago
    trades = [trade(i, price=f"{100 + i % 7}.5", ts_us=start_us + i * 2_000_000) for i in range(1, 200)]
    WarehouseWriter(warehouse, settings.validation).write([], trades)
    minute = datetime.fromtimestamp(start_us / 1e6 + 120, UTC)  # trades 30..59
    warehouse.command(query("delete_gold_windows"), parameters={
        "exchange": "binance", "symbol": "BTC/USDT", "windows": [(60, minute)]})

    with ThreadPoolExecutor(max_workers=1) as executor:
        check = CompletenessCheck(warehouse, settings, MemoryBus(), executor)
        assert await check.check() == 0  # no hole: nothing asked of the venue
        assert check.gold_windows_mended == 6  # the minute's window in each timeframe
        assert_candles_recompute(warehouse, trades)
        await check.check()
        assert check.gold_windows_mended == 6  # nothing more to mend
        await check.close()


async def test_a_minute_whose_last_trades_open_a_granule_is_counted_whole(warehouse: Client) -> None:
    """The minute check counts silver's trades of a minute exactly, also when the minute's last trades
    (…:59.996) begin a new granule of silver's primary index: it does not see candles that are right as
    wrong (nor wrong ones as right), and recomputes nothing. ClickHouse's index analysis drops that
    granule when a ``DateTime64`` column is compared with a ``DateTime`` bound (the check's parameters
    once were), so the trades of the granule went uncounted and the check kept "mending" the minute."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.factories import trade
    from ticklake.warehouse.completeness import CompletenessCheck
    from ticklake.warehouse.writer import WarehouseWriter

    settings = Settings(venues=VenuesSettings(binance=VenueSettings(symbols=["BTC/USDT"]),
                                              **{name: VenueSettings(enabled=False) for name in NAMES
                                                 if name != "binance"}),
                        completeness=CompletenessSettings(settle_s=0))
    start_us = (time.time_ns() // 1000 - 900_000_000) // 60_000_000 * 60_000_000  # a whole minute, 15 min ago
    granule = 8192  # silver's index_granularity: the minute's last 8 trades start the second granule
    writer = WarehouseWriter(warehouse, settings.validation)
    writer.write([], [trade(i, ts_us=start_us + i * 7_000) for i in range(granule)])
    writer.write([], [trade(granule + i, ts_us=start_us + 59_996_000 + i * 500) for i in range(8)])
    warehouse.command("OPTIMIZE TABLE silver_trades FINAL")  # one part of two granules, as merges make

    with ThreadPoolExecutor(max_workers=1) as executor:
        # Checked 5 s after the minute ended: the minute is the newest whole one, its end the bound.
        check = CompletenessCheck(warehouse, settings, MemoryBus(), executor, clock=lambda: start_us / 1e6 + 65)
        assert await check.check() == 0
        assert check.gold_windows_mended == 0
        await check.close()
