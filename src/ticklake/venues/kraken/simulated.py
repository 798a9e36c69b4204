"""Kraken spot WebSocket v2 (``wss://ws.kraken.com/v2``), public ``trade`` channel.

From docs.kraken.com (spot-websocket-v2: status, trade, heartbeat, ping):

* on connect: ``{"channel":"status","type":"update","data":[{system, api_version, connection_id,
  version}]}``;
* ``{"method":"subscribe","params":{"channel":"trade","symbol":[...],"snapshot":bool},"req_id":N}``
  is acknowledged per symbol with ``{"method":"subscribe","result":{channel, snapshot, symbol},
  "success":true,"time_in":..,"time_out":..}``; with ``snapshot`` the last 50 trades follow as
  ``{"channel":"trade","type":"snapshot","data":[...]}``. ``snapshot`` defaults to false here, as on
  the current trade page (the notes record pages disagreeing; clients should send it explicitly);
* updates ``{"channel":"trade","type":"update","data":[{symbol, side, price, qty, ord_type,
  trade_id, timestamp}]}``, with ``price``/``qty`` as JSON *numbers*, ``side`` the taker's side,
  ``trade_id`` sequential per book and ``timestamp`` RFC 3339 with microseconds;
* ``{"channel":"heartbeat"}`` about once a second when nothing else was sent, once subscribed;
* ``{"method":"ping","req_id":N}`` answered with ``{"method":"pong","req_id":N,"time_in","time_out"}``.

REST (docs.kraken.com/api/docs/rest-api/get-recent-trades; support article 218198197):

* ``GET /0/public/Trades?pair=&since=&count=`` -> ``{"error":[],"result":{PAIR:[[price, volume,
  time, "b"|"s", "m"|"l", misc, trade_id], ...],"last":"<ns>"}}``: price and volume strings, time a
  JSON number of epoch seconds, ``trade_id`` the id WS v2 carries; ``count`` at most 1000 (the
  default); without ``since`` the most recent ``count`` trades. ``since`` and ``last`` are epoch
  nanoseconds; ``since`` also accepts seconds (a value below 1e12, or with a decimal point).
* Trades are strictly after ``since``, ascending. Trades here have microsecond times and several
  fills of one order share one: each trade's cursor is its time in ns plus its position among the
  trades of that microsecond (0, 1, ...), so ``last`` -> ``since`` pages never lose nor repeat one.
* ``pair`` is the WebSocket v2 spelling (``BTC/USD``) and keys ``result``; the real API's own
  names (``XBTUSD`` -> ``XXBTZUSD``) are not served. Unknown pair: ``EQuery:Unknown asset pair``.
* Rate limit: HTTP 200 with ``{"error":["EGeneral:Too many requests"]}`` (``RestLimit.error_status``
  switches it to 429). The limit is a token bucket, 1 request/s refill and 15 in a burst: Kraken
  documents about one public request a second per IP; the burst size is not documented.
* Real Kraken pads prices to the pair's decimals (``"30243.40000"``); here they are the tape's text,
  which is the WS v2 number token, so REST and WS agree character for character.
"""

from __future__ import annotations

import random
import time
from bisect import bisect_left, bisect_right
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from picows import WSTransport
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticklake.simulator.rest import Rejected, RestApi, RestLimit, json_response, retry_after
from ticklake.simulator.tape import Instrument, TapeTrade, plain
from ticklake.simulator.venue import SimConnection, VenueServer, now_us, rfc3339_us

HEARTBEAT = '{"channel":"heartbeat"}'


def ord_type_of(trade: TapeTrade) -> str:
    """The taker's order type, derived from the id so WS and REST agree and runs reproduce."""
    return "market" if trade.trade_id % 5 == 0 else "limit"


def _trade_item(native: str, trade: TapeTrade, ord_type: str) -> str:
    # Written by hand: price and qty must be the exact number tokens of the tape, not floats.
    return (
        f'{{"symbol":"{native}","side":"{trade.side}","price":{trade.price},"qty":{trade.qty},'
        f'"ord_type":"{ord_type}","trade_id":{trade.trade_id},"timestamp":"{rfc3339_us(trade.ts_us)}"}}'
    )


