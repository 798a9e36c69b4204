"""The Bitfinex feed against the simulated Bitfinex: conf + subscriptions (25 channels a connection), the
snapshot and ``te`` stream equal to the tape, ``SEQ_ALL`` numbers contiguous on a healthy connection and
jumping where frames were lost, heartbeats keeping a quiet connection, the 20051 restart notice."""

from __future__ import annotations

import asyncio
import json
from itertools import pairwise

import pytest

from ticklake.exchanges.feeds import feed_for
from ticklake.model import RawFrame
from ticklake.ops.metrics import REGISTRY
from ticklake.settings import SimulatorSettings
from ticklake.simulator import Simulator, VenueOptions
from ticklake.venues.bitfinex import mapper
from ticklake.venues.bitfinex.feed import BitfinexFeed

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC/USD", "AVAX/USD"]
FAST = VenueOptions(tick_s=0.01)


def sim_settings(tps: float = 40.0) -> SimulatorSettings:
    return SimulatorSettings(trades_per_second=tps, seed=17)


def sequence_gaps() -> float:
    return REGISTRY.get_sample_value("ticklake_feed_sequence_gaps_total", {"exchange": "bitfinex"}) or 0.0


def numbers(raws: list[RawFrame], conn_id: str) -> list[int]:
    """The SEQ_ALL numbers of one connection's channel messages, in receive order."""
    return [json.loads(r.payload)[-1] for r in raws if r.conn_id == conn_id and r.payload.startswith("[")
            and not r.error]


def test_conf_first_then_one_subscription_per_pair_and_25_channels_a_connection() -> None:
    symbols = [f"C{i}X/USD" for i in range(30)]
    feed = BitfinexFeed(symbols, bus=None)  # type: ignore[arg-type]
    assert [len(c.spec.natives) for c in feed.connections] == [25, 5]
    messages = [json.loads(m) for m in feed.connections[1].spec.subscribe_messages]
    assert messages[0] == {"event": "conf", "flags": 65536}
    assert messages[1:] == [{"event": "subscribe", "channel": "trades", "symbol": f"tC{i}X:USD"} for i in range(25, 30)]
    assert BitfinexFeed.keepalive_message is None  # the venue's heartbeats keep connections alive
    assert BitfinexFeed.max_connects == (20, 60.0)


async def test_snapshot_and_stream_equal_the_tape_with_contiguous_numbers(feed_settings, bus, taps, running,
                                                                          helpers) -> None:
    gaps = sequence_gaps()
    async with Simulator(sim_settings(), {"bitfinex": SYMBOLS}, options=FAST) as sim:
        tap = taps("bitfinex")
        feed = feed_for("bitfinex", SYMBOLS, bus, feed_settings, sim.ws_urls["bitfinex"])
        await running(feed)
        await tap.wait_for(lambda: all(len(tap.trades(s)) >= 60 for s in SYMBOLS), what="trades")
        sim.pause()
        for symbol in SYMBOLS:
            last = sim.tape("bitfinex", symbol)[-1].trade_id
            await tap.wait_for(lambda s=symbol, i=last: any(t.trade_id == i for t in tap.trades(s)),
                               what=f"last {symbol} trade")
        await tap.settle()
        for symbol in SYMBOLS:  # the 30-trade snapshot, then every te: a run of the tape to its end, once each
            received = tap.trades(symbol)
            helpers.assert_slice_of_tape(received, sim.tape("bitfinex", symbol))
            assert received[0].trade_id == sim.tape("bitfinex", symbol)[-len(received)].trade_id
            assert all(t.symbol == symbol and t.native_symbol == ("tBTCUSD" if symbol == "BTC/USD" else "tAVAX:USD")
                       for t in received)
        helpers.assert_frames_well_formed(tap)

        [record] = sim.connections("bitfinex")
        assert record.path == "/ws/2"
        assert [json.loads(m) for m in record.received] == [
            {"event": "conf", "flags": 65536}, {"event": "subscribe", "channel": "trades", "symbol": "tBTCUSD"},
            {"event": "subscribe", "channel": "trades", "symbol": "tAVAX:USD"}]
        raws = tap.raws()
        [conn_id] = {r.conn_id for r in raws}
        assert numbers(raws, conn_id) == list(range(1, len(numbers(raws, conn_id)) + 1))
        assert sequence_gaps() == gaps
        tu = [r for r in raws if '"tu"' in r.payload]
        assert tu and all(r.trade_count == 0 for r in tu)  # the same trades again: stored once, from te
        assert all(r.error == "" for r in raws)
        assert feed.status().state == "connected"


