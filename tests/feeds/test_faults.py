"""Nothing lost, nothing doubled: each simulator fault, and the bus (deduplicated by id as the warehouse
does) still equals the simulator's tape, id for id and character for character.

Each test applies one fault to a venue serving its REST API, lets trades after the fault reveal what
went missing, stops the tape, waits for the feed (and its backfill) to settle, then compares.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random

import pytest

from ticklake.settings import FeedSettings, SimulatorSettings
from ticklake.simulator import Simulator, VenueOptions
from ticklake.simulator.venue import SimConnection

pytestmark = pytest.mark.integration

FAST = VenueOptions(tick_s=0.01, heartbeat_interval_s=0.1, batch_interval_s=0.05)


class LongestWait(random.Random):
    """Backoff jitter that always picks the longest wait, so a reconnect surely misses trades."""

    def uniform(self, a: float, b: float) -> float:
        return b


def sim_settings(tps: float = 40.0, seed: int = 17) -> SimulatorSettings:
    return SimulatorSettings(trades_per_second=tps, seed=seed)


def counters(helpers, exchange: str, symbol: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {name: helpers.sym_metric(f"ticklake_feed_{name}_total", exchange, symbol)
            for name in ("gaps", "trades_backfilled", "trades_unrecoverable", "symbol_trades")}


def deltas(helpers, before: dict[str, float], exchange: str, symbol: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    after = counters(helpers, exchange, symbol)
    return {name: after[name] - before[name] for name in after}


async def more_trades(tap, count: int = 10) -> None:  # type: ignore[no-untyped-def]
    """Let ``count`` more trades through, so that what a fault removed shows as a gap."""
    seen = len(tap.trades())
    await tap.wait_for(lambda: len(tap.trades()) >= seen + count, what=f"{count} more trades")


async def test_dropped_connection_is_backfilled(feed_settings, bus, taps, backfilling, running, helpers) -> None:
    symbols = ["BTC/USDT", "ETH/USDT"]
    async with Simulator(sim_settings(tps=60), {"binance": symbols}, options=FAST) as sim:
        tap = taps("binance")
        slow = feed_settings.model_copy(update={"backoff_initial_s": 0.5})
        feed = backfilling("binance", symbols, bus, sim, slow, rng=LongestWait())
        before = {s: counters(helpers, "binance", s) for s in symbols}
        reconnects = helpers.metric("ticklake_feed_reconnects_total", "binance")
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 30, what="trades")
        assert sim.drop_connections("binance") == 1
        await tap.wait_for(lambda: len(sim.connections("binance")) == 2, what="the reconnect (after 0.5 s)")
        await more_trades(tap)
        await helpers.settle(tap, feed, sim, "binance", symbols)

        for symbol in symbols:
            helpers.assert_tape_exact(tap, sim.tape("binance", symbol), symbol)
            rest, socket = helpers.rest_trade_ids(tap, symbol)
            change = deltas(helpers, before[symbol], "binance", symbol)
            # 0.5 s at 30 trades a second per symbol: one gap each, every trade of it backfilled.
            assert change["gaps"] == 1 and change["trades_backfilled"] == len(rest - socket) > 0
            assert change["trades_unrecoverable"] == 0
            assert change["symbol_trades"] == len(tap.trades(symbol))
        assert "connection lost" in feed.status().last_error
        assert helpers.metric("ticklake_feed_reconnects_total", "binance") == reconnects + 1
        helpers.assert_frames_well_formed(tap)


async def test_stalled_connection_is_replaced_and_backfilled(feed_settings, bus, taps, backfilling, running,
                                                             helpers) -> None:
    options = VenueOptions(tick_s=0.01, heartbeat_interval_s=0.1, snapshot_size=10)
    async with Simulator(sim_settings(tps=60), {"kraken": ["BTC/USD"]}, options=options) as sim:
        tap = taps("kraken")
        feed = backfilling("kraken", ["BTC/USD"], bus, sim, feed_settings, stale_timeout_s=0.5)
        before = counters(helpers, "kraken", "BTC/USD")
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 60, what="snapshot and updates")
        assert sim.stall("kraken", 2.0) == 1
        await tap.wait_for(lambda: len(sim.connections("kraken")) == 2, timeout=3, what="the watchdog's reconnect")
        await more_trades(tap, 20)
        await helpers.settle(tap, feed, sim, "kraken", ["BTC/USD"])

        helpers.assert_tape_exact(tap, sim.tape("kraken", "BTC/USD"), "BTC/USD")
        change = deltas(helpers, before, "kraken", "BTC/USD")
        rest, socket = helpers.rest_trade_ids(tap, "BTC/USD")
        assert change["gaps"] >= 1 and change["trades_backfilled"] == len(rest - socket) > 0
        assert change["trades_unrecoverable"] == 0
        assert "stale" in feed.status().last_error
        helpers.assert_frames_well_formed(tap)


async def test_skipped_ids_are_one_gap_filled_exactly(feed_settings, bus, taps, backfilling, running,
                                                      helpers) -> None:
    async with Simulator(sim_settings(), {"coinbase": ["ETH/USD", "BTC/USD"]}, options=FAST) as sim:
        tap = taps("coinbase")
        feed = backfilling("coinbase", ["ETH/USD", "BTC/USD"], bus, sim, feed_settings)
        before = counters(helpers, "coinbase", "ETH/USD")
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades("ETH/USD")) >= 60, what="snapshot and updates")
        sim.skip_next("coinbase", "ETH/USD", 7)
        await tap.wait_for(lambda: len(sim.skipped_ids("coinbase", "ETH/USD")) == 7, what="the skipped trades")
        await more_trades(tap)
        await helpers.settle(tap, feed, sim, "coinbase", ["ETH/USD", "BTC/USD"])

        skipped = sim.skipped_ids("coinbase", "ETH/USD")
        assert skipped == list(range(skipped[0], skipped[0] + 7))
        helpers.assert_tape_exact(tap, sim.tape("coinbase", "ETH/USD"), "ETH/USD")
        helpers.assert_tape_exact(tap, sim.tape("coinbase", "BTC/USD"), "BTC/USD")
        rest, socket = helpers.rest_trade_ids(tap, "ETH/USD")
        assert rest - socket == set(skipped)
        assert deltas(helpers, before, "coinbase", "ETH/USD") == {
            "gaps": 1, "trades_backfilled": 7, "trades_unrecoverable": 0,
            "symbol_trades": len(tap.trades("ETH/USD"))}
        helpers.assert_frames_well_formed(tap)


async def test_duplicated_frames_change_nothing(feed_settings, bus, taps, backfilling, running, helpers) -> None:
    async with Simulator(sim_settings(), {"binance": ["BTC/USDT"]}, options=FAST) as sim:
        tap = taps("binance")
        feed = backfilling("binance", ["BTC/USDT"], bus, sim, feed_settings)
        before = counters(helpers, "binance", "BTC/USDT")
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 10, what="trades")
        sim.duplicate_next("binance", 5)
        await more_trades(tap, 15)
        await helpers.settle(tap, feed, sim, "binance", ["BTC/USDT"])

        by_id = helpers.assert_tape_exact(tap, sim.tape("binance", "BTC/USDT"), "BTC/USDT")
        assert len(tap.trades()) == len(by_id) + 5  # the five repeats reached the bus; dedup drops them
        assert deltas(helpers, before, "binance", "BTC/USDT")["gaps"] == 0
        assert sim.rest_requests("binance") == []


async def test_reordered_frames_close_their_own_gaps(feed_settings, bus, taps, backfilling, running,
                                                     helpers) -> None:
    async with Simulator(sim_settings(), {"binance": ["BTC/USDT"]}, options=FAST) as sim:
        tap = taps("binance")
        feed = backfilling("binance", ["BTC/USDT"], bus, sim, feed_settings)
        before = counters(helpers, "binance", "BTC/USDT")
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 10, what="trades")
        sim.reorder_next("binance", 4)
        await more_trades(tap, 15)
        await helpers.settle(tap, feed, sim, "binance", ["BTC/USDT"])

        helpers.assert_tape_exact(tap, sim.tape("binance", "BTC/USDT"), "BTC/USDT")
        ids = [t.trade_id for t in tap.trades()]
        assert ids != sorted(ids)  # the frames did arrive out of order
        change = deltas(helpers, before, "binance", "BTC/USDT")
        # A shuffled run always jumps ahead somewhere; the late frames close that gap within the
        # backfill's grace period, so the venue's REST API is never asked.
        assert change["gaps"] >= 1 and change["trades_backfilled"] == 0 and change["trades_unrecoverable"] == 0
        assert sim.rest_requests("binance") == []


async def test_malformed_frames_are_kept_and_their_trades_backfilled(feed_settings, bus, taps, backfilling,
                                                                     running, helpers) -> None:
    async with Simulator(sim_settings(), {"kraken": ["BTC/USD"]}, options=FAST) as sim:
        tap = taps("kraken")
        feed = backfilling("kraken", ["BTC/USD"], bus, sim, feed_settings)
        before = counters(helpers, "kraken", "BTC/USD")
        errors = helpers.metric("ticklake_feed_parse_errors_total", "kraken")
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 60, what="snapshot and updates")
        sim.malformed_next("kraken", 3)
        await tap.wait_for(lambda: sum(bool(r.error) for r in tap.raws()) == 3, what="three garbled frames")
        await more_trades(tap)
        await helpers.settle(tap, feed, sim, "kraken", ["BTC/USD"])

        garbled = sim.garbled_ids("kraken", "BTC/USD")
        helpers.assert_tape_exact(tap, sim.tape("kraken", "BTC/USD"), "BTC/USD")
        rest, socket = helpers.rest_trade_ids(tap, "BTC/USD")
        assert rest - socket == set(garbled)
        change = deltas(helpers, before, "kraken", "BTC/USD")
        assert change["trades_backfilled"] == len(garbled) and change["trades_unrecoverable"] == 0
        assert 1 <= change["gaps"] <= 3
        assert helpers.metric("ticklake_feed_parse_errors_total", "kraken") == errors + 3
        assert all(r.payload.endswith("\ufffd\ufffd") for r in tap.raws() if r.error)  # kept as received
        helpers.assert_frames_well_formed(tap)


async def test_binance_shutdown_is_bridged_without_a_gap(feed_settings, bus, taps, backfilling, running,
                                                         helpers) -> None:
    async with Simulator(sim_settings(tps=60), {"binance": ["BTC/USDT"]}, options=FAST) as sim:
        tap = taps("binance")
        feed = backfilling("binance", ["BTC/USDT"], bus, sim, feed_settings)
        before = counters(helpers, "binance", "BTC/USDT")
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 20, what="trades")
        assert sim.shutdown("binance") == 1
        first = sim.connections("binance")[0]
        await tap.wait_for(lambda: first.closed_at is not None, timeout=3, what="the old connection to close")
        await more_trades(tap)
        await helpers.settle(tap, feed, sim, "binance", ["BTC/USDT"])

        helpers.assert_tape_exact(tap, sim.tape("binance", "BTC/USDT"), "BTC/USDT")
        old, new = sim.connections("binance")
        assert new.connected_at < (old.closed_at or 0)  # overlap: the next one opened before the old one closed
        assert deltas(helpers, before, "binance", "BTC/USDT")["gaps"] == 0
        assert sim.rest_requests("binance") == []
        assert feed.status().reconnects == 1 and feed.status().connections == 1


async def test_binance_connections_are_rotated_before_the_venue_ends_them(bus, taps, backfilling, running,
                                                                          helpers) -> None:
    settings = FeedSettings(backoff_initial_s=0.05, backoff_max_s=0.4, rotate_after_s=0.6)
    options = VenueOptions(tick_s=0.01, max_connection_age_s=1.2)
    async with Simulator(sim_settings(tps=60), {"binance": ["BTC/USDT"]}, options=options) as sim:
        tap = taps("binance")
        feed = backfilling("binance", ["BTC/USDT"], bus, sim, settings)
        feed.rotation_overlap_s = 0.1
        before = counters(helpers, "binance", "BTC/USDT")
        await running(feed)
        await tap.wait_for(lambda: len(sim.connections("binance")) >= 4, timeout=5, what="three rotations")
        await more_trades(tap)
        await helpers.settle(tap, feed, sim, "binance", ["BTC/USDT"])

        helpers.assert_tape_exact(tap, sim.tape("binance", "BTC/USDT"), "BTC/USDT")
        records = sim.connections("binance")
        closed = [r for r in records if r.closed_at is not None]
        assert closed and all(r.close_reason != "connection exceeded its maximum age" for r in records)
        for old, new in itertools.pairwise(records):
            assert old.closed_at is None or new.connected_at < old.closed_at  # always overlapping
        assert deltas(helpers, before, "binance", "BTC/USDT")["gaps"] == 0
        assert sim.rest_requests("binance") == []


@pytest.mark.parametrize(("exchange", "symbol"), [("kraken", "BTC/USD"), ("coinbase", "BTC/USD"), ("okx", "BTC/USDT")])
async def test_a_venue_going_away_loses_nothing(exchange: str, symbol: str, feed_settings, bus, taps, backfilling,
                                                running, helpers) -> None:
    options = VenueOptions(tick_s=0.01, heartbeat_interval_s=0.1, batch_interval_s=0.05, snapshot_size=5)
    async with Simulator(sim_settings(tps=60), {exchange: [symbol]}, options=options) as sim:
        tap = taps(exchange)
        feed = backfilling(exchange, [symbol], bus, sim, feed_settings)
        before = counters(helpers, exchange, symbol)
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 20, what="trades")
        assert sim.shutdown(exchange) == 1
        await tap.wait_for(lambda: len(sim.connections(exchange)) == 2, timeout=3, what="a reconnect")
        await asyncio.sleep(0.3)
        await more_trades(tap)
        await helpers.settle(tap, feed, sim, exchange, [symbol])

        helpers.assert_tape_exact(tap, sim.tape(exchange, symbol), symbol)
        assert deltas(helpers, before, exchange, symbol)["trades_unrecoverable"] == 0
        helpers.assert_frames_well_formed(tap)


async def test_coinbase_sequence_gaps_are_counted_and_logged(feed_settings, bus, taps, backfilling, running, helpers,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ticklake.feeds")
    async with Simulator(sim_settings(tps=5), {"coinbase": ["BTC/USD"]}, options=FAST) as sim:
        dropped: list[str] = []

        def drop_a_heartbeat(conn: SimConnection, text: str) -> list[str]:
            if not dropped and '"channel":"heartbeats"' in text:
                dropped.append(text)
                return []
            return [text]

        sim.venue("coinbase").frame_filter = drop_a_heartbeat
        tap = taps("coinbase")
        feed = backfilling("coinbase", ["BTC/USD"], bus, sim, feed_settings)
        gaps_before = helpers.metric("ticklake_feed_sequence_gaps_total", "coinbase")
        trade_gaps_before = helpers.sym_metric("ticklake_feed_gaps_total", "coinbase", "BTC/USD")
        await running(feed)
        await tap.wait_for(lambda: dropped and len(tap.raws()) >= 8, what="a dropped heartbeat, then more frames")
        assert helpers.metric("ticklake_feed_sequence_gaps_total", "coinbase") == gaps_before + 1
        assert "sequence gap" in caplog.text and "1 messages lost" in caplog.text
        # A lost heartbeat loses no trade: no trade-id gap, nothing to backfill.
        assert helpers.sym_metric("ticklake_feed_gaps_total", "coinbase", "BTC/USD") == trade_gaps_before
        assert feed.status().reconnects == 0


async def test_coinbase_subscribes_within_its_deadline(feed_settings, bus, taps, backfilling, running) -> None:
    strict = VenueOptions(tick_s=0.01, heartbeat_interval_s=0.1, subscribe_timeout_s=0.3)
    async with Simulator(sim_settings(tps=5), {"coinbase": ["BTC/USD"]}, options=strict) as sim:
        tap = taps("coinbase")
        feed = backfilling("coinbase", ["BTC/USD"], bus, sim, feed_settings)
        await running(feed)
        await asyncio.sleep(1.0)
        [record] = sim.connections("coinbase")
        assert record.closed_at is None and len(record.received) == 2  # one channel per message, in time
        assert tap.raws()
