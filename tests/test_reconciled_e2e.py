"""Venues reconciled by time, end to end under the whole fault mix: what is stored is exactly the venue's
tape, though their trade ids are global and no gap shows in them.

Every registered venue whose completeness is "reconciled-by-time" (Bitstamp, Gemini, Bitfinex) runs, all
in one embedded platform, against its simulated server while chaos drops and shuts down its connections,
garbles, duplicates and reorders frames, hides trades from every socket (``skip_next``), stalls the
sockets, and fails REST requests. Breaks (reconnects, unreadable frames, sequence jumps) and the periodic
reconciliation (every 2 s here) read each market's REST trades back; the assertion is the issue's: the
stored tape equals the venue's (every outage here is far inside the REST window), nothing is counted as
unreconciled, no trade is stored twice, and every candle equals its recomputation from the trades.

A downtime longer than the window REST is asked to reach back (here a 4 s look-back) loses what lies
beyond it, and counts the loss per market, rather than guessing: the second test stops ticklake for 10 s.

A trade recovered over REST carries the time the venue's REST API gives (Bitstamp: whole seconds, where
its socket gives microseconds): its stored time is compared at that precision.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from decimal import Decimal

import pytest
from clickhouse_connect.driver.client import Client

from tests.support.simulated import SimulatedPlatform
from tests.support.stored import assert_candles_recompute, metric_sum, stored_trades
from ticklake.exchanges import registry
from ticklake.exchanges.rest import RateLimit
from ticklake.ops import metrics
from ticklake.platform import Platform
from ticklake.settings import FeedSettings, Settings, SimulatorSettings, VenueSettings, VenuesSettings
from ticklake.simulator.faults import CHAOS_FAULTS
from ticklake.simulator.rest import RestLimit
from ticklake.simulator.server import Simulator
from ticklake.simulator.venue import now_us
from ticklake.venues import NAMES, VENUES

RECONCILED = [name for name in NAMES if VENUES[name].completeness == "reconciled-by-time"]
SECONDS = float(os.environ.get("TICKLAKE_RECONCILED_CHAOS_SECONDS", "30"))


def same_time(stored_us: int, tape_us: int) -> bool:
    """Equal, or equal at the precision a venue's REST API gives (milliseconds, whole seconds)."""
    return stored_us in (tape_us, tape_us // 1000 * 1000, tape_us // 1_000_000 * 1_000_000)


def lift_rest_budget(exchange: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chaos here breaks a connection every second or so, each break a REST read per market; a venue's real
    budget (Bitfinex: 15 requests a minute) would take minutes to read them back. The client gets ten a
    second here, and the simulated venue (``unlimited_rest``) as many."""
    rest = registry.part(exchange, "rest")
    monkeypatch.setattr(rest, "POLICY", dataclasses.replace(rest.POLICY, limit=RateLimit(burst=10, per_second=10)))


def unlimited_rest(simulator: Simulator, exchange: str) -> None:
    simulator.set_rest_limit(exchange, RestLimit())


@pytest.mark.slow
async def test_under_every_fault_the_stored_tape_is_the_venues(warehouse: Client, warehouse_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Every venue reconciled by time at once, in one platform, under one chaos run spread over them."""
    markets = {exchange: list(VENUES[exchange].default_symbols[:2]) for exchange in RECONCILED}
    for exchange in RECONCILED:
        lift_rest_budget(exchange, monkeypatch)
    settings = Settings(
        warehouse_url=warehouse_url, database="ticklake_test",
        venues=VenuesSettings(**{name: VenueSettings(symbols=markets[name]) if name in markets
                                 else VenueSettings(enabled=False) for name in NAMES}),
        simulator=SimulatorSettings(trades_per_second=5 * len(RECONCILED), seed=20261207),
        feed=FeedSettings(backoff_initial_s=0.1, backoff_max_s=1.0, stable_after_s=2.0, reconcile_every_s=2.0),
    )
    short_before = {exchange: metric_sum(metrics.FEED_BACKFILL_SHORT, exchange) for exchange in RECONCILED}
    recovered_before = {exchange: metric_sum(metrics.FEED_BACKFILLED, exchange) for exchange in RECONCILED}
    platform = SimulatedPlatform(settings, serve_api=False)
    await platform.start()
    simulator = platform.simulator
    assert simulator is not None
    for exchange in RECONCILED:
        unlimited_rest(simulator, exchange)
    simulator.chaos(seed=13, mean_interval_s=1.0 / len(RECONCILED), exchanges=RECONCILED, faults=CHAOS_FAULTS)
    await asyncio.sleep(SECONDS)
    await simulator.stop_chaos()
    simulator.clear_faults()
    await asyncio.sleep(5)  # reconnects settle; the next ticks read the last faults' windows back
    # Then the venues stop trading, and two more periods pass, so every window up to the tape's end is
    # read back before the feeds stop.
    for exchange in RECONCILED:
        simulator.pause(exchange)
    await asyncio.sleep(2 * settings.feed.reconcile_every_s + 2)
    await platform.stop()
    report = simulator.fault_report()

    everything = []
    for exchange, symbols in markets.items():
        kinds = {event.fault for event in simulator.fault_log if event.exchange == exchange}
        assert {"skip_next", "drop_connections", "malformed_next"} <= kinds, (exchange, report)
        assert metric_sum(metrics.FEED_BACKFILL_SHORT, exchange) == short_before[exchange], (exchange, report)
        # Losses were read back (and not only at the first connection).
        assert metric_sum(metrics.FEED_BACKFILLED, exchange) > recovered_before[exchange], (exchange, report)
        for symbol in symbols:
            tape = simulator.tape(exchange, symbol)
            stored = stored_trades(warehouse, exchange, symbol)
            market = f"{exchange} {symbol}"
            assert len(stored) > 50, (market, len(stored))
            ids = [t.trade_id for t in stored]
            assert len(ids) == len(set(ids)), f"{market}: duplicates in silver\n{report}"
            by_id = {t.trade_id: t for t in stored}
            first = next(i for i, t in enumerate(tape) if t.trade_id in by_id)
            expected = tape[first:]
            missing = [(t.trade_id, t.ts_us) for t in expected if t.trade_id not in by_id]
            assert not missing, f"{market}: {len(missing)} trades of the tape not stored: {missing[:10]}\n{report}"
            assert len(stored) == len(expected), f"{market}: trades stored that the tape does not hold\n{report}"
            for t in expected:
                mine = by_id[t.trade_id]
                assert (Decimal(mine.price), Decimal(mine.qty), mine.side) == \
                       (Decimal(t.price), Decimal(t.qty), t.side), (market, t.trade_id)
                assert same_time(mine.ts_us, t.ts_us), (market, t.trade_id, mine.ts_us, t.ts_us)
            everything += stored
    assert_candles_recompute(warehouse, everything)


@pytest.mark.slow
@pytest.mark.parametrize("exchange", RECONCILED[:1])
async def test_a_downtime_beyond_the_rest_window_is_counted_and_only_it_is_lost(exchange: str, warehouse: Client,
                                                                              warehouse_url: str) -> None:
    symbols = list(VENUES[exchange].default_symbols[:2])
    lookback_s = 4.0
    venues = {name: VenueSettings(enabled=False) for name in NAMES if name != exchange}
    base = Settings(
        warehouse_url=warehouse_url, database="ticklake_test",
        venues=VenuesSettings(**{exchange: VenueSettings(symbols=symbols)}, **venues),
        feed=FeedSettings(backoff_initial_s=0.1, backoff_max_s=1.0, backfill_lookback_s=lookback_s,
                          reconcile_every_s=1.0),
    )
    async with Simulator(SimulatorSettings(trades_per_second=5, seed=20261208), {exchange: symbols}) as simulator:
        settings = simulator.settings_for(base)
        platform = Platform(settings, serve_api=False)
        await platform.start()
        await asyncio.sleep(4)
        await platform.stop()
        stopped = now_us()
        await asyncio.sleep(10)  # the venue trades on: more than the look-back REST will be asked to reach
        short_before = metric_sum(metrics.FEED_BACKFILL_SHORT, exchange)
        platform = Platform(settings, serve_api=False)
        await platform.start()
        restarted = now_us()
        await asyncio.sleep(5)
        simulator.pause(exchange)
        await asyncio.sleep(3)
        await platform.stop()
        tapes = {symbol: simulator.tape(exchange, symbol) for symbol in symbols}

    # One break per market reached back beyond the window: counted once each.
    assert metric_sum(metrics.FEED_BACKFILL_SHORT, exchange) == short_before + len(symbols)
    for symbol, tape in tapes.items():
        stored = {t.trade_id for t in stored_trades(warehouse, exchange, symbol)}
        first = next(i for i, t in enumerate(tape) if t.trade_id in stored)
        missing = [t for t in tape[first:] if t.trade_id not in stored]
        assert missing, f"{symbol}: a 10 s downtime with a 4 s look-back lost nothing?"
        # Only the downtime beyond the window is missing: nothing from before the stop, nothing from the
        # second before the restart on (well inside the look-back when the first window was read).
        assert all(stopped - 2_000_000 <= t.ts_us < restarted - 1_000_000 for t in missing), \
            (symbol, [(t.trade_id, t.ts_us) for t in missing], stopped, restarted)
