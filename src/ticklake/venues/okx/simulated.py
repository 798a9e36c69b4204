"""OKX v5 WebSocket (``/ws/v5/business``: ``trades-all``) and REST ``history-trades``.

From www.okx.com/docs-v5 ("WebSocket API" overview, connect, subscribe, notice; "All trades channel";
"GET / Trades history"):

* ``{"op":"subscribe","args":[{"channel":"trades-all","instId":"BTC-USDT"}, ...]}`` is acknowledged per
  argument with ``{"event":"subscribe","arg":{...},"connId":"<8 hex>"}``; an unknown instrument, or
  ``trades-all`` asked on ``/ws/v5/public``, gets ``{"event":"error","code":"60018","msg":"Wrong URL or
  channel:...","connId":...}``; a message that is not a request ``60012`` "Invalid request". No
  snapshot follows a subscription.
* pushes ``{"arg":{"channel":"trades-all","instId":...},"data":[{instId, tradeId, px, sz, side,
  source, ts}]}``, one trade each ("every update contain only one trade"); ``tradeId`` and ``ts`` (ms)
  are strings, ``side`` the taker's.
* the text ``ping`` is answered ``pong``; a connection on which nothing was pushed for 30 s
  (``VenueOptions.push_timeout_s``) is closed, so a client must ping when its market is quiet.
* a shutdown (service upgrade) is announced with ``{"event":"notice","code":"64008",...}``, then the
  connection is closed.

REST ``GET /api/v5/market/history-trades?instId=&type=&after=&before=&limit=``: ``type`` 1 (default)
pages by trade id, 2 by time (ms); ``after`` gives records earlier than it, ``before`` newer ones (by id
only); ``limit`` 1..100 (default 100); rows newest first, in ``{"code":"0","msg":"","data":[...]}``.
Rate limit 20 requests per 2 s per IP: 429 with ``{"code":"50011","msg":"Too Many Requests"}``.
Not verified: the HTTP status of parameter errors (400 here) and how the close after 30 s silent is
coded (1008 here).
"""

from __future__ import annotations

import secrets
from bisect import bisect_left
from decimal import Decimal
from typing import Any

import orjson
from picows import WSCloseCode, WSTransport
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticklake.simulator.rest import Rejected, RestApi, RestLimit, index_of_id, json_response, retry_after
from ticklake.simulator.tape import Instrument, TapeTrade, plain
from ticklake.simulator.venue import SimConnection, VenueServer

BUSINESS = "/ws/v5/business"
PUBLIC = "/ws/v5/public"
ALL_TRADES = "trades-all"


class OkxConnection(SimConnection):
    def __init__(self, conn_id: int, transport: WSTransport, path: str) -> None:
        super().__init__(conn_id, transport, path)
        self.okx_conn_id = secrets.token_hex(4)


