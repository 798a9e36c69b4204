"""The Binance feed against the simulated Binance: exact tape, pings, drops, bad frames, spreading."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from picows import WSListener, WSMsgType, WSTransport, ws_connect

from ticklake.exchanges.feeds import feed_for
from ticklake.model import RawFrame
from ticklake.settings import SimulatorSettings
from ticklake.simulator import Simulator, VenueOptions
from ticklake.simulator.venue import SimConnection
from ticklake.venues.binance.feed import BinanceFeed

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
FAST_PINGS = VenueOptions(ping_interval_s=0.2, pong_timeout_s=0.6, tick_s=0.01)


def sim_settings(tps: float = 40.0) -> SimulatorSettings:
    return SimulatorSettings(trades_per_second=tps, seed=7)


async def test_trades_equal_the_tape(feed_settings, bus, taps, running, helpers) -> None:
    async with Simulator(sim_settings(), {"binance": SYMBOLS}) as sim:
        tap = taps("binance")
        feed = feed_for("binance", SYMBOLS, bus, feed_settings, sim.ws_urls["binance"])
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 40, what="trades")
        sim.pause()
        for symbol in SYMBOLS:
            last = sim.tape("binance", symbol)[-1].trade_id
            await tap.wait_for(lambda s=symbol, i=last: any(t.trade_id == i for t in tap.trades(s)),
                               what=f"last {symbol} trade")
        for symbol in SYMBOLS:
            helpers.assert_slice_of_tape(tap.trades(symbol), sim.tape("binance", symbol))
        helpers.assert_frames_well_formed(tap)
        # The handshake: one combined-stream connection, lowercase stream names, no control message.
        [record] = sim.connections("binance")
        assert record.path == "/stream?streams=btcusdt@trade/ethusdt@trade"
        assert record.received == []
        raws = tap.raws()
        assert {r.conn_id for r in raws} == {raws[0].conn_id}
        assert raws[0].conn_id.startswith("binance-") and len(raws[0].conn_id) == len("binance-") + 8
        assert all(r.error == "" and r.trade_count == 1 for r in raws)
        status = feed.status()
        assert (status.state, status.connections, status.reconnects) == ("connected", 1, 0)
        assert status.last_frame_at is not None


async def test_server_pings_are_answered(feed_settings, bus, taps, running) -> None:
    """Binance drops clients that do not echo its pings; the feed stays up for many ping intervals."""
    async with Simulator(sim_settings(tps=5), {"binance": SYMBOLS}, options=FAST_PINGS) as sim:
        tap = taps("binance")
        feed = feed_for("binance", SYMBOLS, bus, feed_settings, sim.ws_urls["binance"])
        await running(feed)
        await asyncio.sleep(2.0)  # ten ping intervals, three pong timeouts
        [record] = sim.connections("binance")
        assert record.closed_at is None, record.close_reason
        assert feed.status().reconnects == 0
        assert tap.trades()


class _Silent(WSListener):
    """A client that never answers pings (auto-pong off, PING frames ignored)."""

    def __init__(self) -> None:
        self.close_reason = b""

    def on_ws_frame(self, transport: WSTransport, frame) -> None:  # type: ignore[no-untyped-def]
        if frame.msg_type == WSMsgType.CLOSE:
            self.close_reason = frame.get_close_message()
            transport.disconnect()


async def test_simulator_disconnects_a_client_that_ignores_pings() -> None:
    async with Simulator(sim_settings(tps=5), {"binance": SYMBOLS}, options=FAST_PINGS) as sim:
        transport, listener = await ws_connect(_Silent, sim.ws_urls["binance"] + "/ws/btcusdt@trade",
                                               enable_auto_pong=False)
        await asyncio.wait_for(transport.wait_disconnected(), 3)
        assert listener.close_reason == b"Pong timeout"  # type: ignore[attr-defined]


async def test_reconnects_after_the_venue_drops_the_connection(feed_settings, bus, taps, running,
                                                               helpers) -> None:
    async with Simulator(sim_settings(), {"binance": SYMBOLS}) as sim:
        tap = taps("binance")
        feed = feed_for("binance", SYMBOLS, bus, feed_settings, sim.ws_urls["binance"])
        reconnects_before = helpers.metric("ticklake_feed_reconnects_total", "binance")
        await running(feed)
        await tap.wait_for(lambda: len(tap.raws()) >= 5, what="frames on the first connection")
        assert sim.drop_connections("binance") == 1
        first = tap.raws()[0].conn_id
        await tap.wait_for(lambda: any(r.conn_id != first for r in tap.raws()), what="a new connection")
        second = next(r for r in tap.raws() if r.conn_id != first)
        assert second.frame_seq == 1  # frame_seq restarts on every connection
        status = feed.status()
        assert status.reconnects == 1 and status.state == "connected"
        assert status.last_error  # why the first connection ended
        assert helpers.metric("ticklake_feed_reconnects_total", "binance") == reconnects_before + 1
        assert helpers.metric("ticklake_feed_lag_seconds_count", "binance") > 0
        assert len(sim.connections("binance")) == 2
        helpers.assert_frames_well_formed(tap)


async def test_a_rejected_frame_is_kept_with_its_error(feed_settings, bus, taps, running, helpers,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ticklake.feeds")
    async with Simulator(sim_settings(), {"binance": ["BTC/USDT"]}) as sim:
        injected: list[str] = []

        def corrupt_third(conn: SimConnection, text: str) -> list[str]:
            if len(injected) < 2:
                bad = ["this is not JSON", text.replace('"p":"', '"p":"+')][len(injected)]
                injected.append(bad)
                return [bad, text]
            return [text]

        sim.venue("binance").frame_filter = corrupt_third
        tap = taps("binance")
        errors_before = helpers.metric("ticklake_feed_parse_errors_total", "binance")
        feed = feed_for("binance", ["BTC/USDT"], bus, feed_settings, sim.ws_urls["binance"])
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 10, what="trades after the bad frames")
        bad = [r for r in tap.raws() if r.error]
        assert [r.payload for r in bad] == injected
        assert all(r.trade_count == 0 for r in bad)
        assert helpers.metric("ticklake_feed_parse_errors_total", "binance") == errors_before + 2
        assert feed.status().reconnects == 0  # the feed kept going on the same connection
        assert "not JSON" in caplog.text or "invalid JSON" in caplog.text
        helpers.assert_frames_well_formed(tap)


async def test_shutdown_notice_reconnects_promptly(feed_settings, bus, taps, running) -> None:
    """A serverShutdown notice opens the next connection at once; the old one closes once the new one
    carries frames (the overlap), not before."""
    async with Simulator(sim_settings(), {"binance": ["BTC/USDT"]}) as sim:
        sent = False

        def announce_shutdown(conn: SimConnection, text: str) -> list[str]:
            nonlocal sent
            if not sent:
                sent = True
                return [text, json.dumps({"e": "serverShutdown", "E": 1})]
            return [text]

        sim.venue("binance").frame_filter = announce_shutdown
        tap = taps("binance")
        feed = feed_for("binance", ["BTC/USDT"], bus, feed_settings, sim.ws_urls["binance"])
        await running(feed)
        await tap.wait_for(lambda: len({r.conn_id for r in tap.raws()}) == 2, timeout=3, what="a reconnect")
        assert feed.status().reconnects == 1
        first = sim.connections("binance")[0]
        await tap.wait_for(lambda: first.closed_at is not None, timeout=3, what="the old connection to close")
        assert feed.status().connections == 1


class _SmallBinance(BinanceFeed):
    max_symbols_per_connection = 2


async def test_symbols_are_spread_over_connections(feed_settings, bus, taps, running, helpers) -> None:
    symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT"]
    async with Simulator(sim_settings(tps=20), {"binance": symbols}) as sim:
        tap = taps("binance")
        feed = _SmallBinance(symbols, bus, feed_settings, sim.ws_urls["binance"])
        await running(feed)
        await tap.wait_for(lambda: all(tap.trades(s) for s in symbols), what="every symbol")
        paths = sorted(r.path for r in sim.connections("binance"))
        assert paths == ["/stream?streams=btcusdt@trade/ethusdt@trade",
                         "/stream?streams=dogeusdt@trade",
                         "/stream?streams=solusdt@trade/xrpusdt@trade"]
        status = feed.status()
        assert (status.connections, status.expected_connections, status.state) == (3, 3, "connected")
        assert len({r.conn_id for r in tap.raws()}) == 3
        assert helpers.metric("ticklake_feed_connected", "binance") == 3
        sim.pause()
        for symbol in symbols:
            last = sim.tape("binance", symbol)[-1].trade_id
            await tap.wait_for(lambda s=symbol, i=last: any(t.trade_id == i for t in tap.trades(s)))
            helpers.assert_slice_of_tape(tap.trades(symbol), sim.tape("binance", symbol))
        await feed.stop()
        assert helpers.metric("ticklake_feed_connected", "binance") == 0
        assert feed.status().state == "stopped"


async def test_raw_frames_carry_the_payload_exactly(feed_settings, bus, taps, running) -> None:
    async with Simulator(sim_settings(), {"binance": ["BTC/USDT"]}) as sim:
        tap = taps("binance")
        feed = feed_for("binance", ["BTC/USDT"], bus, feed_settings, sim.ws_urls["binance"])
        await running(feed)
        await tap.wait_for(lambda: len(tap.raws()) >= 3)
        frame: RawFrame = tap.raws()[0]
        body = json.loads(frame.payload)
        assert body["stream"] == "btcusdt@trade" and body["data"]["e"] == "trade"
        trade = tap.trades()[0]
        assert trade.received_us == frame.received_us
        assert frame.received_us >= body["data"]["T"] * 1000
