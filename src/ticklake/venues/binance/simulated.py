"""Binance spot market streams, as documented in binance-spot-api-docs ``web-socket-streams.md``.

* Raw streams at ``/ws/<stream>[/<stream>...]`` (payload as is), combined streams at
  ``/stream?streams=<s1>/<s2>`` (each event wrapped as ``{"stream": name, "data": payload}``).
* Live control messages: SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY/GET_PROPERTY
  ``combined``; success is ``{"result": null, "id": N}``; errors use the documented codes.
* ``<symbol>@trade`` payload ``{e, E, s, t, p, q, T, m, M}``: one event per trade, prices and
  quantities as 8-decimal strings, ``m`` = "is the buyer the market maker" (true: the taker sold).
* The server pings every 20 s and disconnects when a ping's payload is not echoed back within a
  minute; unsolicited pongs do not count. More than 5 incoming messages a second (pings, pongs and
  JSON all count) closes the connection. A connection is valid for 24 hours.
* ``serverShutdown`` precedes a shutdown: ``{"e":"serverShutdown","E":ms}`` on raw streams,
  ``{"stream":"!serverShutdown","data":{...}}`` on combined streams.

REST (binance-spot-api-docs ``rest-api.md``; developers.binance.com market-data-endpoints, limits):

* ``GET /api/v3/historicalTrades?symbol=&fromId=&limit=`` (weight 25; limit default 500, max 1000):
  trades ascending from ``fromId``, or the most recent ``limit`` without it;
  ``GET /api/v3/trades?symbol=&limit=`` (weight 25): the most recent ``limit``. Rows
  ``{id, price, qty, quoteQty, time (ms), isBuyerMaker, isBestMatch}``, ``id`` = the stream's ``t``.
* Every response carries ``X-MBX-USED-WEIGHT-1M``; past 6000 weight a minute: 429 with
  ``Retry-After`` and ``{"code":-1003,...}``; failing to back off: 418 (an IP ban), ``Retry-After``
  until it ends. Errors are ``{"code": <negative>, "msg": ...}`` with 400 (-1121 "Invalid symbol.").
* Not verified: what Binance does with ``limit`` above 1000 (clamped here) or below 1 (1 here).
"""

from __future__ import annotations

import time
from collections import deque
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from picows import WSCloseCode, WSTransport
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticklake.simulator.rest import Rejected, RestApi, RestLimit, index_of_id, json_response, retry_after
from ticklake.simulator.tape import Instrument, TapeTrade
from ticklake.simulator.venue import SimConnection, VenueServer


class BinanceConnection(SimConnection):
    def __init__(self, conn_id: int, transport: WSTransport, path: str) -> None:
        super().__init__(conn_id, transport, path)
        self.combined = False
        self.streams: list[str] = []  # in subscription order, as LIST_SUBSCRIPTIONS reports them
        self.pings: dict[bytes, float] = {}  # outstanding ping payload -> monotonic send time
        self.next_ping_at = 0.0
        self.incoming: deque[float] = deque()


