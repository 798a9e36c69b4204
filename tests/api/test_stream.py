"""The live stream (``/v1/stream``) on the embedded platform against the simulated venues: what it
pushes is exactly what the warehouse serves, under the simulator's faults; a resumed subscription
misses and repeats nothing; a client that stops reading is dropped, told why, and slows nobody."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode
from websockets.uri import parse_uri

from tests.factories import trade
from tests.support.processes import free_port, until_answering
from tests.support.simulated import SimulatedPlatform
from ticklake.ops import metrics
from ticklake.platform import Platform
from ticklake.settings import ApiSettings, FeedSettings, Settings, SimulatorSettings, VenueSettings, VenuesSettings
from ticklake.warehouse.reader import TIMEFRAMES

MARKETS = {"binance": ["BTC/USDT"], "kraken": ["BTC/USD"], "coinbase": ["ETH/USD"]}
# Each test starts from an empty warehouse (the session's, emptied by the fixture).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("warehouse")]


def settings_for(warehouse_url: str, trades_per_second: float, **api: Any) -> Settings:
    return Settings(
        warehouse_url=warehouse_url, database="ticklake_test",
        venues=VenuesSettings(**{ex: VenueSettings(symbols=symbols) for ex, symbols in MARKETS.items()}),
        simulator=SimulatorSettings(trades_per_second=trades_per_second, seed=1107),
        feed=FeedSettings(backoff_initial_s=0.1, backoff_max_s=1.0, stable_after_s=2.0),
        api=ApiSettings(port=free_port(), **api),
    )


class Collector:
    """One WebSocket client: every message it receives, in order."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.messages: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for text in self.connection:
                self.messages.append(orjson.loads(text))

    async def send(self, **request: Any) -> None:
        await self.connection.send(orjson.dumps(request).decode())

    def trades(self, exchange: str, symbol: str) -> list[dict[str, Any]]:
        return [t for m in self.messages if m["type"] == "trades" and (m["exchange"], m["symbol"]) == (exchange, symbol)
                for t in m["trades"]]

    def last_cursor(self, exchange: str, symbol: str) -> str:
        return str(next(m["cursor"] for m in reversed(self.messages)
                    if m["type"] == "trades" and (m["exchange"], m["symbol"]) == (exchange, symbol)))

    async def close(self) -> None:
        await self.connection.close()
        await self.task


class StalledClient:
    """A WebSocket client that never reads: the handshake and its requests by hand, over a socket with
    a small receive buffer (a client library would read ahead into memory)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/v1/stream"))
        self.protocol.send_request(self.protocol.connect())
        self.sock.sendall(b"".join(self.protocol.data_to_send()))
        response = b""
        while b"\r\n\r\n" not in response:  # the 101 answer, and not a byte further
            response += self.sock.recv(1)
        self.protocol.receive_data(response)
        assert self.protocol.handshake_exc is None, self.protocol.handshake_exc

    def send(self, request: dict[str, Any]) -> None:
        self.protocol.send_text(orjson.dumps(request))
        self.sock.sendall(b"".join(self.protocol.data_to_send()))

    def read_until_closed(self, timeout: float = 60) -> Close:
        self.sock.settimeout(timeout)
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                raise AssertionError("the connection ended without a close frame")
            self.protocol.receive_data(data)
            for event in self.protocol.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    return Close.parse(bytes(event.data))


async def all_trades(api: httpx.AsyncClient, exchange: str, symbol: str) -> list[dict[str, Any]]:
    trades: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"exchange": exchange, "symbol": symbol, "limit": 5000}
        if cursor:
            params["cursor"] = cursor
        body = (await api.get("/v1/trades", params=params)).json()
        trades += body["trades"]
        cursor = body["next_cursor"]
        if cursor is None:
            return trades


def position(trade: dict[str, Any]) -> tuple[str, int]:
    return trade["time"], int(trade["trade_id"])


async def started(settings: Settings) -> SimulatedPlatform:
    """A platform whose API answers."""
    platform = SimulatedPlatform(settings)
    await platform.start()
    await until_answering(settings.api.port)
    return platform


async def quiesce(feed: Platform, serving: Platform | None = None) -> None:
    """The venues' trades stop reaching the platform; what is on its way is written and pushed."""
    serving = serving or feed
    assert feed.feeds is not None and serving.ingester is not None
    await feed.feeds.stop()
    if feed.producer is not None:
        await feed.producer.flush(10)
    await asyncio.sleep(1.0)  # (through the broker, in distributed mode)
    await serving.ingester.drain()
    await asyncio.sleep(1.0)  # the hub reads back the last candles


