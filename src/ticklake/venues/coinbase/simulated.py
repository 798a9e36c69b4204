"""Coinbase Advanced Trade market data WebSocket (``wss://advanced-trade-ws.coinbase.com``).

From docs.cdp.coinbase.com (advanced-trade websocket overview, channels, AsyncAPI spec):

* a client must send a ``subscribe`` within 5 s of connecting or it is disconnected;
* ``{"type":"subscribe","channel":<one channel>,"product_ids":[...]}``: one channel per message;
* every message is an envelope ``{channel, client_id, timestamp, sequence_num, events:[...]}``;
  ``sequence_num`` counts the messages of this connection (0, 1, 2, ...), across channels;
* each (un)subscribe is answered by a ``subscriptions`` message listing what is now subscribed;
* ``heartbeats`` sends ``{current_time, heartbeat_counter}`` every second; "most channels close
  within 60-90 seconds if no updates are sent" unless heartbeats are subscribed;
* ``market_trades``: a ``snapshot`` event with recent trades on subscribe, then ``update`` events
  ``{trade_id (digit string), product_id, price, size, side "BUY"|"SELL", time}``; "updates are
  collected over the last 250 ms and sent together, so an update may contain one or many trades".

The AsyncAPI spec says the production feed omits ``client_id`` and sends ``heartbeat_counter`` as
an integer; the prose docs show ``client_id: ""`` and a string counter. We send ``client_id: ""``
(as the prose docs and the brief's envelope do) and an integer counter.

Side: what ``side`` means in ``market_trades`` is not settled by Coinbase's docs (shared notes,
exchanges.md 3.4). ``SIDE_IS_MAKER`` is the convention ticklake's mapper documents; a test checks
the two agree, so the simulated taker side round-trips through the mapper.

REST is the Exchange API (``https://api.exchange.coinbase.com``), whose trade ids are the ones the
Advanced Trade socket carries (docs.cdp.coinbase.com exchange get-product-trades, pagination,
rate-limits):

* ``GET /products/{product_id}/trades?limit=&before=&after=``: rows ``{time, trade_id (int), price,
  size, side}``, newest first, ``side`` the MAKER's side ("buy" is a down-tick), ``limit`` default
  and max 1000. Without a cursor: the newest ``limit`` trades. ``after=X``: the page just older than
  X (ids < X); ``before=X``: the page just newer than X (ids > X). ``CB-BEFORE`` is the page's first
  (newest) id and ``CB-AFTER`` its last (oldest), absent on an empty page; walk back with
  ``after=<CB-AFTER>``, forward with ``before=<CB-BEFORE>``.
* Unknown product: 404 ``{"message":"NotFound"}``. Rate limit (public: 10 requests/s per IP, bursts
  up to 15, a lazy-fill token bucket): 429 ``{"message":"Public rate limit exceeded"}``.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson
from picows import WSCloseCode, WSTransport
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticklake.simulator.faults import Frame
from ticklake.simulator.rest import Rejected, RestApi, RestLimit, index_of_id, json_response, retry_after
from ticklake.simulator.tape import TapeTrade
from ticklake.simulator.venue import SimConnection, VenueOptions, VenueServer, now_us, rfc3339_us

SIDE_IS_MAKER: Final = True
"""True: ``side`` on the wire is the maker's side (a taker buy is sent as "SELL")."""

_WIRE_SIDE: Final = {"buy": "SELL", "sell": "BUY"} if SIDE_IS_MAKER else {"buy": "BUY", "sell": "SELL"}


def _timestamp(ts_us: int) -> str:
    # Coinbase stamps envelopes with nanoseconds: 2023-02-09T20:32:31.054219154Z.
    return rfc3339_us(ts_us)[:-1] + "000Z"


def _go_time(ts_us: int, uptime_s: float) -> str:
    # heartbeats' current_time is a Go time.Time string: "2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.5".
    seconds, micros = divmod(ts_us, 1_000_000)
    day = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
    return f"{day}.{micros:06d}000 +0000 UTC m=+{uptime_s:.9f}"


class CoinbaseConnection(SimConnection):
    def __init__(self, conn_id: int, transport: WSTransport, path: str) -> None:
        super().__init__(conn_id, transport, path)
        self.sequence_num = 0
        self.channels: dict[str, list[str]] = {}  # channel -> product ids, as "subscriptions" lists them
        self.heartbeat_counter = 0
        self.next_heartbeat_at = 0.0
        # Per symbol, the newest trade id this connection already has (from its snapshot), so a
        # batch collected before the subscribe does not repeat what the snapshot carried.
        self.have_upto: dict[str, int] = {}


