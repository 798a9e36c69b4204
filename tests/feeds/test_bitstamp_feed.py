"""The Bitstamp feed against the simulated Bitstamp (one subscribe per channel, the heartbeat after a silence,
``bts:request_reconnect`` replacing the connection with overlap), and the window fetcher against its
``transactions`` endpoint (the smallest window that covers a start, the day's reach)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.backfill.conftest import rest_client
from tests.backfill.conftest import rest_clients as rest_clients
from tests.feeds.conftest import assert_frames_well_formed, assert_slice_of_tape
from ticklake.exchanges.mappers.common import MalformedResponse
from ticklake.exchanges.rest import RestClient, WindowTradeFetcher, fetcher_for
from ticklake.settings import SimulatorSettings
from ticklake.simulator import Simulator, TapeTrade, VenueOptions
from ticklake.venues.bitstamp import mapper
from ticklake.venues.bitstamp.feed import HEARTBEAT, BitstampFeed
from ticklake.venues.bitstamp.rest import MARGIN_S, BitstampTrades, window_for

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC/USD", "ETH/EUR"]


def sim_settings(tps: float = 20.0) -> SimulatorSettings:
    return SimulatorSettings(trades_per_second=tps, seed=17)


class Stamp:
    conn_id = "test-rest-bitstamp"

    def __init__(self) -> None:
        self.frames = 0

    def next_frame(self) -> int:
        self.frames += 1
        return self.frames


def test_one_subscribe_message_per_channel_and_a_heartbeat_after_silence() -> None:
    natives = [f"c{i}usd" for i in range(60)]
    messages = [json.loads(m) for m in BitstampFeed.subscribe_messages(None, natives)]  # type: ignore[arg-type]
    assert messages == [{"event": "bts:subscribe", "data": {"channel": f"live_trades_{n}"}} for n in natives]
    assert BitstampFeed.max_symbols_per_connection * BitstampFeed.send_interval_s <= 1.0  # subscribed within 1 s
    assert (BitstampFeed.keepalive_message, BitstampFeed.keepalive_periodic) == (HEARTBEAT, False)
    assert BitstampFeed.keepalive_after_s * 3 <= BitstampFeed.stale_timeout_s
    feed = BitstampFeed([f"C{i}/USD" for i in range(120)], bus=None)  # type: ignore[arg-type]
    assert [len(c.subscribed) for c in feed.connections] == [50, 50, 20]
    assert "c0usd" in feed.connections[0].subscribed  # Bitstamp's lower-case spelling


async def test_the_stream_is_the_tape_normalized(feed_settings, bus, taps, running) -> None:
    async with Simulator(sim_settings(), {"bitstamp": SYMBOLS}) as sim:
        tap = taps("bitstamp")
        feed = BitstampFeed(SYMBOLS, bus, feed_settings, sim.ws_urls["bitstamp"])
        await running(feed)
        await tap.wait_for(lambda: all(len(tap.trades(s)) >= 30 for s in SYMBOLS), timeout=10, what="trades")
        sim.pause("bitstamp")
        await asyncio.sleep(0.2)
        await tap.settle()
        for symbol in SYMBOLS:
            trades = tap.trades(symbol)
            assert_slice_of_tape(trades, sim.tape("bitstamp", symbol))
            assert {t.native_symbol for t in trades} == {symbol.replace("/", "").lower()}
            assert all(t.exchange == "bitstamp" and t.ts_us % 1000 == 0 for t in trades)
        [record] = sim.connections("bitstamp")
        assert record.path == "/"
        assert [json.loads(m) for m in record.received[:2]] == [
            {"event": "bts:subscribe", "data": {"channel": "live_trades_btcusd"}},
            {"event": "bts:subscribe", "data": {"channel": "live_trades_etheur"}}]
        kinds = {mapper.parse_frame(r.payload, 1).kind for r in tap.raws()}
        assert {"subscribed", "trades"} <= kinds and "error" not in kinds
        assert_frames_well_formed(tap)


async def test_the_heartbeat_keeps_a_quiet_connection_alive(feed_settings, bus, taps, running) -> None:
    class FastHeartbeat(BitstampFeed):
        keepalive_after_s = 0.1

    class NoHeartbeat(BitstampFeed):
        keepalive_message = None

    async with Simulator(sim_settings(tps=0.01), {"bitstamp": SYMBOLS}, options=VenueOptions(tick_s=0.01)) as sim:
        tap = taps("bitstamp")
        feed = FastHeartbeat(SYMBOLS, bus, feed_settings, sim.ws_urls["bitstamp"], stale_timeout_s=0.5)
        await running(feed)
        await asyncio.sleep(2.0)  # four stale timeouts without a trade
        assert feed.status().reconnects == 0
        [record] = sim.connections("bitstamp")
        assert sum(json.loads(m) == {"event": "bts:heartbeat"} for m in record.received) >= 5
        answers = [r for r in tap.raws() if '"bts:heartbeat"' in r.payload]
        assert len(answers) >= 5 and mapper.parse_frame(answers[0].payload, 1).kind == "heartbeat"
        await feed.stop()

        # Bitstamp closes no quiet connection: without the heartbeat, only the feed's watchdog notices silence.
        silent = NoHeartbeat(SYMBOLS, bus, feed_settings, sim.ws_urls["bitstamp"], stale_timeout_s=0.4)
        await running(silent)
        await asyncio.sleep(1.5)
        assert silent.status().reconnects >= 1
        assert all(r.close_reason == "" for r in sim.connections("bitstamp")[1:])  # ended by us, not the venue


async def test_request_reconnect_replaces_the_connection_with_overlap(feed_settings, bus, taps, running) -> None:
    async with Simulator(sim_settings(tps=30.0), {"bitstamp": SYMBOLS},
                         options=VenueOptions(shutdown_grace_s=1.0)) as sim:
        tap = taps("bitstamp")
        feed = BitstampFeed(SYMBOLS, bus, feed_settings, sim.ws_urls["bitstamp"])
        await running(feed)
        await tap.wait_for(lambda: all(len(tap.trades(s)) >= 10 for s in SYMBOLS), timeout=10, what="trades")
        assert sim.shutdown("bitstamp") == 1
        await tap.wait_for(lambda: len(sim.connections("bitstamp")) == 2, timeout=5, what="a second connection")
        await asyncio.sleep(1.5)  # past the grace: the old connection closed by the venue
        sim.pause("bitstamp")
        await asyncio.sleep(0.2)
        await tap.settle()
        old, new = sim.connections("bitstamp")
        assert old.closed_at is not None and new.connected_at < old.closed_at  # opened before the old one ended
        notices = [r for r in tap.raws() if "bts:request_reconnect" in r.payload]
        assert len(notices) == 1 and mapper.parse_frame(notices[0].payload, 1).kind == "shutdown"
        for symbol in SYMBOLS:  # nothing lost between the two connections; the overlap's repeats dropped by id
            unique = {t.trade_id: t for t in tap.trades(symbol)}
            assert_slice_of_tape([unique[i] for i in sorted(unique)], sim.tape("bitstamp", symbol))


async def test_unknown_channels_and_bad_messages_get_bts_error() -> None:
    async with Simulator(sim_settings(), {"bitstamp": ["BTC/USD"]}) as sim:
        venue = sim.venue("bitstamp")
        sent: list[str] = []

        class Conn:
            symbols: set[str] = set()
            closed = False

        conn = Conn()
        venue.send = lambda _conn, text: sent.append(text)  # type: ignore[method-assign]
        for message in ('{"event":"bts:subscribe","data":{"channel":"live_trades_nopeusd"}}', "nope",
                        '{"event":"bts:subscribe","data":{"channel":"live_trades_btcusd"}}',
                        '{"event":"bts:heartbeat"}',
                        '{"event":"bts:unsubscribe","data":{"channel":"live_trades_btcusd"}}'):
            venue.on_text(conn, message)  # type: ignore[arg-type]
        kinds = [mapper.parse_frame(text, 1).kind for text in sent]
        assert kinds == ["error", "error", "subscribed", "heartbeat", "other"]
        assert conn.symbols == set()


# --- the window fetcher against the simulated transactions endpoint ---------------------------------------

def test_the_window_is_the_smallest_that_covers_the_start() -> None:
    now = 1_795_658_400_000_000
    fetcher: WindowTradeFetcher = BitstampTrades()  # the protocol, checked by mypy
    assert fetcher.reach_s == 86_400
    cases = [(0, "minute"), (60 - MARGIN_S, "minute"), (60 - MARGIN_S + 1, "hour"), (3600 - MARGIN_S, "hour"),
             (3600, "day"), (86_400 - MARGIN_S, "day"), (3 * 86_400, "day")]
    for back_s, window in cases:
        assert window_for(now - int(back_s * 1_000_000), now) == window, back_s


def _served(tape: list[TapeTrade], since_us: int) -> list[tuple[int, str, str, str, int]]:
    """What the transactions endpoint serves of the tape: times to the whole second."""
    return [(t.trade_id, t.price, t.qty, t.side, t.ts_us // 1_000_000 * 1_000_000) for t in tape if t.ts_us >= since_us]


async def _since(client: RestClient, start_us: int) -> list[tuple[int, str, str, str, int]]:
    stamp = Stamp()
    pages = [page async for page in fetcher_for("bitstamp").since(client, "btcusd", start_us, stamp)]  # type: ignore[attr-defined]
    assert [p.frame_seq for p in pages] == list(range(1, stamp.frames + 1))
    trades = [t for page in pages for t in page.trades]
    assert trades == sorted(trades, key=lambda t: (t.ts_us, t.trade_id))  # oldest first
    assert all(t.symbol == "BTC/USD" and t.conn_id == stamp.conn_id for t in trades)
    return [(t.trade_id, t.price, t.qty, t.side, t.ts_us) for t in trades]


async def test_since_serves_the_tape_from_the_start_in_the_smallest_window(rest_clients) -> None:
    options = VenueOptions(history_trades=3000)  # 25 minutes of history at 2 trades a second
    async with Simulator(sim_settings(tps=2.0), {"bitstamp": ["BTC/USD"]}, options=options) as sim:
        sim.pause()
        client = rest_client(sim)
        rest_clients.append(client)
        tape = sim.tape("bitstamp", "BTC/USD")
        now = time.time_ns() // 1000
        for back_s, window in ((20, "minute"), (600, "hour")):
            start = now - back_s * 1_000_000
            got = await _since(client, start)
            assert [r for r in got if r[4] >= start // 1_000_000 * 1_000_000] == _served(
                tape, start // 1_000_000 * 1_000_000)[:len(got)]
            kept = [r for r in got if r[4] >= start]  # what the backfill keeps: at and after the start
            assert kept == [r for r in _served(tape, start) if r[4] >= start]
            assert got[-1][0] == tape[-1].trade_id  # up to now
            assert sim.rest_requests("bitstamp")[-1].query == f"time={window}"
        full = await _since(client, now - 7200 * 1_000_000)  # two hours back: the day, the whole history
        assert full == _served(tape, 0)


async def test_the_reach_is_one_day(rest_clients) -> None:
    options = VenueOptions(history_trades=400)  # ~55 hours of history at 0.002 trades a second
    async with Simulator(sim_settings(tps=0.002), {"bitstamp": ["BTC/USD"]}, options=options) as sim:
        sim.pause()
        client = rest_client(sim)
        rest_clients.append(client)
        tape = sim.tape("bitstamp", "BTC/USD")
        before = time.time_ns() // 1000
        got = await _since(client, before - 2 * 86_400 * 1_000_000)
        after = time.time_ns() // 1000
        assert sim.rest_requests("bitstamp")[-1].query == "time=day"
        served = {r[0] for r in got}
        assert {t.trade_id for t in tape if t.ts_us >= after - 86_400_000_000} <= served
        assert served <= {t.trade_id for t in tape if t.ts_us >= before - 86_400_000_000 - 1_000_000}
        assert len(served) < len(tape) / 2  # most of the 55 hours is beyond the day


async def test_transactions_endpoint_errors() -> None:
    async with Simulator(sim_settings(), {"bitstamp": ["BTC/USD"]}) as sim:
        async with httpx.AsyncClient(base_url=sim.rest_urls["bitstamp"]) as http:
            unknown = await http.get("/api/v2/transactions/nopeusd/")
            bad_time = await http.get("/api/v2/transactions/btcusd/", params={"time": "week"})
            default = await http.get("/api/v2/transactions/btcusd/")
            sim.rest_fail_next("bitstamp", 1, 429)
            throttled = await http.get("/api/v2/transactions/btcusd/", params={"time": "minute"})
        assert unknown.status_code == 404 and unknown.json()["status"] == "error"
        assert bad_time.status_code == 400
        assert default.status_code == 200 and isinstance(default.json(), list)  # hour by default
        assert throttled.status_code == 429 and throttled.json()["code"] == "400.002"
        with pytest.raises(MalformedResponse, match=r"404\.002"):
            mapper.parse_rest_trades(unknown.content, "nopeusd", 1)
