"""The simulator on its own: deterministic tapes on the venue's grid, and the venues' protocol rules."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import httpx
import pytest
from picows import WSHandshakeError, WSListener, WSMsgType, WSTransport, ws_connect

from ticklake.settings import SimulatorSettings
from ticklake.simulator import Simulator, VenueOptions
from ticklake.simulator.tape import SymbolTape, TapeGenerator, instrument_for


def _tape(exchange: str, symbol: str, seed: int, count: int = 500) -> SymbolTape:
    tape = SymbolTape(TapeGenerator(instrument_for(exchange, symbol), seed, 50.0, 1_700_000_000_000_000))
    while len(tape.trades) < count:
        tape.generate_until(tape.generator.next_ts_us)
    return tape


def test_same_seed_same_tape_and_different_symbols_differ() -> None:
    assert _tape("binance", "BTC/USDT", 5).trades == _tape("binance", "BTC/USDT", 5).trades
    assert _tape("binance", "BTC/USDT", 5).trades != _tape("binance", "BTC/USDT", 6).trades
    eth, btc = _tape("kraken", "ETH/USD", 5).trades, _tape("kraken", "BTC/USD", 5).trades
    assert [t.price for t in eth] != [t.price for t in btc]


@pytest.mark.parametrize(("exchange", "symbol", "tick"), [
    ("binance", "BTC/USDT", "0.01"), ("binance", "DOGE/USDT", "0.00001"), ("kraken", "ETH/EUR", "0.01"),
    ("coinbase", "XRP/USD", "0.0001"), ("coinbase", "PEPE/USD", None),
])
def test_tape_is_on_the_venue_grid(exchange: str, symbol: str, tick: str | None) -> None:
    tape = _tape(exchange, symbol, 1).trades
    instrument = instrument_for(exchange, symbol)
    if tick is not None:
        assert instrument.tick == Decimal(tick)
    ids = [t.trade_id for t in tape]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # sequential native ids
    assert all(Decimal(t.price) % instrument.tick == 0 and Decimal(t.price) > 0 for t in tape)
    assert all(Decimal(t.qty) % instrument.lot == 0 and Decimal(t.qty) > 0 for t in tape)
    assert {t.side for t in tape} == {"buy", "sell"}
    stamps = [t.ts_us for t in tape]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) < len(stamps)  # bursts: several fills in the same microsecond
    if exchange == "binance":
        assert all(ts % 1000 == 0 for ts in stamps)  # Binance publishes milliseconds
        assert all(len(t.price.split(".")[1]) == 8 for t in tape)
    millis = [ts // 1000 for ts in stamps]
    assert len(set(millis)) < len(set(stamps)) or exchange == "binance"  # distinct orders share a ms too


class _Client(WSListener):
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.closed_with: bytes | None = None

    def on_ws_frame(self, transport: WSTransport, frame) -> None:  # type: ignore[no-untyped-def]
        if frame.msg_type == WSMsgType.TEXT:
            self.texts.append(frame.get_payload_as_utf8_text())
        elif frame.msg_type == WSMsgType.CLOSE:
            self.closed_with = frame.get_close_message()
            transport.disconnect()


async def _until(condition, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_binance_live_subscribe_and_raw_streams() -> None:
    async with Simulator(SimulatorSettings(seed=3, trades_per_second=30), {"binance": ["BTC/USDT", "ETH/USDT"]}) as sim:
        transport, client = await ws_connect(_Client, sim.ws_urls["binance"] + "/ws")
        listener: _Client = client  # type: ignore[assignment]
        transport.send(WSMsgType.TEXT, b'{"method":"SUBSCRIBE","params":["ethusdt@trade"],"id":1}')
        await _until(lambda: len(listener.texts) >= 3)
        assert json.loads(listener.texts[0]) == {"result": None, "id": 1}
        event = json.loads(listener.texts[1])
        assert set(event) == {"e", "E", "s", "t", "p", "q", "T", "m", "M"}  # raw: not wrapped
        assert event["e"] == "trade" and event["s"] == "ETHUSDT"
        transport.send(WSMsgType.TEXT, b'{"method":"LIST_SUBSCRIPTIONS","id":2}')
        await _until(lambda: any('"id":2' in t for t in listener.texts))
        assert {"result": ["ethusdt@trade"], "id": 2} in [json.loads(t) for t in listener.texts]
        transport.send(WSMsgType.TEXT, b"{oops")
        await _until(lambda: any('"code":3' in t for t in listener.texts))
        transport.disconnect()


async def test_binance_closes_a_client_over_the_message_rate_limit() -> None:
    async with Simulator(SimulatorSettings(seed=3), {"binance": ["BTC/USDT"]}) as sim:
        transport, client = await ws_connect(_Client, sim.ws_urls["binance"] + "/ws")
        listener: _Client = client  # type: ignore[assignment]
        for i in range(6):  # the limit is 5 incoming messages a second
            transport.send(WSMsgType.TEXT, f'{{"method":"LIST_SUBSCRIPTIONS","id":{i}}}'.encode())
        await asyncio.wait_for(transport.wait_disconnected(), 2)
        assert listener.closed_with == b"Too many requests"


async def test_unknown_paths_get_404() -> None:
    async with Simulator(SimulatorSettings(seed=3), {"kraken": ["BTC/USD"]}) as sim:
        with pytest.raises(WSHandshakeError, match="404"):
            await ws_connect(_Client, sim.ws_urls["kraken"].removesuffix("/v2") + "/v1")


async def test_coinbase_disconnects_without_a_subscribe() -> None:
    options = VenueOptions(subscribe_timeout_s=0.3, tick_s=0.01)
    async with Simulator(SimulatorSettings(seed=3), {"coinbase": ["BTC/USD"]}, options=options) as sim:
        transport, client = await ws_connect(_Client, sim.ws_urls["coinbase"])
        await asyncio.wait_for(transport.wait_disconnected(), 2)
        assert client.closed_with is not None  # type: ignore[attr-defined]


async def test_coinbase_rejects_several_channels_in_one_message() -> None:
    async with Simulator(SimulatorSettings(seed=3), {"coinbase": ["BTC/USD"]}) as sim:
        transport, client = await ws_connect(_Client, sim.ws_urls["coinbase"])
        listener: _Client = client  # type: ignore[assignment]
        transport.send(WSMsgType.TEXT, b'{"type":"subscribe","channels":["heartbeats","market_trades"],'
                                       b'"product_ids":["BTC-USD"]}')
        await _until(lambda: bool(listener.texts))
        assert json.loads(listener.texts[0])["type"] == "error"
        transport.disconnect()


async def test_kraken_ping_and_numbers_on_the_wire() -> None:
    async with Simulator(SimulatorSettings(seed=3, trades_per_second=30), {"kraken": ["BTC/USD"]}) as sim:
        transport, client = await ws_connect(_Client, sim.ws_urls["kraken"])
        listener: _Client = client  # type: ignore[assignment]
        transport.send(WSMsgType.TEXT, b'{"method":"ping","req_id":42}')
        transport.send(WSMsgType.TEXT, b'{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD"]}}')
        await _until(lambda: any('"channel":"trade","type":"update"' in t for t in listener.texts))
        messages = [json.loads(t) for t in listener.texts]
        assert messages[0]["channel"] == "status" and messages[0]["data"][0]["api_version"] == "v2"
        pong = next(m for m in messages if m.get("method") == "pong")
        assert pong["req_id"] == 42 and pong["time_in"] and pong["time_out"]
        assert not any(m.get("type") == "snapshot" for m in messages)  # snapshot not requested
        update = next(m for m in messages if m.get("channel") == "trade")
        row = update["data"][0]
        assert isinstance(row["price"], float) and isinstance(row["qty"], float)  # JSON numbers
        assert set(row) == {"symbol", "side", "price", "qty", "ord_type", "trade_id", "timestamp"}
        transport.disconnect()


async def test_pause_stops_the_tape_and_resume_continues_it() -> None:
    async with Simulator(SimulatorSettings(seed=3, trades_per_second=100), {"binance": ["BTC/USDT"]}) as sim:
        sim.pause()
        before = len(sim.tape("binance", "BTC/USDT"))
        await asyncio.sleep(0.2)
        assert len(sim.tape("binance", "BTC/USDT")) == before
        sim.resume()
        await asyncio.sleep(0.2)
        after = sim.tape("binance", "BTC/USDT")
        assert len(after) > before
        assert after[before].ts_us >= after[before - 1].ts_us


async def test_okx_wire_ping_errors_and_one_trade_per_push() -> None:
    async with Simulator(SimulatorSettings(seed=3, trades_per_second=30), {"okx": ["BTC/USDT"]}) as sim, \
            httpx.AsyncClient() as http:
        transport, client = await ws_connect(_Client, sim.ws_urls["okx"])
        listener: _Client = client  # type: ignore[assignment]
        transport.send(WSMsgType.TEXT, b"ping")
        transport.send(WSMsgType.TEXT, b'{"op":"subscribe"}')
        transport.send(WSMsgType.TEXT, b'{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"},'
                                       b'{"channel":"trades-all","instId":"BTC-USDT"}]}')
        await _until(lambda: any(t.startswith('{"arg"') for t in listener.texts))
        assert listener.texts[0] == "pong"
        messages = [json.loads(t) for t in listener.texts[1:]]
        assert messages[0]["event"] == "error" and messages[0]["code"] == "60012"
        assert messages[1]["event"] == "error" and messages[1]["code"] == "60018"  # trades is not on /business
        assert messages[2] == {"event": "subscribe", "arg": {"channel": "trades-all", "instId": "BTC-USDT"},
                               "connId": messages[0]["connId"]}
        push = messages[3]
        [row] = push["data"]
        assert set(row) == {"instId", "tradeId", "px", "sz", "side", "source", "ts"}
        assert all(isinstance(value, str) for value in row.values())
        transport.disconnect()

        # trades-all is not served on /ws/v5/public
        public = sim.ws_urls["okx"].replace("/business", "/public")
        transport, client = await ws_connect(_Client, public)
        listener = client  # type: ignore[assignment]
        transport.send(WSMsgType.TEXT, b'{"op":"subscribe","args":[{"channel":"trades-all","instId":"BTC-USDT"}]}')
        await _until(lambda: bool(listener.texts))
        assert json.loads(listener.texts[0])["code"] == "60018"
        transport.disconnect()

        # REST: newest first, ids below ``after``; an unknown instrument is 51001
        sim.pause()
        tape = sim.tape("okx", "BTC/USDT")
        url = sim.rest_urls["okx"] + "/api/v5/market/history-trades"
        answer = (await http.get(url, params={"instId": "BTC-USDT", "after": tape[-5].trade_id, "limit": 3})).json()
        assert answer["code"] == "0"
        assert [int(r["tradeId"]) for r in answer["data"]] == [t.trade_id for t in tape[-6:-9:-1]]
        answer = (await http.get(url, params={"instId": "BTC-USDT", "before": tape[-5].trade_id})).json()
        assert [int(r["tradeId"]) for r in answer["data"]] == [t.trade_id for t in tape[-1:-5:-1]]
        assert (await http.get(url, params={"instId": "NOPE-USDT"})).json()["code"] == "51001"