@pytest.mark.slow
async def test_the_stream_equals_the_warehouse_under_faults_and_resumes_without_a_gap(warehouse_url: str) -> None:
    """Embedded: one process, every role."""
    settings = settings_for(warehouse_url, trades_per_second=25)
    platform = await started(settings)
    try:
        await stream_equals_warehouse(platform, platform, settings.api.port, provisional=True)
    finally:
        await platform.stop()


@pytest.mark.slow
async def test_the_stream_equals_the_warehouse_with_a_kafka_bus(warehouse_url: str, tmp_path: Path) -> None:
    """Distributed: `ticklake feed` and `ticklake ingest --api` as two platforms around a real
    Kafka-protocol broker; the stream is served where the warehouse is written."""
    from tests.broker import Broker
    from ticklake.bus.kafka import create_topics
    from ticklake.settings import BusSettings, KafkaSettings

    broker = Broker(tmp_path / "broker").start()
    try:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, partitions=2, session_timeout_ms=6000,
                              group_id="stream-test")
        settings = settings_for(warehouse_url, trades_per_second=25).model_copy(
            update={"bus": BusSettings(kind="kafka", kafka=kafka)})
        create_topics(kafka, settings.venues.enabled(), kafka.retention_hours)
        ingest = Platform(settings, roles=frozenset({"ingest", "api"}))
        feed_settings = settings.model_copy(update={"api": ApiSettings(port=free_port())})
        feed = SimulatedPlatform(feed_settings, roles=frozenset({"feed"}))
        await feed.start()
        try:
            await ingest.start()
            try:
                await until_answering(settings.api.port)
                await stream_equals_warehouse(feed, ingest, settings.api.port)
            finally:
                await ingest.stop()
        finally:
            await feed.stop()
    finally:
        broker.remove()


