"""run_feeds from Settings against the simulator, statuses for /health, and session recording."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ticklake.exchanges.feeds import FeedStatus, feed_for, run_feeds
from ticklake.exchanges.recording import SessionWriter, read_session
from ticklake.settings import FeedSettings, Settings, SimulatorSettings, VenueSettings, VenuesSettings
from ticklake.simulator import Simulator, VenueOptions
from ticklake.venues import VENUES as REGISTERED

pytestmark = pytest.mark.integration

# Every registered venue, one market each (coinbase ETH/USD: not the same market as kraken's).
VENUES = {name: ["ETH/USD" if name == "coinbase" else venue.default_symbols[0]]
          for name, venue in REGISTERED.items()}


async def test_run_feeds_starts_every_enabled_venue(bus, taps, tmp_path: Path) -> None:
    configured = Settings(
        data_dir=tmp_path,
        venues=VenuesSettings(**{name: VenueSettings(symbols=symbols) for name, symbols in VENUES.items()}),
        feed=FeedSettings(backoff_initial_s=0.05, backoff_max_s=0.5),
        simulator=SimulatorSettings(seed=5, trades_per_second=30),
    )
    # What `ticklake up --simulate` does: simulate the configured venues, point the feeds at them.
    async with Simulator.from_settings(configured) as sim:
        settings = sim.settings_for(configured)
        assert settings.venues.kraken.ws_url == sim.ws_urls["kraken"]
        assert configured.venues.kraken.ws_url == ""
        tapped = {name: taps(name) for name in VENUES}
        feeds = await run_feeds(settings, bus)
        try:
            for name, tap in tapped.items():
                await tap.wait_for(lambda t=tap: len(t.trades()) > 5, what=f"{name} trades")
            statuses = feeds.statuses()
            assert set(statuses) == set(VENUES)
            assert all(isinstance(s, FeedStatus) and s.state == "connected" and s.connections == 1
                       for s in statuses.values()), statuses
        finally:
            await asyncio.wait_for(feeds.stop(), 5)
        assert {s.state for s in feeds.statuses().values()} == {"stopped"}


async def test_disabled_venues_are_not_started(bus, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        # Every venue disabled but the last, which is enabled without symbols.
        venues=VenuesSettings(**{name: VenueSettings(enabled=False) for name in REGISTERED}
                              | {list(REGISTERED)[-1]: VenueSettings(symbols=[])}),
    )
    feeds = await run_feeds(settings, bus)
    assert feeds.statuses() == {}
    await feeds.stop()


async def test_every_sent_and_received_frame_is_recorded(bus, taps, running, tmp_path: Path) -> None:
    options = VenueOptions(ping_interval_s=0.2, tick_s=0.01, batch_interval_s=0.05, heartbeat_interval_s=0.1)
    path = tmp_path / "session.tlrec"
    async with Simulator(SimulatorSettings(seed=5, trades_per_second=30), {"coinbase": ["ETH/USD"],
                                                                           "binance": ["BTC/USDT"]},
                         options=options) as sim:
        tap = taps("coinbase")
        binance_tap = taps("binance")
        with SessionWriter(path) as writer:
            feed = feed_for("coinbase", ["ETH/USD"], bus, FeedSettings(), sim.ws_urls["coinbase"], recorder=writer)
            binance = feed_for("binance", ["BTC/USDT"], bus, FeedSettings(), sim.ws_urls["binance"],
                               recorder=writer)
            await running(feed)
            await running(binance)
            await tap.wait_for(lambda: len(tap.raws()) >= 10)
            await asyncio.sleep(0.5)  # at least two Binance pings (every 0.2 s)
            await feed.stop()
            await binance.stop()
        await tap.settle()
        await binance_tap.settle()
        coinbase_raw = [r.payload for r in tap.raws()]
        binance_raw = [r.payload for r in binance_tap.raws()]

    frames = list(read_session(path, include_sent=True))
    coinbase = [f for f in frames if f.exchange == "coinbase"]
    sent = [f.payload for f in coinbase if f.direction == "sent"]
    assert sent == ['{"type":"subscribe","channel":"heartbeats"}',
                    '{"type":"subscribe","channel":"market_trades","product_ids":["ETH-USD"]}']
    assert [f.payload for f in coinbase if f.direction == "recv"] == coinbase_raw
    assert {f.url for f in coinbase} == {sim.ws_urls["coinbase"]}
    binance_frames = [f for f in frames if f.exchange == "binance"]
    assert [f.payload for f in binance_frames if f.direction == "recv"] == binance_raw
    pongs = [f for f in binance_frames if f.direction == "sent"]
    assert pongs and all(isinstance(f.payload, str) and f.payload.isdigit() for f in pongs)  # echoed payloads