def _row(native: str, trade: TapeTrade) -> dict[str, str]:
    return {"instId": native, "tradeId": str(trade.trade_id), "px": trade.price, "sz": trade.qty,
            "side": trade.side, "source": "0", "ts": str(trade.ts_us // 1000)}


class OkxServer(VenueServer[OkxConnection]):
    exchange = "okx"
    base_path = BUSINESS
    time_resolution_us = 1000  # trade times are milliseconds
    announces_shutdown = True
    default_rest_limit = RestLimit(per_second=10.0, burst=20)  # 20 requests per 2 s

    @staticmethod
    def render_price_qty(price: Decimal, qty: Decimal, instrument: Instrument) -> tuple[str, str]:
        # OKX writes the shortest text: "30236", "30243.5", "0.0002".
        return plain(price), plain(qty)

    def accepts(self, path: str, query: str) -> bool:
        return path in (BUSINESS, PUBLIC)

    def new_connection(self, conn_id: int, transport: WSTransport, path: str) -> OkxConnection:
        return OkxConnection(conn_id, transport, path)

    def publish(self, symbol: str, burst: list[TapeTrade]) -> None:
        receivers = [c for c in self.connections.values() if symbol in c.symbols]
        if not receivers:
            return
        native = self.tapes[symbol].generator.instrument.native
        arg = {"channel": ALL_TRADES, "instId": native}
        for trade in burst:  # one trade per push
            frame = orjson.dumps({"arg": arg, "data": [_row(native, trade)]}).decode()
            self.send_trade_frame(symbol, [trade], [(conn, frame) for conn in receivers])

    def announce_shutdown(self, conns: list[OkxConnection]) -> None:
        for conn in conns:
            self._reply(conn, {"event": "notice", "code": "64008",
                               "msg": "The connection will soon be closed for a service upgrade. Please reconnect."})

    def on_timer(self, conn: OkxConnection, now: float) -> None:
        if now - conn.last_sent > self.options.push_timeout_s:
            conn.close(WSCloseCode.POLICY_VIOLATION, "No data received in 30s.")

    def on_text(self, conn: OkxConnection, text: str) -> None:
        if text == "ping":
            self.send(conn, "pong")
            return
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            request = None
        op = request.get("op") if isinstance(request, dict) else None
        args = request.get("args") if isinstance(request, dict) else None
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) or not args:
            self._reply(conn, {"event": "error", "code": "60012", "msg": f"Invalid request: {text[:200]}"})
            return
        for arg in args:
            channel = arg.get("channel") if isinstance(arg, dict) else None
            native = arg.get("instId") if isinstance(arg, dict) else None
            symbol = self.by_native.get(native) if isinstance(native, str) else None
            if channel != ALL_TRADES or symbol is None or not conn.path.startswith(BUSINESS):
                self._reply(conn, {"event": "error", "code": "60018",
                                   "msg": f"Wrong URL or channel:{channel},instId:{native} doesn't exist. Please use "
                                          "the correct URL, channel and parameters referring to API document."})
                continue
            if op == "subscribe":
                conn.symbols.add(symbol)
            else:
                conn.symbols.discard(symbol)
            self._reply(conn, {"event": op, "arg": {"channel": ALL_TRADES, "instId": native}})

    def _reply(self, conn: OkxConnection, message: dict[str, Any]) -> None:
        message["connId"] = conn.okx_conn_id
        self.send(conn, orjson.dumps(message).decode())

    def rest_api(self, limit: RestLimit) -> OkxRest:
        return OkxRest(self, limit)


# --- REST ------------------------------------------------------------------------------------------
def _error(code: str, msg: str, status: int = 200) -> Response:
    return json_response({"code": code, "msg": msg, "data": []}, status)


class OkxRest(RestApi):
    """``/api/v5/market/history-trades`` over the tapes."""

    venue: OkxServer

    def routes(self) -> list[Route]:
        return [Route("/api/v5/market/history-trades", self.guarded(self.history_trades))]

    def failure(self, status: int, wait_s: float | None) -> Response:
        if status == 429:
            body = {"code": "50011", "msg": "Too Many Requests", "data": []}
        else:
            body = {"code": "50001", "msg": "Service temporarily unavailable. Please try again later.", "data": []}
        return json_response(body, status, retry_after(wait_s))

    @staticmethod
    def _int(request: Request, name: str) -> int | None:
        text = request.query_params.get(name)
        if text is None or text == "":
            return None
        if not (text.isascii() and text.isdigit()) or len(text) > 19:
            raise Rejected(_error("51000", f"Parameter {name} error", 400))
        return int(text)

    async def history_trades(self, request: Request) -> Response:
        native = request.query_params.get("instId", "")
        if not native:
            raise Rejected(_error("50014", "Parameter instId can not be empty.", 400))
        symbol = self.venue.by_native.get(native)
        if symbol is None:
            raise Rejected(_error("51001", "Instrument ID does not exist"))
        kind = request.query_params.get("type", "1") or "1"
        if kind not in ("1", "2"):
            raise Rejected(_error("51000", "Parameter type error", 400))
        limit = self._int(request, "limit")
        count = 100 if limit is None else min(max(limit, 1), 100)
        after = self._int(request, "after")
        before = self._int(request, "before")
        trades = self.venue.tapes[symbol].trades
        if kind == "1":
            hi = len(trades) if after is None else index_of_id(trades, after)  # ids < after
            lo = 0 if before is None else index_of_id(trades, before + 1)  # ids > before
        else:
            hi = len(trades) if after is None else bisect_left(trades, after * 1000, key=lambda t: t.ts_us)
            lo = 0
            if before is not None:
                raise Rejected(_error("51000", "Parameter before error", 400))  # by id only
        if before is not None and after is None:
            page = trades[lo:min(lo + count, hi)]  # the page just newer than ``before``
        else:
            page = trades[max(lo, hi - count):hi]  # the page just older than ``after``, or the newest
        return json_response({"code": "0", "msg": "", "data": [_row(native, t) for t in reversed(page)]})


SERVER = OkxServer
