"""The Bybit spot feed against the simulated Bybit: subscribe (10 args a message), the client's ping,
the recent-trade page after every break (60 trades: what is beyond is counted, not recovered)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from ticklake.exchanges.mappers.common import MalformedResponse
from ticklake.settings import SimulatorSettings
from ticklake.simulator import Simulator, VenueOptions
from ticklake.venues.bybit import mapper
from ticklake.venues.bybit.feed import BybitFeed
from ticklake.venues.bybit.rest import MAX_PAGE, BybitTrades

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC/USDT", "ETH/USDC"]
SHORT = "ticklake_feed_backfill_short_total"


def sim_settings(tps: float = 20.0) -> SimulatorSettings:
    return SimulatorSettings(trades_per_second=tps, seed=13)


def test_subscriptions_carry_at_most_ten_topics() -> None:
    natives = [f"C{i}USDT" for i in range(23)]
    messages = [json.loads(m) for m in BybitFeed.subscribe_messages(None, natives)]  # type: ignore[arg-type]
    assert [len(m["args"]) for m in messages] == [10, 10, 3]
    assert all(m["op"] == "subscribe" for m in messages)
    assert [a for m in messages for a in m["args"]] == [f"publicTrade.{n}" for n in natives]
    # the docs: a ping every 20 s
    assert (BybitFeed.keepalive_message, BybitFeed.keepalive_after_s, BybitFeed.keepalive_periodic) == \
        ('{"op":"ping"}', 20.0, True)


def test_unreadable_frames_are_errors_not_crashes() -> None:
    for payload in (b"", b"[]", b'{"topic":"publicTrade.BTCUSDT","data":', b'{"topic":"publicTrade.X","data":[{}]}',
                    b"\xff\xfe", b'{"op":"subscribe","success":false,"ret_msg":"args size >10"}'):
        assert mapper.parse_frame(payload, 1).kind == "error", payload
    with pytest.raises(MalformedResponse, match="10001"):
        mapper.parse_rest_trades(b'{"retCode":10001,"retMsg":"params error: Symbol Invalid","result":{}}', "X", 1)
    with pytest.raises(MalformedResponse, match="asked for BTCUSDT"):
        mapper.parse_rest_trades(b'{"retCode":0,"result":{"list":[{"execId":"1","symbol":"ETHUSDT","price":"1",'
                                 b'"size":"1","side":"Buy","time":"1","isBlockTrade":false}]}}', "BTCUSDT", 1)


async def test_recent_trade_serves_at_most_sixty_newest_first() -> None:
    async with Simulator(sim_settings(tps=400.0), {"bybit": ["BTC/USDT"]}) as sim:
        await asyncio.sleep(0.5)
        sim.pause("bybit")
        async with httpx.AsyncClient(base_url=sim.rest_urls["bybit"]) as http:
            answer = (await http.get("/v5/market/recent-trade",
                                     params={"category": "spot", "symbol": "BTCUSDT", "limit": 1000})).json()
            bad = (await http.get("/v5/market/recent-trade", params={"category": "spot", "symbol": "NOPE"})).json()
        rows = answer["result"]["list"]
        assert answer["retCode"] == 0 and len(rows) == MAX_PAGE == 60
        tape = sim.tape("bybit", "BTC/USDT")
        assert [int(r["execId"]) for r in rows] == [t.trade_id for t in reversed(tape[-60:])]
        assert bad["retCode"] == 10001
        assert BybitTrades(1000).page_size == 60


async def test_stream_and_the_first_catch_up_equal_the_tape(feed_settings, bus, taps, running, backfilling,
                                                            helpers) -> None:
    async with Simulator(sim_settings(), {"bybit": SYMBOLS}) as sim:
        tap = taps("bybit")
        feed = backfilling("bybit", SYMBOLS, bus, sim, feed_settings)
        await running(feed)
        await tap.wait_for(lambda: all(len(tap.trades(s)) >= 80 for s in SYMBOLS), timeout=10, what="trades")
        await helpers.settle(tap, feed, sim, "bybit", SYMBOLS)
        for symbol in SYMBOLS:
            rest, _ = helpers.rest_trade_ids(tap, symbol)
            assert len(rest) == 60  # the page the first connection asked for: the newest 60 before it
            by_id = helpers.assert_tape_exact(tap, sim.tape("bybit", symbol), symbol)
            assert min(by_id) == min(rest)
        [record] = sim.connections("bybit")
        assert record.path == "/v5/public/spot"
        sent = [json.loads(m) for m in record.received]
        assert sent[0] == {"op": "subscribe", "args": ["publicTrade.BTCUSDT", "publicTrade.ETHUSDC"]}
        kinds = {mapper.parse_frame(r.payload, 1).kind for r in tap.raws() if r.source != "rest"}
        assert {"subscribed", "trades"} <= kinds
        helpers.assert_frames_well_formed(tap)


async def test_the_client_ping_keeps_a_quiet_connection_open(feed_settings, bus, taps, running) -> None:
    quiet = VenueOptions(client_idle_close_s=0.6, tick_s=0.01)

    class FastPing(BybitFeed):
        keepalive_after_s = 0.1

    class NoPing(BybitFeed):
        keepalive_message = None

    async with Simulator(sim_settings(tps=0.01), {"bybit": SYMBOLS}, options=quiet) as sim:
        tap = taps("bybit")
        feed = FastPing(SYMBOLS, bus, feed_settings, sim.ws_urls["bybit"], stale_timeout_s=0.5)
        await running(feed)
        await asyncio.sleep(2.0)  # three idle limits, and four stale timeouts, without a trade
        assert feed.status().reconnects == 0
        [record] = sim.connections("bybit")
        assert sum(json.loads(m) == {"op": "ping"} for m in record.received) >= 10
        pongs = [r for r in tap.raws() if '"ret_msg":"pong"' in r.payload]
        assert len(pongs) >= 10 and mapper.parse_frame(pongs[0].payload, 1).kind == "heartbeat"
        await feed.stop()

        silent = NoPing(SYMBOLS, bus, feed_settings, sim.ws_urls["bybit"], stale_timeout_s=30)
        await running(silent)
        await asyncio.sleep(1.5)
        assert silent.status().reconnects >= 1  # the venue closed the connection that never pinged
        assert any(r.close_reason == "no ping and no data" for r in sim.connections("bybit")[1:])


async def test_breaks_within_the_page_are_recovered_exactly(feed_settings, bus, taps, running, backfilling,
                                                            helpers) -> None:
    async with Simulator(sim_settings(tps=20.0), {"bybit": SYMBOLS}) as sim:
        tap = taps("bybit")
        feed = backfilling("bybit", SYMBOLS, bus, sim, feed_settings)
        await running(feed)
        await tap.wait_for(lambda: all(len(tap.trades(s)) >= 70 for s in SYMBOLS), timeout=10, what="trades")
        short = {s: helpers.sym_metric(SHORT, "bybit", s) for s in SYMBOLS}
        sim.drop_connections("bybit")  # back within ~0.1 s: a few trades, well inside 60
        await asyncio.sleep(1.0)
        sim.malformed_next("bybit", 2)  # the garbled frames' trades exist only on REST now
        await asyncio.sleep(1.0)
        sim.duplicate_next("bybit", 2)
        sim.reorder_next("bybit", 3)
        await asyncio.sleep(1.0)
        await helpers.settle(tap, feed, sim, "bybit", SYMBOLS)
        assert len(sim.connections("bybit")) == 2
        for symbol in SYMBOLS:
            helpers.assert_tape_exact(tap, sim.tape("bybit", symbol), symbol)
            assert helpers.sym_metric(SHORT, "bybit", symbol) == short[symbol]
        assert any(r.error for r in tap.raws())


async def test_an_outage_beyond_the_page_is_counted(feed_settings, bus, taps, running, backfilling,
                                                    helpers) -> None:
    async with Simulator(sim_settings(tps=100.0), {"bybit": SYMBOLS}, options=VenueOptions(tick_s=0.01)) as sim:
        tap = taps("bybit")
        feed = backfilling("bybit", SYMBOLS, bus, sim, feed_settings, stale_timeout_s=1.0)
        await running(feed)
        await tap.wait_for(lambda: all(len(tap.trades(s)) >= 100 for s in SYMBOLS), timeout=10, what="trades")
        short = {s: helpers.sym_metric(SHORT, "bybit", s) for s in SYMBOLS}
        sim.stall("bybit", 3.0)  # silent, not closed: the watchdog ends it after 1 s; ~100+ trades lost
        await tap.wait_for(lambda: len(sim.connections("bybit")) == 2, timeout=5, what="a reconnect")
        await asyncio.sleep(1.0)
        await helpers.settle(tap, feed, sim, "bybit", SYMBOLS)
        for symbol in SYMBOLS:
            assert helpers.sym_metric(SHORT, "bybit", symbol) == short[symbol] + 1
            tape = sim.tape("bybit", symbol)
            got = {t.trade_id for t in tap.trades(symbol)}
            first = min(got)
            missing = [t.trade_id for t in tape if t.trade_id >= first and t.trade_id not in got]
            assert len(missing) > 0
            # One hole, right before the page's oldest trade: everything else is stored exactly.
            assert missing == list(range(missing[0], missing[-1] + 1))
            rest, _ = helpers.rest_trade_ids(tap, symbol)
            page = sorted(i for i in rest if i > missing[-1])
            assert page and page[0] == missing[-1] + 1
            helpers.assert_tape_exact(tap, tape, symbol, excluded=set(missing))