async def test_lost_frames_show_as_a_jump_in_the_numbers(feed_settings, bus, taps, running) -> None:
    async with Simulator(sim_settings(tps=60.0), {"bitfinex": ["BTC/USD"]}, options=FAST) as sim:
        tap = taps("bitfinex")
        feed = feed_for("bitfinex", ["BTC/USD"], bus, feed_settings, sim.ws_urls["bitfinex"], stale_timeout_s=5)
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 20, what="trades")
        gaps = sequence_gaps()
        sim.skip_next("bitfinex", "BTC/USD", 3)  # kept off the socket: their te and tu numbers are lost
        await tap.wait_for(lambda: len(sim.skipped_ids("bitfinex", "BTC/USD")) == 3, what="the skipped trades")
        seen = len(tap.trades())
        await tap.wait_for(lambda: len(tap.trades()) >= seen + 5, what="trades after the skip")
        assert sequence_gaps() == gaps + 1
        await tap.settle()
        [conn_id] = {r.conn_id for r in tap.raws()}
        seqs = numbers(tap.raws(), conn_id)
        jumps = [b - a for a, b in pairwise(seqs) if b != a + 1]
        assert jumps == [7]  # 3 te + 3 tu skipped: the next number is 7 on
        assert not set(sim.skipped_ids("bitfinex", "BTC/USD")) & {t.trade_id for t in tap.trades()}

        sim.stall("bitfinex", 0.5)  # the connection stays open; trades published meanwhile are lost to it
        await asyncio.sleep(0.8)
        seen = len(tap.trades())
        await tap.wait_for(lambda: len(tap.trades()) >= seen + 5, what="trades after the stall")
        assert sequence_gaps() == gaps + 2
        assert feed.status().reconnects == 0


async def test_heartbeats_keep_a_quiet_connection(feed_settings, bus, taps, running) -> None:
    async with Simulator(sim_settings(tps=0.01), {"bitfinex": SYMBOLS}, options=FAST) as sim:
        sim.venue("bitfinex").heartbeat_s = 0.1  # Bitfinex: 15 s
        tap = taps("bitfinex")
        feed = feed_for("bitfinex", SYMBOLS, bus, feed_settings, sim.ws_urls["bitfinex"], stale_timeout_s=0.5)
        await running(feed)
        await asyncio.sleep(2.0)  # four stale timeouts without a trade
        assert feed.status().reconnects == 0
        beats = [r for r in tap.raws() if '"hb"' in r.payload]
        assert len(beats) >= 20
        assert {mapper.parse_frame(r.payload, 1).kind for r in beats} == {"heartbeat"}
        assert {json.loads(r.payload)[0] for r in beats} == set(sim.venue("bitfinex").connections[1].channels)


async def test_the_restart_notice_replaces_the_connection_with_overlap(feed_settings, bus, taps, running) -> None:
    async with Simulator(sim_settings(), {"bitfinex": SYMBOLS}, options=FAST) as sim:
        tap = taps("bitfinex")
        feed = feed_for("bitfinex", SYMBOLS, bus, feed_settings, sim.ws_urls["bitfinex"])
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 20, what="trades")
        assert sim.shutdown("bitfinex") == 1
        await tap.wait_for(lambda: len(sim.connections("bitfinex")) == 2, what="the replacement")
        seen = len(tap.trades())
        await tap.wait_for(lambda: len(tap.trades()) >= seen + 20, what="trades on the new connection")
        notices = [r for r in tap.raws() if '"code":20051' in r.payload]
        assert len(notices) == 1 and mapper.parse_frame(notices[0].payload, 1).kind == "shutdown"
        assert feed.status().reconnects == 1
        assert len({r.conn_id for r in tap.raws()}) == 2


async def test_subscriptions_past_the_channel_limit_are_refused(feed_settings, bus, taps, running) -> None:
    symbols = [f"C{i}X/USD" for i in range(26)]

    class Greedy(BitfinexFeed):
        max_symbols_per_connection = 26
        send_interval_s = 0.01

    async with Simulator(sim_settings(tps=0.01), {"bitfinex": symbols}, options=FAST) as sim:
        tap = taps("bitfinex")
        feed = Greedy(symbols, bus, feed_settings, sim.ws_urls["bitfinex"])
        await running(feed)
        await tap.wait_for(lambda: any("10305" in r.error for r in tap.raws()), what="the refusal")
        refused = [r for r in tap.raws() if r.error]
        assert len(refused) == 1 and "tC25X:USD" in refused[0].error
        assert sum('"event":"subscribed"' in r.payload for r in tap.raws()) == 25
