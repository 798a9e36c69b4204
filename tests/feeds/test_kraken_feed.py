"""The Kraken v2 feed against the simulated Kraken: handshake, exact tape, heartbeats, watchdog, drops."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from ticklake.exchanges.feeds import feed_for
from ticklake.settings import SimulatorSettings
from ticklake.simulator import Simulator, VenueOptions

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC/USD", "ETH/EUR"]


def sim_settings(tps: float = 40.0) -> SimulatorSettings:
    return SimulatorSettings(trades_per_second=tps, seed=11)


async def test_handshake_snapshot_and_updates_equal_the_tape(feed_settings, bus, taps, running,
                                                             helpers) -> None:
    async with Simulator(sim_settings(), {"kraken": SYMBOLS}) as sim:
        tap = taps("kraken")
        feed = feed_for("kraken", SYMBOLS, bus, feed_settings, sim.ws_urls["kraken"])
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 150, what="snapshot and updates")
        sim.pause()
        for symbol in SYMBOLS:
            last = sim.tape("kraken", symbol)[-1].trade_id
            await tap.wait_for(lambda s=symbol, i=last: any(t.trade_id == i for t in tap.trades(s)),
                               what=f"last {symbol} trade")
        for symbol in SYMBOLS:
            received = tap.trades(symbol)
            helpers.assert_slice_of_tape(received, sim.tape("kraken", symbol))
            assert len(received) >= 50  # the snapshot (last 50 trades) came first
        helpers.assert_frames_well_formed(tap)

        [record] = sim.connections("kraken")
        assert record.path == "/v2"
        [subscribe] = [json.loads(m) for m in record.received]
        assert subscribe["method"] == "subscribe"
        assert subscribe["params"] == {"channel": "trade", "symbol": ["BTC/USD", "ETH/EUR"], "snapshot": True}

        payloads = [json.loads(r.payload) for r in tap.raws()]
        assert payloads[0]["channel"] == "status"
        acks = [p for p in payloads if p.get("method") == "subscribe"]
        assert [a["result"]["symbol"] for a in acks] == ["BTC/USD", "ETH/EUR"]
        assert all(a["success"] and a["time_in"] and a["time_out"] for a in acks)
        assert [p["type"] for p in payloads if p.get("channel") == "trade"][:2] == ["snapshot", "snapshot"]
        assert feed.status().state == "connected"


async def test_heartbeats_keep_a_quiet_connection(feed_settings, bus, taps, running) -> None:
    quiet = VenueOptions(heartbeat_interval_s=0.1, tick_s=0.01)
    async with Simulator(sim_settings(tps=0.01), {"kraken": SYMBOLS}, options=quiet) as sim:
        tap = taps("kraken")
        feed = feed_for("kraken", SYMBOLS, bus, feed_settings, sim.ws_urls["kraken"], stale_timeout_s=0.5)
        await running(feed)
        await asyncio.sleep(2.0)  # four stale timeouts without a single trade
        heartbeats = [r for r in tap.raws() if r.payload == '{"channel":"heartbeat"}']
        assert len(heartbeats) >= 10
        assert feed.status().reconnects == 0
        assert len(sim.connections("kraken")) == 1


async def test_watchdog_reconnects_a_silent_connection(feed_settings, bus, taps, running,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ticklake.feeds")
    silent = VenueOptions(heartbeat_interval_s=None, tick_s=0.01)  # a venue that stopped talking
    async with Simulator(sim_settings(tps=0.01), {"kraken": SYMBOLS}, options=silent) as sim:
        tap = taps("kraken")
        feed = feed_for("kraken", SYMBOLS, bus, feed_settings, sim.ws_urls["kraken"], stale_timeout_s=0.3)
        await running(feed)
        await tap.wait_for(lambda: len(sim.connections("kraken")) >= 2, timeout=3, what="a reconnect")
        assert "is stale (no frame for" in caplog.text
        assert feed.status().reconnects >= 1
        assert "stale" in feed.status().last_error
        assert sim.connections("kraken")[0].closed_at is not None


async def test_reconnect_after_drop_loses_nothing(feed_settings, bus, taps, running, helpers) -> None:
    """The new connection's snapshot covers the gap; the overlap is left for downstream dedup."""
    async with Simulator(sim_settings(tps=20), {"kraken": ["BTC/USD"]}) as sim:
        tap = taps("kraken")
        feed = feed_for("kraken", ["BTC/USD"], bus, feed_settings, sim.ws_urls["kraken"])
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 60, what="trades on the first connection")
        assert sim.drop_connections("kraken") == 1
        await tap.wait_for(lambda: len({r.conn_id for r in tap.raws()}) == 2, what="a second connection")
        await asyncio.sleep(0.3)
        sim.pause()
        last = sim.tape("kraken", "BTC/USD")[-1].trade_id
        await tap.wait_for(lambda: any(t.trade_id == last for t in tap.trades()), what="the last trade")

        trades = tap.trades()
        unique = list({helpers.key(t): t for t in sorted(trades, key=lambda t: t.trade_id)}.values())
        assert len(unique) < len(trades)  # the snapshot overlapped the first connection
        helpers.assert_slice_of_tape(unique, sim.tape("kraken", "BTC/USD"))
        assert feed.status().reconnects == 1
        helpers.assert_frames_well_formed(tap)


async def test_subscription_error_is_logged_and_kept(feed_settings, bus, taps, running,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ticklake.feeds")
    async with Simulator(sim_settings(), {"kraken": ["BTC/USD"]}) as sim:
        tap = taps("kraken")
        # DOGE/USD is not listed on this simulated venue: Kraken answers success=false for it.
        feed = feed_for("kraken", ["BTC/USD", "DOGE/USD"], bus, feed_settings, sim.ws_urls["kraken"])
        await running(feed)
        await tap.wait_for(lambda: any(r.error for r in tap.raws()), what="the rejected subscription")
        await tap.wait_for(lambda: len(tap.trades("BTC/USD")) > 50, what="trades of the listed symbol")
        [rejected] = [r for r in tap.raws() if r.error]
        assert "DOGE/USD" in rejected.payload
        assert "Currency pair not supported" in caplog.text
        assert feed.status().reconnects == 0
