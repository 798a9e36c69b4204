"""Bybit spot v5 public WebSocket (``/v5/public/spot``) and ``/v5/market/recent-trade``, as documented.

WebSocket (bybit-exchange.github.io/docs/v5/ws/connect, .../v5/websocket/public/trade):

* ``{"op":"subscribe","args":["publicTrade.BTCUSDT",...],"req_id":..}`` answered with
  ``{"success":true,"ret_msg":"","conn_id":..,"req_id":..,"op":"subscribe"}``; more than 10 args in one
  spot request, or an unknown topic, is refused with ``"success":false`` and a ``ret_msg`` (the exact
  texts are not documented; these are made up);
* ``{"op":"ping"}`` answered with ``{"success":true,"ret_msg":"pong","conn_id":..,"req_id":..,"op":"ping"}``
  (the spot form; linear/inverse answer ``{"op":"pong","args":[ms]}``). The server never pings: without a
  client ping and without data for ``client_idle_close_s`` (the docs: 10 minutes) it closes the connection;
* one frame per burst: ``{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":ms,"data":[{T, s, S, v, p,
  i, BT, RPI, seq}]}``, ``S`` the taker's side "Buy"/"Sell", ``i`` the id as a digit string, ``seq`` a
  cross sequence that grows by one or more per trade (other book events take numbers too). No snapshot
  of past trades is sent on subscribing.

REST (bybit-exchange.github.io/docs/v5/market/recent-trade, .../v5/rate-limit):

* ``GET /v5/market/recent-trade?category=spot&symbol=&limit=``: the newest ``limit`` trades (spot: 1..60,
  default 60; a larger limit is served as 60 here: what Bybit does with one is not documented), newest
  first, as ``{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{execId, symbol, price,
  size, side, time, isBlockTrade}]},"retExtInfo":{},"time":ms}``; ``time`` is a string of ms. Errors
  are HTTP 200 with a non-zero ``retCode`` (10001 "params error"). No paging exists, so a trade older than
  the newest 60 cannot be had, however recent: that is the bound a backfill of this venue works within.
* Rate limit: 600 requests per 5 s per IP, past which HTTP 403 "access too frequent"; a scripted 429
  failure is served as Bybit's per-endpoint throttle, HTTP 200 with ``retCode`` 10006 "Too many visits!".

Trade ids here are the tape's, which count each market's trades; real Bybit spot ids are shared by
all markets (mapper.py). The feed does not rely on either (``Venue.ids_count_trades`` is False).
"""

from __future__ import annotations

import secrets
import time
from decimal import Decimal
from typing import Any

import orjson
from picows import WSCloseCode, WSTransport
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticklake.simulator.rest import Rejected, RestApi, RestLimit, json_response
from ticklake.simulator.tape import Instrument, TapeTrade, render_to_tick
from ticklake.simulator.venue import SimConnection, VenueServer

TOPIC = "publicTrade."
MAX_ARGS = 10  # spot: args per subscribe request
MAX_LIMIT = 60  # spot: rows of recent-trade


class BybitConnection(SimConnection):
    def __init__(self, conn_id: int, transport: WSTransport, path: str) -> None:
        super().__init__(conn_id, transport, path)
        self.bybit_id = f"{secrets.token_hex(10)}-{conn_id}"
        self.last_ping = self.connected_at


