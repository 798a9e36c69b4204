"""``ticklake_feed_last_frame_timestamp_seconds``: when a venue was last heard, which the alert on a silent
venue watches (deploy/prometheus/alerts.yml, TicklakeFeedVenueSilent). A quiet market, where only the
venue's pings arrive, keeps it moving; a venue that accepts connections and then says nothing does not,
however often the feed reconnects."""

from __future__ import annotations

import asyncio
import time

from picows import WSListener, WSTransport, WSUpgradeRequest, ws_create_server

from ticklake.ops.metrics import REGISTRY
from ticklake.venues.binance.feed import BinanceFeed

METRIC = "ticklake_feed_last_frame_timestamp_seconds"


def last_heard() -> float | None:
    return REGISTRY.get_sample_value(METRIC, {"exchange": "binance"})


class _Venue(WSListener):
    """Sends WebSocket pings (no data frame: a market where nothing trades) while ``pinging`` is set."""

    def __init__(self, pinging: asyncio.Event, connections: list[WSTransport]) -> None:
        self.pinging = pinging
        self.connections = connections
        self.task: asyncio.Task[None] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.connections.append(transport)
        self.task = asyncio.get_running_loop().create_task(self._ping(transport))

    async def _ping(self, transport: WSTransport) -> None:
        while True:
            if self.pinging.is_set():
                transport.send_ping(b"hello")
            await asyncio.sleep(0.1)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.task is not None:
            self.task.cancel()

    def on_ws_frame(self, transport: WSTransport, frame: object) -> None:
        pass  # subscriptions and pongs: nothing to answer


async def test_a_quiet_market_is_heard_and_a_silent_venue_is_not(feed_settings, bus, running) -> None:
    pinging = asyncio.Event()
    connections: list[WSTransport] = []

    def route(request: WSUpgradeRequest) -> WSListener:
        return _Venue(pinging, connections)

    server = await ws_create_server(route, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        # Silent: the venue accepts the connection and sends nothing. The watchdog reconnects every 0.3 s;
        # a new connection is not a frame, so the gauge stays at the feed's start.
        feed = BinanceFeed(["BTC/USDT"], bus, feed_settings, f"ws://127.0.0.1:{port}", stale_timeout_s=0.3)
        started = feed._started_us / 1_000_000
        await running(feed)
        deadline = time.monotonic() + 10
        while feed.status().reconnects < 2:
            assert time.monotonic() < deadline, feed.status()
            await asyncio.sleep(0.05)
        assert len(connections) >= 2
        assert last_heard() == started
        assert time.time() - started > 0.6  # silent for longer than two stale timeouts, and it shows

        # Quiet, not silent: pings only, no trade, no data frame. The venue is heard.
        pinging.set()
        deadline = time.monotonic() + 10
        while (heard := last_heard()) is None or heard <= started:
            assert time.monotonic() < deadline, "the pings were never taken as the venue being heard"
            await asyncio.sleep(0.05)
        while (later := last_heard()) is None or later <= heard + 0.2:  # it keeps moving with the pings
            assert time.monotonic() < deadline, "the pings stopped counting"
            await asyncio.sleep(0.05)
        assert feed.status().last_frame_at is None  # no data frame reached the feed: the pings alone did this

        # Silent again: it stops moving, and stays where the last ping left it across reconnects.
        pinging.clear()
        await asyncio.sleep(0.2)  # a ping already sent may still arrive
        before = last_heard()
        reconnects = feed.status().reconnects
        deadline = time.monotonic() + 10
        while feed.status().reconnects < reconnects + 2:
            assert time.monotonic() < deadline, feed.status()
            await asyncio.sleep(0.05)
        after = last_heard()
        assert before is not None and after is not None
        assert abs(after - before) < 0.01  # (the monotonic clock read as wall-clock time: to within µs)
    finally:
        server.close()
        await server.wait_closed()
