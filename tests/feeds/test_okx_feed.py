"""The OKX feed against the simulated OKX: subscription, exact tape, the ``ping`` keep-alive, gaps by id."""

from __future__ import annotations

import asyncio
import json

import pytest

from ticklake.exchanges.feeds import feed_for
from ticklake.settings import SimulatorSettings
from ticklake.simulator import Simulator, VenueOptions
from ticklake.venues.okx.feed import OkxFeed

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC/USDT", "ETH/USDC"]
QUIET = VenueOptions(tick_s=0.01, push_timeout_s=0.5)  # OKX's 30 s rule, shortened


def sim_settings(tps: float = 40.0) -> SimulatorSettings:
    return SimulatorSettings(trades_per_second=tps, seed=13)


async def test_subscription_and_every_trade_equal_the_tape(feed_settings, bus, taps, running, helpers) -> None:
    async with Simulator(sim_settings(), {"okx": SYMBOLS}) as sim:
        tap = taps("okx")
        feed = feed_for("okx", SYMBOLS, bus, feed_settings, sim.ws_urls["okx"])
        await running(feed)
        await tap.wait_for(lambda: all(len(tap.trades(s)) >= 40 for s in SYMBOLS), what="trades")
        sim.pause()
        for symbol in SYMBOLS:
            last = sim.tape("okx", symbol)[-1].trade_id
            await tap.wait_for(lambda s=symbol, i=last: any(t.trade_id == i for t in tap.trades(s)),
                               what=f"last {symbol} trade")
        for symbol in SYMBOLS:  # no snapshot: a run of the tape from the subscription to its end
            helpers.assert_slice_of_tape(tap.trades(symbol), sim.tape("okx", symbol))
        helpers.assert_frames_well_formed(tap)

        [record] = sim.connections("okx")
        assert record.path == "/ws/v5/business"
        [subscribe] = [json.loads(m) for m in record.received]
        assert subscribe == {"op": "subscribe", "args": [{"channel": "trades-all", "instId": "BTC-USDT"},
                                                         {"channel": "trades-all", "instId": "ETH-USDC"}]}
        payloads = [json.loads(r.payload) for r in tap.raws()]
        acks = [p for p in payloads if p.get("event") == "subscribe"]
        assert [a["arg"] for a in acks] == subscribe["args"]
        pushes = [p for p in payloads if "data" in p]
        assert all(len(p["data"]) == 1 for p in pushes)  # trades-all: one trade per push
        assert feed.status().state == "connected"


async def test_ping_keeps_a_quiet_connection(feed_settings, bus, taps, running,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OkxFeed, "keepalive_after_s", 0.1)
    async with Simulator(sim_settings(tps=0.01), {"okx": SYMBOLS}, options=QUIET) as sim:
        tap = taps("okx")
        feed = feed_for("okx", SYMBOLS, bus, feed_settings, sim.ws_urls["okx"], stale_timeout_s=0.4)
        await running(feed)
        await asyncio.sleep(2.0)  # four times the venue's silence limit, without a trade
        assert feed.status().reconnects == 0
        [record] = sim.connections("okx")
        assert record.received.count("ping") >= 8  # one per silence of 0.1 s
        # Each answered (a ping may be on its way as we look: the counts meet within a moment).
        await tap.wait_for(lambda: [r.payload for r in tap.raws()].count("pong") == record.received.count("ping"),
                           what="a pong for every ping")
        assert all(r.error == "" for r in tap.raws())


async def test_without_pings_the_venue_closes_a_quiet_connection(feed_settings, bus, taps, running,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OkxFeed, "keepalive_message", None)
    async with Simulator(sim_settings(tps=0.01), {"okx": SYMBOLS}, options=QUIET) as sim:
        taps("okx")
        feed = feed_for("okx", SYMBOLS, bus, feed_settings, sim.ws_urls["okx"], stale_timeout_s=10)
        await running(feed)
        await asyncio.sleep(1.5)
        first = sim.connections("okx")[0]
        assert first.close_reason == "No data received in 30s."
        assert feed.status().reconnects >= 1


async def test_an_unanswered_ping_reconnects_and_the_gap_is_backfilled(feed_settings, bus, taps, backfilling,
                                                                       running, helpers,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OkxFeed, "keepalive_after_s", 0.1)
    async with Simulator(sim_settings(tps=60), {"okx": ["BTC/USDT"]}, options=VenueOptions(tick_s=0.01)) as sim:
        tap = taps("okx")
        feed = backfilling("okx", ["BTC/USDT"], bus, sim, feed_settings, stale_timeout_s=0.4)
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 30, what="trades")
        assert sim.stall("okx", 2.0) == 1  # nothing at all: no trades, no pong
        await tap.wait_for(lambda: len(sim.connections("okx")) == 2, timeout=3, what="the watchdog's reconnect")
        seen = len(tap.trades())
        await tap.wait_for(lambda: len(tap.trades()) >= seen + 20, what="trades after the reconnect")
        await helpers.settle(tap, feed, sim, "okx", ["BTC/USDT"])

        assert "ping" in sim.connections("okx")[0].received
        helpers.assert_tape_exact(tap, sim.tape("okx", "BTC/USDT"), "BTC/USDT")
        rest, socket = helpers.rest_trade_ids(tap, "BTC/USDT")
        assert rest - socket  # what the stall and the reconnect lost came over REST
        assert "stale" in feed.status().last_error
        helpers.assert_frames_well_formed(tap)


async def test_skipped_ids_are_one_gap_filled_exactly(feed_settings, bus, taps, backfilling, running,
                                                      helpers) -> None:
    async with Simulator(sim_settings(), {"okx": ["BTC/USDT"]}, options=VenueOptions(tick_s=0.01)) as sim:
        tap = taps("okx")
        feed = backfilling("okx", ["BTC/USDT"], bus, sim, feed_settings, page_size=3)
        before = helpers.sym_metric("ticklake_feed_gaps_total", "okx", "BTC/USDT")
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 20, what="trades")
        sim.skip_next("okx", "BTC/USDT", 7)
        await tap.wait_for(lambda: len(sim.skipped_ids("okx", "BTC/USDT")) == 7, what="the skipped trades")
        seen = len(tap.trades())
        await tap.wait_for(lambda: len(tap.trades()) >= seen + 10, what="trades after the gap")
        await helpers.settle(tap, feed, sim, "okx", ["BTC/USDT"])

        helpers.assert_tape_exact(tap, sim.tape("okx", "BTC/USDT"), "BTC/USDT")
        rest, socket = helpers.rest_trade_ids(tap, "BTC/USDT")
        assert rest - socket == set(sim.skipped_ids("okx", "BTC/USDT"))
        assert helpers.sym_metric("ticklake_feed_gaps_total", "okx", "BTC/USDT") - before == 1
        requests = sim.rest_requests("okx")
        assert len(requests) >= 3 and all("type=1" in r.query for r in requests)  # 7 ids, pages of 3
        helpers.assert_frames_well_formed(tap)
