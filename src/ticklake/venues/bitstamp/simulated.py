"""Bitstamp WebSocket API v2 (``wss://ws.bitstamp.net``: ``live_trades_<market>``) and HTTP API v2
``transactions``, as documented.

From www.bitstamp.net/websocket/v2/ and www.bitstamp.net/api/ (and the cryptofeed recording of 2022):

* ``{"event":"bts:subscribe","data":{"channel":"live_trades_btcusd"}}`` is answered with
  ``{"event":"bts:subscription_succeeded","channel":"live_trades_btcusd","data":{}}``;
  ``bts:unsubscribe`` with ``bts:unsubscription_succeeded``. "Any other form of message or correct form
  of message with unexpected content will result in an error response": ``{"event":"bts:error",
  "channel":"","data":{"code":null,"message":...}}`` (the exact messages are not documented; these are
  made up). No snapshot follows a subscription;
* a trade is one event ``{"data":{"id","timestamp","amount","amount_str","price","price_str","type",
  "microtimestamp","buy_order_id","sell_order_id"},"channel":"live_trades_btcusd","event":"trade"}``:
  ``amount``/``price`` JSON floats beside the exact ``*_str`` texts, ``type`` 0 buy / 1 sell (the taker),
  the taker's order id the larger one (it came later), ``microtimestamp`` µs as a string (whole
  milliseconds, as in the recording: ``time_resolution_us``), ``timestamp`` its seconds;
* ``{"event":"bts:heartbeat"}`` is answered with ``{"event":"bts:heartbeat","channel":"","data":
  {"status":"success"}}``. The server pings nobody and closes no quiet connection (no idle rule is
  documented);
* a shutdown (maintenance) is announced with ``{"event":"bts:request_reconnect","channel":"","data":""}``
  and the connections are closed ``shutdown_grace_s`` later; the maximum connection age (90 days) is left
  to ``VenueOptions.max_connection_age_s`` (tests).

REST ``GET /api/v2/transactions/{market}/?time=minute|hour|day`` (default hour): every trade of the last
minute, hour or day by the server's clock, newest first, as ``[{"date","tid","amount","price","type"}]``,
all strings, ``date`` in whole seconds. Served from the whole tape (``skip_next`` trades included). An
unknown market answers 404, a ``time`` not among the three 400, both with ``{"status":"error","reason":..,
"code":..}`` (Bitstamp's error shape; the codes and texts here are made up). Rate limit: 10,000 requests per
10 minutes (and 400 a second), past which 429 with code ``400.002`` "Request rejected due to exceeded rate
limit" (the status is not documented).

Trade ids here are the tape's, which count each market's trades (and overlap between markets); real
Bitstamp ids are one sequence for all markets. The feed relies on neither (``Venue.ids_count_trades`` is
False): it reconciles breaks by time.
"""

from __future__ import annotations

from bisect import bisect_left
from decimal import Decimal
from typing import Any, Final

import orjson
from picows import WSTransport
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticklake.simulator.rest import Rejected, RestApi, RestLimit, json_response, retry_after
from ticklake.simulator.tape import Instrument, TapeTrade, render_to_tick
from ticklake.simulator.venue import SimConnection, VenueServer, now_us

CHANNEL: Final = "live_trades_"
WINDOWS_S: Final[dict[str, int]] = {"minute": 60, "hour": 3600, "day": 86_400}
_ORDER_ID_BASE: Final = 1_443_875_000_000_000  # the order ids' magnitude in the recording


class BitstampConnection(SimConnection):
    pass


def _trade_event(native: str, trade: TapeTrade) -> str:
    taker, maker = _ORDER_ID_BASE + 2 * trade.trade_id + 1, _ORDER_ID_BASE + trade.trade_id
    buy, sell = (taker, maker) if trade.side == "buy" else (maker, taker)
    # By hand, in the venue's field order: the floats beside the exact texts, the id a JSON number.
    return (f'{{"data":{{"id":{trade.trade_id},"timestamp":"{trade.ts_us // 1_000_000}",'
            f'"amount":{float(trade.qty)!r},"amount_str":"{trade.qty}","price":{float(trade.price)!r},'
            f'"price_str":"{trade.price}","type":{0 if trade.side == "buy" else 1},'
            f'"microtimestamp":"{trade.ts_us}","buy_order_id":{buy},"sell_order_id":{sell}}},'
            f'"channel":"{CHANNEL}{native}","event":"trade"}}')


