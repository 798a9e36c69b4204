"""Gemini market data v2 WebSocket (``/v2/marketdata``) and REST ``/v1/trades/{symbol}``, as documented.

WebSocket (docs.gemini.com websocket/market-data/v2 "About", "Level 2 Data"; the 2021 recording):

* ``{"type":"subscribe","subscriptions":[{"name":"l2","symbols":["BTCUSD",...]}]}``; per symbol the
  answer is the first ``l2_updates``: ``{"type":"l2_updates","symbol":..,"changes":[[side, price,
  qty], ...],"trades":[<the last 50 trades, newest first>],"auction_events":[]}``. Then
  ``{"type":"trade","symbol","event_id","timestamp"(ms),"price","quantity","side"(taker),"tid"}``
  per trade and ``l2_updates`` with ``changes`` only for the book (one after each burst here);
  ``unsubscribe`` takes the same form;
* ``{"type":"heartbeat","timestamp":ms}`` every 5 s on every connection (the recording's spacing),
  whatever the traffic; ``VenueOptions.heartbeat_interval_s`` None turns them off, ``heartbeat_s``
  on the server shortens them;
* not documented, made up here: a request that is not a subscription, an unknown name or symbol is
  answered ``{"result":"error","reason":"InvalidJson"|"InvalidSubscription"|"InvalidSymbol",
  "message":..}`` (Gemini's REST ``ErrorResponse``); no idle rule; no shutdown notice (a shutdown
  closes with 1001).

Ids: ``tid`` is the tape's id (which counts each market's trades; real tids are exchange-wide: the feed
relies on neither); ``event_id`` is one counter for the whole server, as Gemini's event ids are.

REST (developer.gemini.com "List Trades", docs.gemini.com "Timestamps", "Rate Limits"):
``GET /v1/trades/{symbol}?timestamp=&since=&since_tid=&limit_trades=&include_breaks=``, rows
``{timestamp, timestampms, tid, price, amount, exchange, type}`` newest first. With ``since_tid`` the
oldest ``limit_trades`` trades with a larger tid; else with ``timestamp`` (``since`` its alias; ms,
or seconds below 1e11) the oldest ones strictly after it; with neither the newest. ``limit_trades``
1..500 (default 50; more is served as 500). Trades older than ``retention_s`` (seven days) are not
served. Errors ``{"result":"error","reason":..,"message":..}``: an unknown symbol 400
``InvalidSymbol`` (the status is a guess), a bad number 400 ``InvalidTimestampInPayload`` /
``InvalidQuantity``; rate limit 120 a minute, 429 ``RateLimit``.
"""

from __future__ import annotations

import itertools
import time
from bisect import bisect_right
from decimal import Decimal
from typing import Any

import orjson
from picows import WSTransport
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticklake.simulator.rest import Rejected, RestApi, RestLimit, json_response, retry_after
from ticklake.simulator.tape import Instrument, TapeTrade, plain
from ticklake.simulator.venue import SimConnection, VenueServer

PATH = "/v2/marketdata"
L2 = "l2"
SNAPSHOT_TRADES = 50  # "the last 50 trades"
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
_SECONDS_BELOW = 10**11  # a timestamp below this is seconds ("Timestamps": seconds or milliseconds)


class GeminiConnection(SimConnection):
    def __init__(self, conn_id: int, transport: WSTransport, path: str) -> None:
        super().__init__(conn_id, transport, path)
        self.last_heartbeat = self.connected_at


def _error(reason: str, message: str) -> str:
    return orjson.dumps({"result": "error", "reason": reason, "message": message}).decode()