async def stream_equals_warehouse(feed: SimulatedPlatform, serving: Platform, port: int,
                                  provisional: bool = False) -> None:
    """Under the simulator's fault mix (``feed``'s venues), every trade and candle the stream of
    ``serving`` pushes is what its warehouse serves (but for ``provisional`` open candles, pushed as
    trades enter the bus where the feeds run in the same process, and always followed by the stored
    candle); a resumed subscription misses and repeats nothing."""
    base = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/v1/stream"
    assert serving.live is not None
    encode_cursor = serving.live.cursors.encode  # the installation's key seals every cursor
    simulator = feed.simulator
    # Everything from the beginning (a cursor before the first trade, candles since 1970), then live.
    full = Collector(await connect(url))
    for exchange, symbols in MARKETS.items():
        for symbol in symbols:
            await full.send(op="subscribe", channel="trades", exchange=exchange, symbol=symbol,
                            after=encode_cursor(exchange, symbol, 0, 0))
            for timeframe in TIMEFRAMES:
                await full.send(op="subscribe", channel="candles", exchange=exchange, symbol=symbol,
                                timeframe=timeframe, since="1970-01-01T00:00:00Z")
    # A client that drops during the faults and comes back with the last cursor it saw.
    resumed = Collector(await connect(url))
    await resumed.send(op="subscribe", channel="trades", exchange="binance", symbol="BTC/USDT",
                       after=encode_cursor("binance", "BTC/USDT", 0, 0))
    # Every venue gets each fault of the mix once for sure, then the random mix on top.
    for exchange, symbols in MARKETS.items():
        simulator.skip_next(exchange, symbols[0], 7)  # the skipped trades stay on REST: a backfill
        simulator.duplicate_next(exchange, 3)
        simulator.reorder_next(exchange, 3)
    await asyncio.sleep(3)
    for exchange in MARKETS:
        simulator.drop_connections(exchange)
    simulator.chaos(seed=11, mean_interval_s=1.0)
    await asyncio.sleep(8)
    # Away for 4 s of faults (backfills store trades older than what it saw), then back with its cursor.
    cursor = resumed.last_cursor("binance", "BTC/USDT")
    first_part = resumed.trades("binance", "BTC/USDT")
    await resumed.close()
    simulator.skip_next("binance", "BTC/USDT", 5)  # a backfill while it is away, for sure
    await asyncio.sleep(4)
    resumed = Collector(await connect(url))
    await resumed.send(op="subscribe", channel="trades", exchange="binance", symbol="BTC/USDT", after=cursor)
    await asyncio.sleep(10)
    await simulator.stop_chaos()
    simulator.clear_faults()
    await asyncio.sleep(6)  # reconnects and the last backfills settle

    await quiesce(feed, serving)
    async with httpx.AsyncClient(base_url=base, timeout=30) as api:
        stored = {(ex, sym): await all_trades(api, ex, sym) for ex, syms in MARKETS.items() for sym in syms}
        served = {(ex, sym, tf): (await api.get("/v1/ohlcv", params={
            "exchange": ex, "symbol": sym, "timeframe": tf, "limit": 5000})).json()["candles"]
            for ex, syms in MARKETS.items() for sym in syms for tf in TIMEFRAMES}
    await full.close()
    await resumed.close()
    kinds = {event.fault for event in simulator.fault_log}

    assert {"skip_next", "drop_connections", "duplicate_next", "reorder_next"} <= kinds
    assert not [m for m in full.messages if m["type"] == "error"]
    early = [m for m in full.messages if m.get("provisional")]
    assert bool(early) == provisional
    assert not [m for m in early if m["closed"]]
    late = 0
    for (exchange, symbol), rest in stored.items():
        pushed = full.trades(exchange, symbol)
        assert len(rest) > 200
        # Once each, exactly the stored records (same fields, same text).
        assert len({t["trade_id"] for t in pushed}) == len(pushed), f"{exchange} {symbol}: a trade pushed twice"
        assert sorted(({k: v for k, v in t.items() if k != "late"} for t in pushed), key=position) == rest, \
            f"{exchange} {symbol}: the stream's trades differ from /v1/trades"
        # In order, but for trades a backfill stored after newer ones, which say so.
        newest: tuple[str, int] | None = None
        for row in pushed:
            is_late = newest is not None and position(row) < newest
            assert row.get("late", False) == is_late, row
            late += is_late
            newest = max(newest or position(row), position(row))
        newest_time = rest[-1]["time"]
        for timeframe, seconds in TIMEFRAMES.items():
            last: dict[str, dict[str, Any]] = {}
            for message in full.messages:
                if message["type"] == "candle" and (message["exchange"], message["symbol"], message["timeframe"]) \
                        == (exchange, symbol, timeframe):
                    last[message["candle"]["time"]] = message
            expected = {c["time"]: c for c in served[(exchange, symbol, timeframe)]}
            assert {t: m["candle"] for t, m in last.items()} == expected, f"{exchange} {symbol} {timeframe}"
            for start, message in last.items():
                if _plus(start, seconds) <= newest_time:  # the market traded after its end
                    assert message["closed"], (exchange, symbol, timeframe, start)
    print(f"late trades pushed (backfills): {late}")

    # The resumed client: its two sessions hold every stored trade, once each, the late ones stored
    # while it was away included.
    second_part = resumed.trades("binance", "BTC/USDT")
    joined = [{k: v for k, v in t.items() if k != "late"} for t in first_part + second_part]
    assert sorted(joined, key=position) == stored[("binance", "BTC/USDT")]
    assert len({t["trade_id"] for t in joined}) == len(joined)
    away = {t["trade_id"] for t in second_part if t.get("late")}
    print(f"resumed: {len(second_part)} trades after the reconnect, {len(away)} of them late")
    assert second_part, "the resumed subscription received nothing"