class KrakenConnection(SimConnection):
    pass


class KrakenServer(VenueServer[KrakenConnection]):
    exchange = "kraken"

    @staticmethod
    def render_price_qty(price: Decimal, qty: Decimal, instrument: Instrument) -> tuple[str, str]:
        # Kraken v2 sends JSON numbers; a JSON encoder writes the shortest form.
        return plain(price), plain(qty)
    base_path = "/v2"
    default_rest_limit = RestLimit(per_second=1.0, burst=15)

    def accepts(self, path: str, query: str) -> bool:
        return path in ("/v2", "/v2/")

    def new_connection(self, conn_id: int, transport: WSTransport, path: str) -> KrakenConnection:
        return KrakenConnection(conn_id, transport, path)

    def on_open(self, conn: KrakenConnection) -> None:
        status = {"channel": "status", "type": "update", "data": [{
            "version": "2.0.10", "system": "online", "api_version": "v2",
            "connection_id": random.getrandbits(63),
        }]}
        self.send(conn, orjson.dumps(status).decode())

    def _item(self, symbol: str, trade: TapeTrade) -> str:
        native = self.tapes[symbol].generator.instrument.native
        return _trade_item(native, trade, ord_type_of(trade))

    def publish(self, symbol: str, burst: list[TapeTrade]) -> None:
        receivers = [c for c in self.connections.values() if symbol in c.symbols]
        if not receivers:
            return
        frame = '{"channel":"trade","type":"update","data":[' + ",".join(
            self._item(symbol, t) for t in burst) + "]}"
        self.send_trade_frame(symbol, burst, [(conn, frame) for conn in receivers])

    def rest_api(self, limit: RestLimit) -> KrakenRest:
        return KrakenRest(self, limit)

    def on_timer(self, conn: KrakenConnection, now: float) -> None:
        interval = self.options.heartbeat_interval_s
        if interval is not None and conn.symbols and now - conn.last_sent >= interval:
            self.send(conn, HEARTBEAT)

    def on_text(self, conn: KrakenConnection, text: str) -> None:
        time_in = rfc3339_us(now_us())
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            self._reply(conn, {"error": "Malformed request", "method": "", "success": False}, time_in, None)
            return
        method = request["method"]
        req_id = request.get("req_id")
        if method == "ping":
            self._reply(conn, {"method": "pong"}, time_in, req_id)
        elif method in ("subscribe", "unsubscribe"):
            self._subscription(conn, method, request.get("params"), time_in, req_id)
        else:
            self._reply(conn, {"error": f"Method not found: {method}", "method": method, "success": False},
                        time_in, req_id)

    def _subscription(self, conn: KrakenConnection, method: str, params: Any, time_in: str,
                      req_id: Any) -> None:
        if not isinstance(params, dict) or params.get("channel") != "trade":
            channel = params.get("channel") if isinstance(params, dict) else None
            self._reply(conn, {"error": f"Channel not supported: {channel}", "method": method,
                               "success": False}, time_in, req_id)
            return
        symbols = params.get("symbol")
        if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
            self._reply(conn, {"error": "Missing or invalid symbol", "method": method, "success": False},
                        time_in, req_id)
            return
        snapshot = params.get("snapshot", False) is True
        for native in symbols:
            symbol = self.by_native.get(native)
            if symbol is None:
                self._reply(conn, {"error": f"Currency pair not supported {native}", "method": method,
                                   "success": False, "symbol": native}, time_in, req_id)
                continue
            if method == "unsubscribe":
                conn.symbols.discard(symbol)
                self._reply(conn, {"method": method, "result": {"channel": "trade", "symbol": native},
                                   "success": True}, time_in, req_id)
                continue
            # Registering and taking the snapshot in one step of the event loop: no trade can fall
            # between the snapshot and the first update, and none can be in both.
            conn.symbols.add(symbol)
            self._reply(conn, {"method": method, "result": {"channel": "trade", "snapshot": snapshot,
                                                           "symbol": native},
                               "success": True}, time_in, req_id)
            if snapshot:
                trades = self.snapshot(symbol, self.options.snapshot_size)
                self.send(conn, '{"channel":"trade","type":"snapshot","data":[' + ",".join(
                    self._item(symbol, t) for t in trades) + "]}")

    def _reply(self, conn: KrakenConnection, message: dict[str, Any], time_in: str, req_id: Any) -> None:
        message["time_in"] = time_in
        message["time_out"] = rfc3339_us(time.time_ns() // 1000)
        if req_id is not None:
            message["req_id"] = req_id
        self.send(conn, orjson.dumps(message).decode())


# --- REST ------------------------------------------------------------------------------------------
_NS_PER_S = 10**9


def _error(message: str) -> Response:
    return json_response({"error": [message]})


def parse_since(text: str) -> int:
    """``since`` as epoch nanoseconds: digits of ns, or seconds (below 1e12, or with a fraction)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(text) from None
    if not value.is_finite() or value < 0:
        raise ValueError(text)
    if "." in text or value < 10**12:
        return int(value * _NS_PER_S)
    return int(value)


def cursor_of(trades: list[TapeTrade], index: int) -> int:
    """The ns cursor of ``trades[index]``: its µs time * 1000 + its rank among trades of that µs."""
    ts_us = trades[index].ts_us
    rank = index - bisect_left(trades, ts_us, hi=index, key=lambda t: t.ts_us)
    return ts_us * 1000 + rank


def first_after(trades: list[TapeTrade], since_ns: int) -> int:
    """Index of the first trade whose cursor is greater than ``since_ns``."""
    since_us, rank = divmod(since_ns, 1000)
    lo = bisect_left(trades, since_us, key=lambda t: t.ts_us)
    hi = bisect_right(trades, since_us, lo=lo, key=lambda t: t.ts_us)
    return min(lo + rank + 1, hi)


def _row(trade: TapeTrade) -> str:
    # By hand: the time must be a JSON number with exactly the tape's microseconds.
    seconds, micros = divmod(trade.ts_us, 1_000_000)
    side = "b" if trade.side == "buy" else "s"
    kind = "m" if ord_type_of(trade) == "market" else "l"
    return f'["{trade.price}","{trade.qty}",{seconds}.{micros:06d},"{side}","{kind}","",{trade.trade_id}]'


class KrakenRest(RestApi):
    """``/0/public/Trades`` over the tapes."""

    venue: KrakenServer

    def routes(self) -> list[Route]:
        return [Route("/0/public/Trades", self.guarded(self.trades))]

    def failure(self, status: int, wait_s: float | None) -> Response:
        message = "EGeneral:Too many requests" if status in (200, 429) else "EService:Unavailable"
        return json_response({"error": [message]}, status, retry_after(wait_s) if status >= 400 else {})

    def rate_limited(self, wait_s: float) -> Response:
        return self.failure(self.limit.error_status, None)

    async def trades(self, request: Request) -> Response:
        params = request.query_params
        pair = params.get("pair", "")
        if not pair:
            raise Rejected(_error("EGeneral:Invalid arguments"))
        symbol = self.venue.by_native.get(pair)
        if symbol is None:
            raise Rejected(_error("EQuery:Unknown asset pair"))
        count_text = params.get("count", "1000")
        if not (count_text.isascii() and count_text.isdigit()):
            raise Rejected(_error("EGeneral:Invalid arguments:count"))
        count = min(max(int(count_text), 1), 1000)
        since_text = params.get("since", "")
        trades = self.venue.tapes[symbol].trades
        if since_text:
            try:
                since_ns = parse_since(since_text)
            except ValueError:
                raise Rejected(_error("EGeneral:Invalid arguments:since")) from None
            start = first_after(trades, since_ns)
        else:
            since_ns = 0
            start = max(0, len(trades) - count)
        end = min(start + count, len(trades))
        last = cursor_of(trades, end - 1) if end > start else since_ns
        rows = ",".join(_row(trades[i]) for i in range(start, end))
        body = (f'{{"error":[],"result":{{{orjson.dumps(pair).decode()}:[{rows}],"last":"{last}"}}}}')
        return Response(body, media_type="application/json")


SERVER = KrakenServer