class GeminiServer(VenueServer[GeminiConnection]):
    exchange = "gemini"
    base_path = PATH
    time_resolution_us = 1000  # trade times are milliseconds
    default_rest_limit = RestLimit(per_second=2.0, burst=5)  # 120 a minute, five more in a burst
    heartbeat_s = 5.0

    @staticmethod
    def render_price_qty(price: Decimal, qty: Decimal, instrument: Instrument) -> tuple[str, str]:
        # The recording's texts are the shortest: "302.53", "0.8", "14300".
        return plain(price), plain(qty)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._event_ids = itertools.count(45_000_000_000)

    def accepts(self, path: str, query: str) -> bool:
        return path.rstrip("/") == PATH

    def new_connection(self, conn_id: int, transport: WSTransport, path: str) -> GeminiConnection:
        return GeminiConnection(conn_id, transport, path)

    def _trade(self, native: str, trade: TapeTrade) -> str:
        # By hand: prices must stay the tape's text.
        return (f'{{"type":"trade","symbol":"{native}","event_id":{next(self._event_ids)},'
                f'"timestamp":{trade.ts_us // 1000},"price":"{trade.price}","quantity":"{trade.qty}",'
                f'"side":"{trade.side}","tid":{trade.trade_id}}}')

    def publish(self, symbol: str, burst: list[TapeTrade]) -> None:
        receivers = [c for c in self.connections.values() if symbol in c.symbols]
        if not receivers:
            return
        native = self.tapes[symbol].generator.instrument.native
        for trade in burst:  # one message per trade
            frame = self._trade(native, trade)
            self.send_trade_frame(symbol, [trade], [(conn, frame) for conn in receivers])
        last = burst[-1]
        book = orjson.dumps({"type": "l2_updates", "symbol": native,
                             "changes": [["sell" if last.side == "buy" else "buy", last.price, "0"]]}).decode()
        for conn in receivers:  # the level the taker ate is gone: a book change, not a trade frame
            self.send(conn, book)

    def on_timer(self, conn: GeminiConnection, now: float) -> None:
        if self.options.heartbeat_interval_s is None:
            return
        if now - conn.last_heartbeat >= self.heartbeat_s:
            conn.last_heartbeat = now
            self.send(conn, f'{{"type":"heartbeat","timestamp":{time.time_ns() // 1_000_000}}}')

    def on_text(self, conn: GeminiConnection, text: str) -> None:
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            request = None
        kind = request.get("type") if isinstance(request, dict) else None
        subscriptions = request.get("subscriptions") if isinstance(request, dict) else None
        if kind not in ("subscribe", "unsubscribe") or not isinstance(subscriptions, list) or not subscriptions:
            self.send(conn, _error("InvalidJson", f"Could not parse request: {text[:200]}"))
            return
        for subscription in subscriptions:
            name = subscription.get("name") if isinstance(subscription, dict) else None
            natives = subscription.get("symbols") if isinstance(subscription, dict) else None
            if name != L2 or not isinstance(natives, list) or not natives:
                self.send(conn, _error("InvalidSubscription", f"Invalid subscription: {str(subscription)[:200]}"))
                continue
            for native in natives:
                symbol = self.by_native.get(native.upper()) if isinstance(native, str) else None
                if symbol is None:
                    self.send(conn, _error("InvalidSymbol", f"Invalid symbol: {str(native)[:50]}"))
                elif kind == "unsubscribe":
                    conn.symbols.discard(symbol)
                elif symbol not in conn.symbols:
                    # Registering and taking the snapshot in one step of the event loop: no trade falls
                    # between the snapshot and the first live trade, and none is in both.
                    conn.symbols.add(symbol)
                    self.send(conn, self._initial(symbol))

    def _initial(self, symbol: str) -> str:
        native = self.tapes[symbol].generator.instrument.native
        recent = self.snapshot(symbol, SNAPSHOT_TRADES)
        price = recent[-1].price if recent else str(self.tapes[symbol].generator.instrument.ref_price)
        rows = ",".join(self._trade(native, trade) for trade in reversed(recent))  # newest first
        return (f'{{"type":"l2_updates","symbol":"{native}","changes":[["buy","{price}","1"],["sell","{price}","1"]],'
                f'"trades":[{rows}],"auction_events":[]}}')

    def rest_api(self, limit: RestLimit) -> GeminiRest:
        return GeminiRest(self, limit)


# --- REST ------------------------------------------------------------------------------------------
def _rest_error(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"result": "error", "reason": reason, "message": message}, status, headers)


def _row(trade: TapeTrade) -> dict[str, Any]:
    return {"timestamp": trade.ts_us // 1_000_000, "timestampms": trade.ts_us // 1000, "tid": trade.trade_id,
            "price": trade.price, "amount": trade.qty, "exchange": "gemini", "type": trade.side}


class GeminiRest(RestApi):
    """``/v1/trades/{symbol}`` over the tapes."""

    venue: GeminiServer
    retention_s = 7 * 86_400.0  # "limited to retrieving seven calendar days of data"

    def routes(self) -> list[Route]:
        return [Route("/v1/trades/{symbol}", self.guarded(self.trades))]

    def failure(self, status: int, wait_s: float | None) -> Response:
        if status == 429:
            return _rest_error(429, "RateLimit", "Requests were made too frequently", retry_after(wait_s))
        return _rest_error(status, "System", "We are experiencing technical issues", retry_after(wait_s))

    @staticmethod
    def _number(request: Request, name: str, reason: str) -> int | None:
        text = request.query_params.get(name)
        if text is None or text == "":
            return None
        if not (text.isascii() and text.isdigit()) or len(text) > 19:
            raise Rejected(_rest_error(400, reason, f"Invalid {name}: {text[:50]}"))
        return int(text)

    async def trades(self, request: Request) -> Response:
        native = str(request.path_params["symbol"]).upper()
        symbol = self.venue.by_native.get(native)
        if symbol is None:
            raise Rejected(_rest_error(400, "InvalidSymbol", f"Supplied value '{native[:50]}' is not a valid symbol"))
        limit = self._number(request, "limit_trades", "InvalidQuantity")
        if limit is not None and limit < 1:
            raise Rejected(_rest_error(400, "InvalidQuantity", "limit_trades must be positive"))
        count = DEFAULT_LIMIT if limit is None else min(limit, MAX_LIMIT)
        since_tid = self._number(request, "since_tid", "InvalidTradeId")
        stamp = self._number(request, "timestamp", "InvalidTimestampInPayload")
        if stamp is None:
            stamp = self._number(request, "since", "InvalidTimestampInPayload")
        trades = self.venue.tapes[symbol].trades
        oldest_ms = int((time.time() - self.retention_s) * 1000)
        first = bisect_right(trades, oldest_ms * 1000 - 1, key=lambda t: t.ts_us)  # retention
        if since_tid is not None:
            lo = max(first, bisect_right(trades, since_tid, key=lambda t: t.trade_id))
            page = trades[lo:lo + count]
        elif stamp is not None:
            after_ms = stamp * 1000 if stamp < _SECONDS_BELOW else stamp
            lo = max(first, bisect_right(trades, after_ms * 1000 + 999, key=lambda t: t.ts_us))
            page = trades[lo:lo + count]
        else:
            page = trades[max(first, len(trades) - count):]
        return json_response([_row(trade) for trade in reversed(page)])


SERVER = GeminiServer