def _plus(rfc3339: str, seconds: int) -> str:
    from datetime import datetime, timedelta

    moment = datetime.fromisoformat(rfc3339.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.slow
async def test_a_client_that_stops_reading_is_dropped_and_slows_nobody(warehouse_url: str) -> None:
    settings = settings_for(warehouse_url, trades_per_second=60, stream_queue_messages=20)
    platform = await started(settings)
    url = f"ws://127.0.0.1:{settings.api.port}/v1/stream"
    dropped_before = metrics.STREAM_DROPPED._value.get()
    try:
        assert platform.ingester is not None
        readers = [Collector(await connect(url)) for _ in range(100)]
        for reader in readers:
            for exchange, symbols in MARKETS.items():
                await reader.send(op="subscribe", channel="trades", exchange=exchange, symbol=symbols[0])
        # The one that never reads: a small receive buffer, and the client library reads nothing ahead. It
        # asks for an hour of history first (~10 MB), more than the sockets between hold (~4 MB here).
        history = [trade(i, ts_us=int((time.time() - 3600) * 1e6) + i * 50_000, conn_id="history")
                   for i in range(1, 60_001)]
        await asyncio.get_running_loop().run_in_executor(platform._executor, platform.ingester.writer.write,
                                                         [], history)
        # (Its blocking socket calls run on a thread: the server runs on this event loop.)
        stalled = await asyncio.to_thread(StalledClient, settings.api.port)
        for exchange, symbols in MARKETS.items():
            await asyncio.to_thread(stalled.send, {"op": "subscribe", "channel": "trades", "exchange": exchange,
                                                   "symbol": symbols[0],
                                                   "after": platform.live.cursors.encode(exchange, symbols[0],
                                                                                         0, 0)})
            for timeframe in TIMEFRAMES:
                await asyncio.to_thread(stalled.send, {"op": "subscribe", "channel": "candles", "exchange": exchange,
                                                       "symbol": symbols[0], "timeframe": timeframe})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while metrics.STREAM_DROPPED._value.get() == dropped_before and loop.time() < deadline:
            await asyncio.sleep(0.2)
        assert metrics.STREAM_DROPPED._value.get() == dropped_before + 1, "the stalled client was never dropped"
        # Meanwhile, and after, the others keep getting everything, and the platform keeps writing.
        batches = platform.ingester.status.batches
        counts = [len(r.messages) for r in readers]
        await asyncio.sleep(3)
        assert platform.ingester.status.batches > batches
        assert all(len(r.messages) > n for r, n in zip(readers, counts, strict=True))
        # Once it reads again, the stalled client learns why it was dropped.
        close = await asyncio.to_thread(stalled.read_until_closed)
        assert close.code == 1008 and "too slow" in close.reason, close
        await quiesce(platform)
        for reader in readers:
            await reader.close()
        # Every reader saw every trade of its markets once, none was dropped but the stalled one.
        first = readers[0]
        for reader in readers:
            for exchange, symbols in MARKETS.items():
                ids = [t["trade_id"] for t in reader.trades(exchange, symbols[0])]
                assert len(ids) == len(set(ids))
                assert set(ids) == {t["trade_id"] for t in first.trades(exchange, symbols[0])}
        assert metrics.STREAM_DROPPED._value.get() == dropped_before + 1
    finally:
        await platform.stop()


async def test_bad_subscriptions_get_a_clear_error_and_the_connection_stays(warehouse_url: str) -> None:
    settings = settings_for(warehouse_url, trades_per_second=5)
    platform = await started(settings)
    url = f"ws://127.0.0.1:{settings.api.port}/v1/stream"
    try:
        async with connect(url) as ws:
            cases = [
                ("not json", "not JSON"),
                ("[1, 2]", "JSON object"),
                ('{"op": "watch"}', "op 'watch'"),
                ('{"op": "subscribe", "channel": "quotes", "exchange": "binance", "symbol": "BTC/USDT"}', "channel"),
                ('{"op": "subscribe", "channel": "trades", "exchange": "nyse", "symbol": "BTC/USDT"}', "exchange"),
                ('{"op": "subscribe", "channel": "candles", "exchange": "binance", "symbol": "BTC/USDT", '
                 '"timeframe": "7m"}', "timeframe"),
                ('{"op": "subscribe", "channel": "trades", "exchange": "binance", "symbol": "BTC/USDT", '
                 '"after": "garbage"}', "cursor"),
                ('{"op": "subscribe", "channel": "trades", "exchange": "binance", "symbol": "BTC/USDT", '
                 '"colour": "red"}', "colour"),
            ]
            for text, expected in cases:
                await ws.send(text)
                reply = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                assert reply["type"] == "error" and expected in reply["error"], (text, reply)
            for text, expected in [(b"\xff\xfe binary", "not JSON")]:  # a binary frame, not even UTF-8
                await ws.send(text)
                reply = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                assert reply["type"] == "error" and expected in reply["error"], (text, reply)
            # Still connected and usable.
            await ws.send('{"op": "subscribe", "channel": "trades", "exchange": "binance", "symbol": "BTC/USDT"}')
            assert orjson.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "subscribed"
            message = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            assert message["type"] == "trades" and message["trades"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api.port}", timeout=10) as api:
            response = await api.get("/v1/stream", params={"channel": "candles", "exchange": "binance",
                                                           "symbol": "BTC/USDT", "timeframe": "2m"})
            assert response.status_code == 400 and response.json()["error"]["parameter"] == "timeframe"
    finally:
        await platform.stop()


async def test_server_sent_events_show_a_live_market(warehouse_url: str) -> None:
    settings = settings_for(warehouse_url, trades_per_second=20)
    platform = await started(settings)
    try:
        events: list[tuple[str, dict[str, Any]]] = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api.port}", timeout=30) as api:
            params = {"channel": "candles", "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1m"}
            async with api.stream("GET", "/v1/stream", params=params) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                kind = ""
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        events.append((kind, orjson.loads(line[6:])))
                    if sum(1 for k, _ in events if k == "candle") >= 3:
                        break
            candle = next(m for k, m in events if k == "candle")
            assert candle["timeframe"] == "1m" and "closed" in candle and candle["candle"]["trades"] >= 1
            assert events[0][0] == "subscribed"
    finally:
        await platform.stop()