class BitstampServer(VenueServer[BitstampConnection]):
    exchange = "bitstamp"
    base_path = ""  # wss://ws.bitstamp.net: the root
    time_resolution_us = 1000  # microtimestamps are whole milliseconds (the recording)
    announces_shutdown = True
    default_rest_limit = RestLimit(per_second=16.0, burst=400)  # 10,000 per 10 min; 400 a second at most

    @staticmethod
    def render_price_qty(price: Decimal, qty: Decimal, instrument: Instrument) -> tuple[str, str]:
        # price_str to the market's decimals ("3805.44"), amount_str with 8 decimals ("0.07920000").
        return render_to_tick(price, qty, instrument)

    def accepts(self, path: str, query: str) -> bool:
        return path in ("", "/")

    def new_connection(self, conn_id: int, transport: WSTransport, path: str) -> BitstampConnection:
        return BitstampConnection(conn_id, transport, path)

    def publish(self, symbol: str, burst: list[TapeTrade]) -> None:
        receivers = [c for c in self.connections.values() if symbol in c.symbols]
        if not receivers:
            return
        native = self.tapes[symbol].generator.instrument.native
        for trade in burst:  # one trade per event
            frame = _trade_event(native, trade)
            self.send_trade_frame(symbol, [trade], [(conn, frame) for conn in receivers])

    def announce_shutdown(self, conns: list[BitstampConnection]) -> None:
        for conn in conns:
            self._reply(conn, "bts:request_reconnect", "", "")

    def on_text(self, conn: BitstampConnection, text: str) -> None:
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            request = None
        event = request.get("event") if isinstance(request, dict) else None
        if event == "bts:heartbeat":
            self._reply(conn, "bts:heartbeat", "", {"status": "success"})
            return
        data = request.get("data") if isinstance(request, dict) else None
        channel = data.get("channel") if isinstance(data, dict) else None
        if event not in ("bts:subscribe", "bts:unsubscribe") or not isinstance(channel, str):
            self._error(conn, "Bad subscription string." if event else "Incorrect JSON format.")
            return
        symbol = self.by_native.get(channel[len(CHANNEL):]) if channel.startswith(CHANNEL) else None
        if symbol is None:
            self._error(conn, f"Bad subscription string: unknown channel {channel[:100]}.")
            return
        if event == "bts:subscribe":
            conn.symbols.add(symbol)
            self._reply(conn, "bts:subscription_succeeded", channel, {})
        else:
            conn.symbols.discard(symbol)
            self._reply(conn, "bts:unsubscription_succeeded", channel, {})

    def _error(self, conn: BitstampConnection, message: str) -> None:
        self._reply(conn, "bts:error", "", {"code": None, "message": message})

    def _reply(self, conn: BitstampConnection, event: str, channel: str, data: Any) -> None:
        self.send(conn, orjson.dumps({"event": event, "channel": channel, "data": data}).decode())

    def rest_api(self, limit: RestLimit) -> BitstampRest:
        return BitstampRest(self, limit)


# --- REST ------------------------------------------------------------------------------------------
def _error(status: int, reason: str, code: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"status": "error", "reason": reason, "code": code}, status, headers)


def _row(trade: TapeTrade) -> dict[str, str]:
    return {"date": str(trade.ts_us // 1_000_000), "tid": str(trade.trade_id), "amount": trade.qty,
            "price": trade.price, "type": "0" if trade.side == "buy" else "1"}


class BitstampRest(RestApi):
    """``/api/v2/transactions/{market}/`` over the tapes."""

    venue: BitstampServer

    def routes(self) -> list[Route]:
        return [Route("/api/v2/transactions/{market}/", self.guarded(self.transactions))]

    def failure(self, status: int, wait_s: float | None) -> Response:
        if status == 429:
            return _error(429, "Request rejected due to exceeded rate limit", "400.002", retry_after(wait_s))
        return _error(status, "Service unavailable", "500.000", retry_after(wait_s))

    async def transactions(self, request: Request) -> Response:
        native = request.path_params["market"]
        symbol = self.venue.by_native.get(native)
        if symbol is None:
            raise Rejected(_error(404, "Invalid market symbol", "404.002"))
        window = request.query_params.get("time", "hour")
        length_s = WINDOWS_S.get(window)
        if length_s is None:
            raise Rejected(_error(400, "Invalid time parameter: use minute, hour or day", "400.001"))
        trades = self.venue.tapes[symbol].trades
        start = bisect_left(trades, now_us() - length_s * 1_000_000, key=lambda t: t.ts_us)
        return json_response([_row(t) for t in reversed(trades[start:])])  # newest first


SERVER = BitstampServer
