"""The Coinbase Advanced Trade feed against the simulated venue: handshake, tape, heartbeats, side."""

from __future__ import annotations

import asyncio
import json

import pytest

from ticklake.exchanges.feeds import feed_for
from ticklake.settings import SimulatorSettings
from ticklake.simulator import Simulator, VenueOptions
from ticklake.venues.coinbase import mapper as coinbase_mapper
from ticklake.venues.coinbase import simulated as coinbase_sim

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC/USD", "ETH/USD"]


def sim_settings(tps: float = 40.0) -> SimulatorSettings:
    return SimulatorSettings(trades_per_second=tps, seed=23)


def test_simulator_and_mapper_agree_on_market_trades_side() -> None:
    """Coinbase does not document it; both sides of ticklake must at least say the same thing."""
    assert coinbase_sim.SIDE_IS_MAKER == coinbase_mapper.MARKET_TRADES_SIDE_IS_MAKER


async def test_handshake_snapshot_and_updates_equal_the_tape(feed_settings, bus, taps, running,
                                                             helpers) -> None:
    async with Simulator(sim_settings(), {"coinbase": SYMBOLS}) as sim:
        tap = taps("coinbase")
        feed = feed_for("coinbase", SYMBOLS, bus, feed_settings, sim.ws_urls["coinbase"])
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 150, what="snapshot and updates")
        sim.pause()
        for symbol in SYMBOLS:
            last = sim.tape("coinbase", symbol)[-1].trade_id
            await tap.wait_for(lambda s=symbol, i=last: any(t.trade_id == i for t in tap.trades(s)),
                               what=f"last {symbol} trade")
        for symbol in SYMBOLS:
            helpers.assert_slice_of_tape(tap.trades(symbol), sim.tape("coinbase", symbol))
        helpers.assert_frames_well_formed(tap)

        [record] = sim.connections("coinbase")
        sent = [json.loads(m) for m in record.received]
        # One channel per subscribe message, heartbeats first (keeps the other channels open).
        assert sent == [{"type": "subscribe", "channel": "heartbeats"},
                        {"type": "subscribe", "channel": "market_trades", "product_ids": ["BTC-USD", "ETH-USD"]}]
        payloads = [json.loads(r.payload) for r in tap.raws()]
        assert [p["sequence_num"] for p in payloads] == list(range(len(payloads)))
        subscriptions = [p for p in payloads if p["channel"] == "subscriptions"]
        assert subscriptions[-1]["events"][0]["subscriptions"]["market_trades"] == ["BTC-USD", "ETH-USD"]
        snapshots = [p for p in payloads if p["channel"] == "market_trades" and p["events"][0]["type"] == "snapshot"]
        assert len(snapshots) == 2
        assert feed.status().state == "connected"


async def test_heartbeats_keep_channels_open(feed_settings, bus, taps, running) -> None:
    """Coinbase closes channels idle for 60-90 s unless heartbeats are subscribed (here: 0.5 s)."""
    quiet = VenueOptions(heartbeat_interval_s=0.1, idle_close_s=0.5, tick_s=0.01)
    async with Simulator(sim_settings(tps=0.01), {"coinbase": SYMBOLS}, options=quiet) as sim:
        tap = taps("coinbase")
        feed = feed_for("coinbase", SYMBOLS, bus, feed_settings, sim.ws_urls["coinbase"], stale_timeout_s=0.5)
        await running(feed)
        await asyncio.sleep(2.0)
        heartbeats = [json.loads(r.payload) for r in tap.raws() if '"channel":"heartbeats"' in r.payload]
        assert len(heartbeats) >= 10
        counters = [h["events"][0]["heartbeat_counter"] for h in heartbeats]
        assert counters == list(range(counters[0], counters[0] + len(counters)))
        assert feed.status().reconnects == 0
        assert len(sim.connections("coinbase")) == 1


async def test_watchdog_reconnects_when_heartbeats_stop(feed_settings, bus, taps, running) -> None:
    silent = VenueOptions(heartbeat_interval_s=None, tick_s=0.01)
    async with Simulator(sim_settings(tps=0.01), {"coinbase": SYMBOLS}, options=silent) as sim:
        taps("coinbase")
        feed = feed_for("coinbase", SYMBOLS, bus, feed_settings, sim.ws_urls["coinbase"], stale_timeout_s=0.3)
        await running(feed)
        deadline = asyncio.get_running_loop().time() + 3
        while len(sim.connections("coinbase")) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert len(sim.connections("coinbase")) >= 2
        assert "stale" in feed.status().last_error