async def test_the_python_client_follows_a_market_and_resumes_after_a_drop(
        warehouse_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``TicklakeClient.stream`` (base URL from TICKLAKE_URL): the server drops it mid-stream, it
    reconnects with its last cursor, and what it yielded is every stored trade, once."""
    from ticklake.api.live import Channel
    from ticklake.client import TicklakeClient

    settings = settings_for(warehouse_url, trades_per_second=30)
    platform = await started(settings)
    assert platform.live is not None
    cursors = platform.live.cursors
    base = f"http://127.0.0.1:{settings.api.port}"
    monkeypatch.setenv("TICKLAKE_URL", base)
    received: list[dict[str, Any]] = []
    try:
        client = TicklakeClient()
        assert client.base_url == base

        async def follow() -> None:
            async for message in client.stream("trades", "binance", "BTC/USDT", reconnect_delay_s=0.2,
                                               after=cursors.encode("binance", "BTC/USDT", 0, 0)):
                received.extend(message["trades"])

        task = asyncio.create_task(follow())
        await asyncio.sleep(2)
        # /v1/trades tails too: the last page's tail_cursor, asked again later, gives what came since.
        async with httpx.AsyncClient(base_url=base, timeout=30) as api:
            params: dict[str, str | int] = {"exchange": "binance", "symbol": "BTC/USDT", "limit": 5000}
            first = (await api.get("/v1/trades", params=params)).json()
            assert first["next_cursor"] is None and first["tail_cursor"]
            await asyncio.sleep(1)
            later = (await api.get("/v1/trades", params={**params, "cursor": first["tail_cursor"]})).json()
            assert later["trades"], "nothing new after a second of trading"
            assert first["trades"] + later["trades"] == (await api.get("/v1/trades", params=params)).json()[
                "trades"][: len(first["trades"]) + len(later["trades"])]
        await asyncio.sleep(1)
        assert platform.live is not None
        subscribers = platform.live._subscribers[Channel("trades", "binance", "BTC/USDT")]
        assert len(subscribers) == 1
        dropped_at = len(received)
        next(iter(subscribers)).drop("dropped by the test")
        await asyncio.sleep(4)
        await quiesce(platform)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        client.close()
        async with httpx.AsyncClient(base_url=base, timeout=30) as api:
            stored = await all_trades(api, "binance", "BTC/USDT")
    finally:
        await platform.stop()
    assert 0 < dropped_at < len(received)
    assert [t["trade_id"] for t in received] == [t["trade_id"] for t in stored]
