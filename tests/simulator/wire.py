"""Raw clients for the simulator's sockets and REST endpoints, checked with ticklake's own mappers.

The tests here look at the wire (a picows client with no feed logic in between), so what a fault
does is observed exactly as a feed would receive it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from ticklake.exchanges.mappers import parser_for
from ticklake.model import Trade
from ticklake.simulator import Simulator, TapeTrade
from ticklake.venues import to_native
from ticklake.venues.binance import mapper as binance_mapper
from ticklake.venues.coinbase import mapper as coinbase_mapper
from ticklake.venues.kraken import mapper as kraken_mapper


class RawClient(WSListener):
    """Records everything the server sends: texts, pings (answered), pongs, the close."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.text_times: list[float] = []
        self.pings: list[bytes] = []
        self.pongs: list[bytes] = []
        self.close_code: int | None = None
        self.close_message = b""
        self.disconnected = False
        self.answer_pings = True

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.texts.append(frame.get_payload_as_utf8_text())
            self.text_times.append(time.monotonic())
        elif frame.msg_type == WSMsgType.PING:
            self.pings.append(frame.get_payload_as_bytes())
            if self.answer_pings:
                transport.send_pong(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.PONG:
            self.pongs.append(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value
            self.close_message = frame.get_close_message() or b""
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected = True


@dataclass
class Conn:
    exchange: str
    transport: WSTransport
    client: RawClient

    def trades(self) -> list[Trade]:
        """Every trade in the well-formed frames received so far, in receive order."""
        parse = parser_for(self.exchange)
        return [trade for text in self.client.texts for trade in parse(text, 0).trades]

    def ids(self) -> list[int]:
        return [trade.trade_id for trade in self.trades()]

    def close(self) -> None:
        self.transport.disconnect()


async def until(condition: Callable[[], bool], timeout: float = 4.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        await asyncio.sleep(0.01)


async def connect(sim: Simulator, exchange: str, symbol: str, *, combined: bool = False,
                  snapshot: bool = False) -> Conn:
    """A raw connection subscribed to ``symbol``'s trades the venue's way."""
    native = to_native(exchange, symbol)
    url = sim.ws_urls[exchange]
    if exchange == "binance":
        url += f"/stream?streams={native.lower()}@trade" if combined else f"/ws/{native.lower()}@trade"
    transport, listener = await ws_connect(RawClient, url, enable_auto_pong=False)
    assert isinstance(listener, RawClient)
    if exchange == "kraken":
        transport.send(WSMsgType.TEXT, orjson.dumps({"method": "subscribe", "params": {
            "channel": "trade", "symbol": [native], "snapshot": snapshot}}))
    elif exchange == "coinbase":
        transport.send(WSMsgType.TEXT, orjson.dumps({"type": "subscribe", "channel": "heartbeats",
                                                     "product_ids": [native]}))
        transport.send(WSMsgType.TEXT, orjson.dumps({"type": "subscribe", "channel": "market_trades",
                                                     "product_ids": [native]}))
    return Conn(exchange, transport, listener)


def key(trade: Trade | TapeTrade) -> tuple[int, str, str, str, int]:
    """What must round-trip exactly: id, price text, quantity text, taker side, exchange time."""
    return (trade.trade_id, trade.price, trade.qty, trade.side, trade.ts_us)


# --- REST walks, with the project's REST parsers ---------------------------------------------------
async def binance_walk(http: httpx.AsyncClient, base: str, native: str, from_id: int, limit: int) -> list[Trade]:
    """historicalTrades from ``from_id`` page by page (``fromId`` = last id + 1) to the end."""
    trades: list[Trade] = []
    while True:
        response = await http.get(f"{base}/api/v3/historicalTrades",
                                  params={"symbol": native, "fromId": from_id, "limit": limit})
        assert response.status_code == 200, response.text
        page = binance_mapper.parse_rest_trades(response.content, native, 0)
        trades.extend(page)
        if len(page) < limit:
            return trades
        from_id = page[-1].trade_id + 1


async def kraken_walk(http: httpx.AsyncClient, base: str, pair: str, since: str, count: int) -> list[Trade]:
    """Trades from ``since``, following ``last``, until a short page."""
    trades: list[Trade] = []
    while True:
        response = await http.get(f"{base}/0/public/Trades", params={"pair": pair, "since": since, "count": count})
        assert response.status_code == 200, response.text
        page = kraken_mapper.parse_rest_trades(response.content, pair, 0)
        trades.extend(page.trades)
        if len(page.trades) < count:
            return trades
        since = page.last


async def coinbase_walk_back(http: httpx.AsyncClient, base: str, product: str, limit: int) -> list[Trade]:
    """Newest page first, then ``after=CB-AFTER`` until an empty page; returned oldest first."""
    trades: list[Trade] = []
    params: dict[str, str | int] = {"limit": limit}
    while True:
        response = await http.get(f"{base}/products/{product}/trades", params=params)
        assert response.status_code == 200, response.text
        page = coinbase_mapper.parse_rest_trades(response.content, product, 0)
        if not page:
            assert "cb-after" not in response.headers
            return trades[::-1]
        assert response.headers["cb-before"] == str(page[0].trade_id)
        assert response.headers["cb-after"] == str(page[-1].trade_id)
        trades.extend(page)
        params = {"limit": limit, "after": response.headers["cb-after"]}