class BybitServer(VenueServer[BybitConnection]):
    exchange = "bybit"
    base_path = "/v5/public/spot"
    time_resolution_us = 1000  # trade times are milliseconds
    default_rest_limit = RestLimit(per_second=120.0, burst=600)

    @staticmethod
    def render_price_qty(price: Decimal, qty: Decimal, instrument: Instrument) -> tuple[str, str]:
        # Price to the tick, size to the lot's decimals ("16618.49", "0.00012").
        price_text, _ = render_to_tick(price, qty, instrument)
        exponent = instrument.lot.as_tuple().exponent
        places = max(0, -exponent) if isinstance(exponent, int) else 8
        return price_text, f"{qty:.{places}f}"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seq = {symbol: 1_000_000 for symbol in self.tapes}

    def accepts(self, path: str, query: str) -> bool:
        return path.rstrip("/") == self.base_path

    def new_connection(self, conn_id: int, transport: WSTransport, path: str) -> BybitConnection:
        return BybitConnection(conn_id, transport, path)

    def _row(self, symbol: str, native: str, trade: TapeTrade) -> str:
        self._seq[symbol] += 1 + trade.trade_id % 3  # book events take numbers between trades too
        # By hand: the id must be the tape's digits as a string, prices the tape's text.
        return (f'{{"T":{trade.ts_us // 1000},"s":"{native}","S":"{"Buy" if trade.side == "buy" else "Sell"}",'
                f'"v":"{trade.qty}","p":"{trade.price}","i":"{trade.trade_id}","BT":false,"RPI":false,'
                f'"seq":{self._seq[symbol]}}}')

    def publish(self, symbol: str, burst: list[TapeTrade]) -> None:
        receivers = [c for c in self.connections.values() if symbol in c.symbols]
        if not receivers:
            return
        native = self.tapes[symbol].generator.instrument.native
        rows = ",".join(self._row(symbol, native, t) for t in burst)
        frame = (f'{{"topic":"{TOPIC}{native}","type":"snapshot","ts":{time.time_ns() // 1_000_000},'
                 f'"data":[{rows}]}}')
        self.send_trade_frame(symbol, burst, [(conn, frame) for conn in receivers])

    def on_timer(self, conn: BybitConnection, now: float) -> None:
        idle = self.options.client_idle_close_s
        if now - max(conn.last_ping, conn.last_sent) >= idle:
            conn.close(WSCloseCode.POLICY_VIOLATION, "no ping and no data")

    def on_text(self, conn: BybitConnection, text: str) -> None:
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            self._reply(conn, "", False, "Invalid request", None)
            return
        op = request.get("op")
        req_id = request.get("req_id")
        if op == "ping":
            conn.last_ping = time.monotonic()
            self._reply(conn, "ping", True, "pong", req_id)
        elif op in ("subscribe", "unsubscribe"):
            self._subscription(conn, op, request.get("args"), req_id)
        else:
            self._reply(conn, str(op), False, f"Invalid op: {op}", req_id)

    def _subscription(self, conn: BybitConnection, op: str, args: Any, req_id: Any) -> None:
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            self._reply(conn, op, False, "params error: args is empty or invalid", req_id)
            return
        if len(args) > MAX_ARGS:
            self._reply(conn, op, False, f"args size >{MAX_ARGS}", req_id)
            return
        symbols = []
        for topic in args:
            symbol = self.by_native.get(topic[len(TOPIC):]) if topic.startswith(TOPIC) else None
            if symbol is None:
                self._reply(conn, op, False, f"error:handler not found,topic:{topic}", req_id)
                return
            symbols.append(symbol)
        if op == "subscribe":
            conn.symbols.update(symbols)
        else:
            conn.symbols.difference_update(symbols)
        self._reply(conn, op, True, "", req_id)

    def _reply(self, conn: BybitConnection, op: str, success: bool, message: str, req_id: Any) -> None:
        reply: dict[str, Any] = {"success": success, "ret_msg": message, "conn_id": conn.bybit_id,
                                 "req_id": req_id if isinstance(req_id, str) else "", "op": op}
        self.send(conn, orjson.dumps(reply).decode())

    def rest_api(self, limit: RestLimit) -> BybitRest:
        return BybitRest(self, limit)


# --- REST ------------------------------------------------------------------------------------------
def _answer(ret_code: int, message: str, result: Any = None) -> Response:
    return json_response({"retCode": ret_code, "retMsg": message, "result": result if result is not None else {},
                          "retExtInfo": {}, "time": time.time_ns() // 1_000_000})


def _row(native: str, trade: TapeTrade) -> dict[str, Any]:
    return {"execId": str(trade.trade_id), "symbol": native, "price": trade.price, "size": trade.qty,
            "side": "Buy" if trade.side == "buy" else "Sell", "time": str(trade.ts_us // 1000),
            "isBlockTrade": False}


class BybitRest(RestApi):
    """``/v5/market/recent-trade`` over the tapes."""

    venue: BybitServer

    def routes(self) -> list[Route]:
        return [Route("/v5/market/recent-trade", self.guarded(self.recent_trade))]

    def failure(self, status: int, wait_s: float | None) -> Response:
        if status == 429:
            return _answer(10006, "Too many visits!")
        if status == 403:
            return Response("access too frequent", 403)
        return json_response({"retCode": 10016, "retMsg": "Internal server error."}, status)

    def rate_limited(self, wait_s: float) -> Response:
        return self.failure(403, None)

    async def recent_trade(self, request: Request) -> Response:
        params = request.query_params
        if params.get("category", "") != "spot":
            raise Rejected(_answer(10001, "params error: Category is invalid"))
        native = params.get("symbol", "")
        symbol = self.venue.by_native.get(native)
        if symbol is None:
            raise Rejected(_answer(10001, "params error: Symbol Invalid" if native else "params error: symbol invalid"))
        limit_text = params.get("limit", str(MAX_LIMIT))
        if not (limit_text.isascii() and limit_text.isdigit()) or len(limit_text) > 9:
            raise Rejected(_answer(10001, "params error: limit invalid"))
        limit = min(max(int(limit_text), 1), MAX_LIMIT)
        trades = self.venue.tapes[symbol].trades[-limit:]
        rows = [_row(native, t) for t in reversed(trades)]  # newest first
        return _answer(0, "OK", {"category": "spot", "list": rows})


SERVER = BybitServer
