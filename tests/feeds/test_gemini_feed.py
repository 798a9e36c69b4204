"""The Gemini feed against the simulated Gemini (market data v2): one ``l2`` subscription per connection
(20 symbols at most), the 50-trade answer then live trades (exactly the tape), the server's heartbeats
as the keep-alive, and a shutdown (a plain close: Gemini documents no notice) followed by a reconnect."""

from __future__ import annotations

import asyncio
import json

import pytest

from ticklake.settings import SimulatorSettings
from ticklake.simulator import Simulator, VenueOptions
from ticklake.venues.gemini import mapper
from ticklake.venues.gemini.feed import GeminiFeed
from ticklake.venues.gemini.simulated import SNAPSHOT_TRADES

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC/USD", "ETH/BTC"]


def sim_settings(tps: float = 20.0) -> SimulatorSettings:
    return SimulatorSettings(trades_per_second=tps, seed=17)


def test_one_l2_subscription_per_connection_of_at_most_twenty_symbols() -> None:
    natives = [f"C{i}USD" for i in range(5)]
    [message] = [json.loads(m) for m in GeminiFeed.subscribe_messages(None, natives)]  # type: ignore[arg-type]
    assert message == {"type": "subscribe", "subscriptions": [{"name": "l2", "symbols": natives}]}
    assert GeminiFeed.max_symbols_per_connection == 20
    # Gemini keeps the connection alive with its own heartbeats every 5 s: the client sends nothing.
    assert (GeminiFeed.keepalive_message, GeminiFeed.stale_timeout_s) == (None, 15.0)
    assert GeminiFeed.default_url == "wss://api.gemini.com/v2/marketdata"


async def test_the_answer_and_the_stream_are_exactly_the_tape(feed_settings, bus, taps, running, helpers) -> None:
    async with Simulator(sim_settings(), {"gemini": SYMBOLS}) as sim:
        tap = taps("gemini")
        feed = GeminiFeed(SYMBOLS, bus, feed_settings, sim.ws_urls["gemini"])
        await running(feed)
        await tap.wait_for(lambda: all(len(tap.trades(s)) >= SNAPSHOT_TRADES + 30 for s in SYMBOLS), timeout=10,
                           what="trades")
        sim.pause("gemini")
        await asyncio.sleep(0.3)
        await tap.settle()
        for symbol in SYMBOLS:
            tape = sim.tape("gemini", symbol)
            by_id = helpers.assert_tape_exact(tap, tape, symbol)
            answer_seq = min(t.frame_seq for t in tap.trades(symbol))
            first_answer = [t for t in tap.trades(symbol) if t.frame_seq == answer_seq]
            assert len(first_answer) == SNAPSHOT_TRADES  # "the last 50 trades", in the subscription's answer
            assert min(by_id) == tape[-len(by_id)].trade_id
            assert all(t.exchange == "gemini" and t.native_symbol == symbol.replace("/", "") for t in by_id.values())
        [record] = sim.connections("gemini")
        assert record.path == "/v2/marketdata"
        assert [json.loads(m) for m in record.received] == [
            {"type": "subscribe", "subscriptions": [{"name": "l2", "symbols": ["BTCUSD", "ETHBTC"]}]}]
        kinds = {mapper.parse_frame(r.payload, 1).kind for r in tap.raws()}
        assert {"subscribed", "trades", "other"} <= kinds  # answers, trades, book changes
        helpers.assert_frames_well_formed(tap)


async def test_heartbeats_keep_a_quiet_connection_and_their_absence_ends_it(feed_settings, bus, taps,
                                                                             running) -> None:
    async with Simulator(sim_settings(tps=0.01), {"gemini": SYMBOLS}, options=VenueOptions(tick_s=0.01)) as sim:
        sim.venue("gemini").heartbeat_s = 0.1  # type: ignore[attr-defined]
        tap = taps("gemini")
        feed = GeminiFeed(SYMBOLS, bus, feed_settings, sim.ws_urls["gemini"], stale_timeout_s=0.5)
        await running(feed)
        await asyncio.sleep(2.0)  # four stale timeouts without a trade
        assert feed.status().reconnects == 0
        beats = [r for r in tap.raws() if '"heartbeat"' in r.payload]
        assert len(beats) >= 10 and mapper.parse_frame(beats[0].payload, 1).kind == "heartbeat"
        await feed.stop()

    silent = VenueOptions(tick_s=0.01, heartbeat_interval_s=None)
    async with Simulator(sim_settings(tps=0.01), {"gemini": SYMBOLS}, options=silent) as sim:
        feed = GeminiFeed(SYMBOLS, bus, feed_settings, sim.ws_urls["gemini"], stale_timeout_s=0.5)
        await running(feed)
        await asyncio.sleep(2.0)
        assert feed.status().reconnects >= 1  # the watchdog ended the silent connection


async def test_a_shutdown_closes_and_the_feed_comes_back_with_a_fresh_answer(feed_settings, bus, taps,
                                                                            running) -> None:
    async with Simulator(sim_settings(), {"gemini": SYMBOLS}) as sim:
        tap = taps("gemini")
        feed = GeminiFeed(SYMBOLS, bus, feed_settings, sim.ws_urls["gemini"])
        await running(feed)
        await tap.wait_for(lambda: all(len(tap.trades(s)) >= SNAPSHOT_TRADES for s in SYMBOLS), timeout=10,
                           what="the answers")
        assert sim.shutdown("gemini") == 1
        await tap.wait_for(lambda: len(sim.connections("gemini")) == 2, timeout=10, what="a reconnect")
        await tap.wait_for(lambda: len({t.conn_id for t in tap.trades("BTC/USD")}) == 2, timeout=10,
                           what="trades on the new connection")
        first, second = sim.connections("gemini")
        assert first.close_reason == "server shutting down" and second.closed_at is None
        answers = [r for r in tap.raws() if mapper.parse_frame(r.payload, 1).kind == "subscribed"]
        assert len({r.conn_id for r in answers}) == 2  # each connection got its own answer with trades


async def test_a_bad_subscription_is_answered_with_an_error(feed_settings, bus, taps, running) -> None:
    class Wrong(GeminiFeed):
        def subscribe_messages(self, natives: list[str]) -> list[str]:
            return ['{"type":"subscribe","subscriptions":[{"name":"l2","symbols":["NOPEUSD"]}]}',
                    '{"type":"subscribe","subscriptions":[{"name":"trades","symbols":["BTCUSD"]}]}']

    async with Simulator(sim_settings(), {"gemini": SYMBOLS}) as sim:
        tap = taps("gemini")
        feed = Wrong(SYMBOLS, bus, feed_settings, sim.ws_urls["gemini"])
        await running(feed)
        await tap.wait_for(lambda: sum(r.error != "" for r in tap.raws()) >= 2, timeout=5, what="two errors")
        errors = [r.error for r in tap.raws() if r.error]
        assert any("InvalidSymbol" in e for e in errors) and any("InvalidSubscription" in e for e in errors)
        assert tap.trades() == []  # no trades-only subscription exists on v2