class CoinbaseServer(VenueServer[CoinbaseConnection]):
    exchange = "coinbase"
    default_rest_limit = RestLimit(per_second=10.0, burst=15)

    def __init__(self, symbols: list[str], seed: int, trades_per_second: float, options: VenueOptions) -> None:
        super().__init__(symbols, seed, trades_per_second, options)
        self._pending: dict[str, list[TapeTrade]] = {}
        self._next_batch_at = 0.0

    def accepts(self, path: str, query: str) -> bool:
        return path in ("", "/")

    def new_connection(self, conn_id: int, transport: WSTransport, path: str) -> CoinbaseConnection:
        return CoinbaseConnection(conn_id, transport, path)

    def _envelope(self, conn: CoinbaseConnection, channel: str, events: list[Any] | str) -> str:
        # ``events`` may be pre-encoded JSON so a frame for many connections is built once.
        body = events if isinstance(events, str) else orjson.dumps(events).decode()
        head = orjson.dumps({"channel": channel, "client_id": "", "timestamp": _timestamp(now_us()),
                             "sequence_num": conn.sequence_num}).decode()
        conn.sequence_num += 1
        return head[:-1] + ',"events":' + body + "}"

    def _trades_json(self, symbol: str, trades: list[TapeTrade]) -> str:
        native = self.tapes[symbol].generator.instrument.native
        return orjson.dumps([
            {"trade_id": str(t.trade_id), "product_id": native, "price": t.price, "size": t.qty,
             "side": _WIRE_SIDE[t.side], "time": rfc3339_us(t.ts_us)}
            for t in trades
        ]).decode()

    def publish(self, symbol: str, burst: list[TapeTrade]) -> None:
        self._pending.setdefault(symbol, []).extend(burst)  # sent by on_tick, every 250 ms

    def on_tick(self, now: float) -> None:
        if now < self._next_batch_at:
            return
        self._next_batch_at = now + self.options.batch_interval_s
        pending, self._pending = self._pending, {}
        for symbol, trades in pending.items():
            receivers = [c for c in self.connections.values() if symbol in c.symbols]
            if not receivers:
                continue
            whole = '[{"type":"update","trades":' + self._trades_json(symbol, trades) + "}]"
            frame: Frame = []
            for conn in receivers:
                upto = conn.have_upto.get(symbol, -1)
                if trades[0].trade_id > upto:
                    events = whole
                else:
                    fresh = [t for t in trades if t.trade_id > upto]
                    if not fresh:
                        continue
                    events = '[{"type":"update","trades":' + self._trades_json(symbol, fresh) + "}]"
                frame.append((conn, self._envelope(conn, "market_trades", events)))
            self.send_trade_frame(symbol, trades, frame)

    def rest_api(self, limit: RestLimit) -> CoinbaseRest:
        return CoinbaseRest(self, limit)

    def on_timer(self, conn: CoinbaseConnection, now: float) -> None:
        options = self.options
        if not conn.channels:
            if now - conn.connected_at >= options.subscribe_timeout_s:
                conn.close(WSCloseCode.POLICY_VIOLATION, "subscribe not received within 5 seconds")
            return
        interval = options.heartbeat_interval_s
        if "heartbeats" in conn.channels:
            if interval is not None and now >= conn.next_heartbeat_at:
                conn.next_heartbeat_at = now + interval
                event = {"current_time": _go_time(now_us(), now - conn.connected_at),
                         "heartbeat_counter": conn.heartbeat_counter}
                conn.heartbeat_counter += 1
                self.send(conn, self._envelope(conn, "heartbeats", [event]))
        elif now - conn.last_sent >= options.idle_close_s:
            conn.close(WSCloseCode.GOING_AWAY, "no updates: subscribe to heartbeats to keep channels open")

    def on_text(self, conn: CoinbaseConnection, text: str) -> None:
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._error(conn, "malformed JSON")
            return
        if not isinstance(request, dict) or request.get("type") not in ("subscribe", "unsubscribe"):
            self._error(conn, "message type must be subscribe or unsubscribe")
            return
        channel = request.get("channel")
        if not isinstance(channel, str) or not channel:
            # The Exchange feed's "channels": [...] form is not accepted here: one channel per message.
            self._error(conn, "failure to subscribe: exactly one channel per message")
            return
        products = request.get("product_ids", [])
        if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
            self._error(conn, "failure to subscribe: product_ids must be a list of strings")
            return
        unknown = [p for p in products if p not in self.by_native]
        if unknown:
            self._error(conn, f"failure to subscribe: unknown product ids {unknown}")
            return
        if channel == "market_trades" and not products:
            self._error(conn, "failure to subscribe: market_trades requires product_ids")
            return
        if request["type"] == "subscribe":
            self._subscribe(conn, channel, products)
        else:
            self._unsubscribe(conn, channel, products)

    def _subscribe(self, conn: CoinbaseConnection, channel: str, products: list[str]) -> None:
        listed = conn.channels.setdefault(channel, [])
        new = [p for p in products if p not in listed]
        listed.extend(new)
        if channel == "heartbeats":
            if conn.next_heartbeat_at == 0.0 and self.options.heartbeat_interval_s is not None:
                conn.next_heartbeat_at = time.monotonic() + self.options.heartbeat_interval_s
        elif channel == "market_trades":
            # Registering and snapshotting in one step of the event loop: nothing falls in between.
            for native in new:
                symbol = self.by_native[native]
                conn.symbols.add(symbol)
                trades = self.snapshot(symbol, self.options.snapshot_size)
                if trades:
                    conn.have_upto[symbol] = trades[-1].trade_id
                events = '[{"type":"snapshot","trades":' + self._trades_json(symbol, trades) + "}]"
                self.send(conn, self._envelope(conn, "market_trades", events))
        self._send_subscriptions(conn)

    def _unsubscribe(self, conn: CoinbaseConnection, channel: str, products: list[str]) -> None:
        listed = conn.channels.get(channel, [])
        for native in products or list(listed):
            if native in listed:
                listed.remove(native)
            if channel == "market_trades":
                conn.symbols.discard(self.by_native[native])
        if not listed:
            conn.channels.pop(channel, None)
        self._send_subscriptions(conn)

    def _send_subscriptions(self, conn: CoinbaseConnection) -> None:
        listing = {channel: (products or [channel]) for channel, products in conn.channels.items()}
        self.send(conn, self._envelope(conn, "subscriptions", [{"subscriptions": listing}]))

    def _error(self, conn: CoinbaseConnection, message: str) -> None:
        self.send(conn, orjson.dumps({"type": "error", "message": message}).decode())