class BinanceServer(VenueServer[BinanceConnection]):
    exchange = "binance"
    time_resolution_us = 1000  # Binance trade times are milliseconds

    @staticmethod
    def render_price_qty(price: Decimal, qty: Decimal, instrument: Instrument) -> tuple[str, str]:
        # Binance pads both to 8 decimals: "64123.10000000", "0.00120000".
        return f"{price:.8f}", f"{qty:.8f}"
    default_max_connection_age_s = 24 * 3600.0
    default_rest_limit = RestLimit(weight_per_window=6000, window_s=60.0)
    announces_shutdown = True

    def accepts(self, path: str, query: str) -> bool:
        return path == "/stream" or path == "/ws" or path.startswith("/ws/")

    def new_connection(self, conn_id: int, transport: WSTransport, path: str) -> BinanceConnection:
        return BinanceConnection(conn_id, transport, path)

    def on_open(self, conn: BinanceConnection) -> None:
        parts = urlsplit(conn.path)
        if parts.path == "/stream":
            conn.combined = True
            names = parse_qs(parts.query).get("streams", [""])[0]
        else:
            names = parts.path[len("/ws/"):] if parts.path.startswith("/ws/") else ""
        self._subscribe(conn, [name for name in names.split("/") if name])
        conn.next_ping_at = conn.connected_at + self.options.ping_interval_s

    # --- streams -------------------------------------------------------------------------------
    def _symbol_of(self, stream: str) -> str | None:
        # Stream names are lowercase; "BTCUSDT@trade" is not a stream Binance serves.
        native, _, kind = stream.partition("@")
        if kind != "trade" or native != native.lower():
            return None
        return self.by_native.get(native.upper())

    def _subscribe(self, conn: BinanceConnection, streams: list[str]) -> None:
        for stream in streams:
            if stream not in conn.streams:
                conn.streams.append(stream)
            symbol = self._symbol_of(stream)
            if symbol is not None:
                conn.symbols.add(symbol)

    def _unsubscribe(self, conn: BinanceConnection, streams: list[str]) -> None:
        for stream in streams:
            if stream in conn.streams:
                conn.streams.remove(stream)
            symbol = self._symbol_of(stream)
            if symbol is not None:
                conn.symbols.discard(symbol)

    def publish(self, symbol: str, burst: list[TapeTrade]) -> None:
        receivers = [c for c in self.connections.values() if symbol in c.symbols]
        if not receivers:
            return
        native = self.tapes[symbol].generator.instrument.native
        stream = f"{native.lower()}@trade"
        event_ms = time.time_ns() // 1_000_000
        for trade in burst:
            data = orjson.dumps({
                "e": "trade", "E": max(event_ms, trade.ts_us // 1000), "s": native, "t": trade.trade_id,
                "p": trade.price, "q": trade.qty, "T": trade.ts_us // 1000,
                "m": trade.side == "sell", "M": True,
            })
            raw = data.decode()
            wrapped = orjson.dumps({"stream": stream, "data": orjson.Fragment(data)}).decode()
            self.send_trade_frame(symbol, [trade], [(conn, wrapped if conn.combined else raw) for conn in receivers])

    def announce_shutdown(self, conns: list[BinanceConnection]) -> None:
        data = orjson.dumps({"e": "serverShutdown", "E": time.time_ns() // 1_000_000})
        wrapped = orjson.dumps({"stream": "!serverShutdown", "data": orjson.Fragment(data)}).decode()
        for conn in conns:
            self.send(conn, wrapped if conn.combined else data.decode())

    def rest_api(self, limit: RestLimit) -> BinanceRest:
        return BinanceRest(self, limit)

    # --- control messages ----------------------------------------------------------------------
    def _count_incoming(self, conn: BinanceConnection) -> bool:
        now = time.monotonic()
        conn.incoming.append(now)
        while conn.incoming and conn.incoming[0] <= now - 1.0:
            conn.incoming.popleft()
        if len(conn.incoming) > self.options.max_incoming_per_s:
            conn.close(WSCloseCode.POLICY_VIOLATION, "Too many requests")
            return False
        return True

    def on_ping(self, conn: BinanceConnection, payload: bytes) -> None:
        self._count_incoming(conn)

    def on_pong(self, conn: BinanceConnection, payload: bytes) -> None:
        if not self._count_incoming(conn):
            return
        sent_at = conn.pings.get(payload)
        if sent_at is None:
            return  # unsolicited, or a wrong payload: does not prevent the disconnect
        for key, at in list(conn.pings.items()):
            if at <= sent_at:
                del conn.pings[key]

    def on_timer(self, conn: BinanceConnection, now: float) -> None:
        if conn.pings and min(conn.pings.values()) <= now - self.options.pong_timeout_s:
            conn.close(WSCloseCode.POLICY_VIOLATION, "Pong timeout")
            return
        if now >= conn.next_ping_at:
            payload = str(time.time_ns() // 1_000_000).encode()
            conn.pings[payload] = now
            conn.transport.send_ping(payload)
            conn.next_ping_at = now + self.options.ping_interval_s

    def on_text(self, conn: BinanceConnection, text: str) -> None:
        if not self._count_incoming(conn):
            return
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self._reply(conn, {"code": 3, "msg": f"Invalid JSON: {exc}"})
            return
        if not isinstance(request, dict) or "method" not in request:
            self._reply(conn, {"code": 2, "msg": "Invalid request: missing field `method`"})
            return
        request_id = request.get("id")
        if request_id is not None and not isinstance(request_id, int | str):
            self._reply(conn, {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"})
            return
        method = request["method"]
        params = request.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                self._reply(conn, {"code": 2, "msg": "Invalid request: invalid params", "id": request_id})
                return
            (self._subscribe if method == "SUBSCRIBE" else self._unsubscribe)(conn, params)
            self._reply(conn, {"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            self._reply(conn, {"result": list(conn.streams), "id": request_id})
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            self._property(conn, method, params, request_id)
        else:
            self._reply(conn, {"code": 2, "msg": f"Invalid request: unknown variant {method}, expected one of "
                               "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"})

    def _property(self, conn: BinanceConnection, method: str, params: object, request_id: object) -> None:
        if not isinstance(params, list) or not params or not isinstance(params[0], str):
            self._reply(conn, {"code": 2, "msg": "Invalid request: property name must be a string"})
        elif params[0] != "combined":
            self._reply(conn, {"code": 0, "msg": "Unknown property", "id": request_id})
        elif method == "GET_PROPERTY":
            self._reply(conn, {"result": conn.combined, "id": request_id})
        elif len(params) != 2 or not isinstance(params[1], bool):
            self._reply(conn, {"code": 1, "msg": "Invalid value type: expected Boolean"})
        else:
            conn.combined = params[1]
            self._reply(conn, {"result": None, "id": request_id})

    def _reply(self, conn: BinanceConnection, message: dict[str, object]) -> None:
        self.send(conn, orjson.dumps(message).decode())


# --- REST ------------------------------------------------------------------------------------------
TRADES_WEIGHT = 25  # both /api/v3/trades and /api/v3/historicalTrades (rest-api.md)
_MISSING_SYMBOL = {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."}
_INVALID_SYMBOL = {"code": -1121, "msg": "Invalid symbol."}


def _illegal(name: str) -> dict[str, Any]:
    return {"code": -1100, "msg": f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."}


def _quote_qty(trade: TapeTrade) -> str:
    return format((Decimal(trade.price) * Decimal(trade.qty)).normalize(), "f")


def _row(trade: TapeTrade) -> dict[str, Any]:
    return {"id": trade.trade_id, "price": trade.price, "qty": trade.qty, "quoteQty": _quote_qty(trade),
            "time": trade.ts_us // 1000, "isBuyerMaker": trade.side == "sell", "isBestMatch": True}


class BinanceRest(RestApi):
    """``/api/v3/historicalTrades`` and ``/api/v3/trades`` over the tapes, with Binance's weights."""

    venue: BinanceServer

    def routes(self) -> list[Route]:
        return [Route("/api/v3/historicalTrades", self.guarded(self.historical_trades, TRADES_WEIGHT)),
                Route("/api/v3/trades", self.guarded(self.recent_trades, TRADES_WEIGHT))]

    def extra_headers(self) -> dict[str, str]:
        return {"X-MBX-USED-WEIGHT-1M": str(self.weights.used_now() if self.weights is not None else 0)}

    def failure(self, status: int, wait_s: float | None) -> Response:
        if status == 429:
            body = {"code": -1003, "msg": f"Too much request weight used; current limit is "
                    f"{self.limit.weight_per_window} request weight per 1 MINUTE. Please use the websocket "
                    "for live updates to avoid polling the API."}
        elif status == 418:
            until_ms = int((time.time() + (wait_s or 0)) * 1000)
            body = {"code": -1003, "msg": f"Way too much request weight used; IP banned until {until_ms}. "
                    "Please use the websocket for live updates to avoid bans."}
        else:
            body = {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}
        return json_response(body, status, retry_after(wait_s))

    def _trades(self, request: Request) -> list[TapeTrade]:
        native = request.query_params.get("symbol", "")
        if not native:
            raise Rejected(json_response(_MISSING_SYMBOL, 400))
        symbol = self.venue.by_native.get(native)
        if symbol is None:
            raise Rejected(json_response(_INVALID_SYMBOL, 400))
        return self.venue.tapes[symbol].trades

    @staticmethod
    def _int(request: Request, name: str) -> int | None:
        text = request.query_params.get(name)
        if text is None or text == "":
            return None
        if not (text.isascii() and text.isdigit()) or len(text) > 20:
            raise Rejected(json_response(_illegal(name), 400))
        return int(text)

    def _limit(self, request: Request) -> int:
        value = self._int(request, "limit")
        return 500 if value is None else min(max(value, 1), 1000)

    async def historical_trades(self, request: Request) -> Response:
        trades = self._trades(request)
        count = self._limit(request)
        from_id = self._int(request, "fromId")
        if from_id is None:
            page = trades[-count:]
        else:
            start = index_of_id(trades, from_id)
            page = trades[start:start + count]
        return json_response([_row(t) for t in page])

    async def recent_trades(self, request: Request) -> Response:
        trades = self._trades(request)
        return json_response([_row(t) for t in trades[-self._limit(request):]])


SERVER = BinanceServer