# --- REST ------------------------------------------------------------------------------------------
_MAKER_SIDE: Final = {"buy": "sell", "sell": "buy"}  # the Exchange API's side is the maker's (documented)


def _row(trade: TapeTrade) -> dict[str, Any]:
    return {"time": rfc3339_us(trade.ts_us), "trade_id": trade.trade_id, "price": trade.price,
            "size": trade.qty, "side": _MAKER_SIDE[trade.side]}


class CoinbaseRest(RestApi):
    """Exchange ``/products/{product_id}/trades`` over the tapes, with cursor pagination."""

    venue: CoinbaseServer

    def routes(self) -> list[Route]:
        return [Route("/products/{product_id}/trades", self.guarded(self.trades))]

    def failure(self, status: int, wait_s: float | None) -> Response:
        message = {429: "Public rate limit exceeded", 503: "Service Unavailable"}.get(status, "Internal server error")
        return json_response({"message": message}, status, retry_after(wait_s))

    @staticmethod
    def _int(request: Request, name: str) -> int | None:
        text = request.query_params.get(name)
        if text is None or text == "":
            return None
        if not (text.isascii() and text.isdigit()) or len(text) > 18:
            raise Rejected(json_response({"message": f"Invalid {name}"}, 400))
        return int(text)

    async def trades(self, request: Request) -> Response:
        symbol = self.venue.by_native.get(request.path_params["product_id"])
        if symbol is None:
            raise Rejected(json_response({"message": "NotFound"}, 404))
        limit = self._int(request, "limit")
        count = 1000 if limit is None else min(max(limit, 1), 1000)
        before = self._int(request, "before")
        after = self._int(request, "after")
        trades = self.venue.tapes[symbol].trades
        lo = 0 if before is None else index_of_id(trades, before + 1)  # ids > before
        hi = len(trades) if after is None else index_of_id(trades, after)  # ids < after
        if before is not None and after is None:
            page = trades[lo:min(lo + count, hi)]  # the page just newer than ``before``
        else:
            page = trades[max(lo, hi - count):hi]  # the page just older than ``after``, or the newest
        page = page[::-1]
        headers = {"CB-BEFORE": str(page[0].trade_id), "CB-AFTER": str(page[-1].trade_id)} if page else {}
        return json_response([_row(t) for t in page], headers=headers)


SERVER = CoinbaseServer
