"""Bitfinex v2 public WebSocket (``/ws/2``: ``trades``) and REST ``/v2/trades/{symbol}/hist``, as documented.

From docs.bitfinex.com ("WebSocket General", "Public Channels", "Configuration", "Trades"; REST "Trades"):

* on connect: ``{"event":"info","version":2,"serverId":..,"platform":{"status":1}}``;
* ``{"event":"conf","flags":F}`` answered ``{"event":"conf","status":"OK","flags":F}``; with ``SEQ_ALL``
  (65536) in F every channel message of the connection ends with its sequence number 1, 2, 3 ...
  (events do not carry one: the cryptofeed recording shows exactly that);
* ``{"event":"subscribe","channel":"trades","symbol":"tBTCUSD"}`` answered ``{"event":"subscribed",
  "channel":"trades","chanId":N,"symbol":"tBTCUSD","pair":"BTCUSD"}`` (``pair`` is the symbol without
  its ``t``), then the snapshot ``[N,[[ID,MTS,AMOUNT,PRICE],...]]`` of the last 30 trades, newest first
  (30: the recording's snapshots; the docs give no number). Refusals are ``{"event":"error","msg":..,
  "code":C,"channel":..,"symbol":..}``: 10300 (an unknown symbol: "symbol: invalid"; the message
  texts are not documented, these are made up), 10301 already subscribed, 10302 an unknown channel
  (this simulator serves ``trades`` only), 10305 past 25 channels on the connection;
  ``{"event":"unsubscribe","chanId":N}`` -> ``{"event":"unsubscribed","status":"OK","chanId":N}``;
* every trade as ``[N,"te",[ID,MTS,AMOUNT,PRICE]]`` and, right after, ``[N,"tu",[...]]`` (the real
  venue sends ``tu`` 1-2 s later); AMOUNT negative for a taker sell; numbers as JSON numbers;
* ``[N,"hb"]`` on each channel that sent nothing for ``heartbeat_s`` (15 s; tests shorten it on the
  server object); ``{"event":"ping","cid":C}`` -> ``{"event":"pong","ts":ms,"cid":C}``; an unknown event
  or a message that is not JSON -> ``{"event":"error","msg":"Unknown event","code":10000}``;
* a shutdown is announced with ``{"event":"info","code":20051,"msg":"Stopping. Please try to reconnect"}``,
  then the connection is closed.

Sequence numbers and faults. A number is taken by every channel message the server builds for a
connection, sent or not: a frame lost to a stall still took its number, and trades kept off the
sockets by ``skip_next`` take the numbers their ``te`` and ``tu`` frames would have had on every
connection subscribed to the market. So a client sees a jump where a real connection would have lost
frames. Duplicated frames repeat a number; reordered ones arrive with older numbers after newer.

Trade ids are the tape's, which count each market's trades; real Bitfinex ids are shared by all pairs.
The feed relies on neither (``Venue.ids_count_trades`` is False): making them global would need the
tape to interleave markets, for no test that needs it.

REST ``GET /v2/trades/{symbol}/hist?limit=&start=&end=&sort=``: ``limit`` 1..10000 (default 125),
``start``/``end`` epoch ms, inclusive; ``sort`` 1 oldest first, -1 (the default) newest first; the
first ``limit`` rows in that order. Rows ``[ID, MTS, AMOUNT, PRICE]``. Errors: HTTP 500 with
``["error",10020,"symbol: invalid"]`` (or ``limit``, ``start``, ``end``, ``sort``); the rate limit, 15
requests a minute, HTTP 429 with ``["error",11010,"ratelimit: error"]`` (no ``Retry-After``: none is
documented).
"""

from __future__ import annotations

import itertools
import time
import uuid
from bisect import bisect_left, bisect_right
from decimal import Decimal
from typing import Any

import orjson
from picows import WSTransport
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticklake.simulator.rest import Rejected, RestApi, RestLimit, json_response
from ticklake.simulator.tape import Instrument, TapeTrade, plain
from ticklake.simulator.venue import SimConnection, VenueServer

PATH = "/ws/2"
TRADES = "trades"
SEQ_ALL = 65536
MAX_CHANNELS = 25  # per connection ("ws-public")
SNAPSHOT_SIZE = 30
HEARTBEAT_S = 15.0
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 125


def trade_row(trade: TapeTrade) -> str:
    """``[ID,MTS,AMOUNT,PRICE]`` by hand: the amounts and prices are the tape's exact number tokens."""
    amount = trade.qty if trade.side == "buy" else f"-{trade.qty}"
    return f"[{trade.trade_id},{trade.ts_us // 1000},{amount},{trade.price}]"


class BitfinexConnection(SimConnection):
    def __init__(self, conn_id: int, transport: WSTransport, path: str) -> None:
        super().__init__(conn_id, transport, path)
        self.flags = 0
        self.sequence = 0  # the last SEQ_ALL number taken
        self.channels: dict[int, str] = {}  # chanId -> canonical symbol
        self.channel_of: dict[str, int] = {}  # canonical symbol -> chanId
        self.last_on_channel: dict[int, float] = {}  # chanId -> monotonic time of its last message
        self.hidden_seen: dict[str, int] = {}  # symbol -> hidden trades already numbered

    def numbered(self, message: str) -> str:
        """A channel message ``[...]`` with the next sequence number appended, when ``SEQ_ALL`` is on."""
        if not self.flags & SEQ_ALL:
            return message
        self.sequence += 1
        return f"{message[:-1]},{self.sequence}]"


class BitfinexServer(VenueServer[BitfinexConnection]):
    exchange = "bitfinex"
    base_path = PATH
    time_resolution_us = 1000  # MTS: milliseconds
    announces_shutdown = True
    default_rest_limit = RestLimit(per_second=0.25, burst=15)  # 15 requests a minute
    heartbeat_s = HEARTBEAT_S

    @staticmethod
    def render_price_qty(price: Decimal, qty: Decimal, instrument: Instrument) -> tuple[str, str]:
        # JSON numbers, shortest form ("65000.5", "0.0012"), as a JSON encoder writes them.
        return plain(price), plain(qty)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._chan_ids = itertools.count(17_470)  # Bitfinex's ids look like counters of the server
        self.server_id = str(uuid.uuid4())

    def accepts(self, path: str, query: str) -> bool:
        return path.rstrip("/") == PATH

    def new_connection(self, conn_id: int, transport: WSTransport, path: str) -> BitfinexConnection:
        return BitfinexConnection(conn_id, transport, path)

    def on_open(self, conn: BitfinexConnection) -> None:
        self._event(conn, {"event": "info", "version": 2, "serverId": self.server_id, "platform": {"status": 1}})

    def announce_shutdown(self, conns: list[BitfinexConnection]) -> None:
        for conn in conns:
            self._event(conn, {"event": "info", "code": 20051, "msg": "Stopping. Please try to reconnect"})

    # --- channel messages ------------------------------------------------------------------------
    def _number_hidden(self, symbol: str) -> None:
        """Trades ``skip_next`` kept off the sockets take the numbers of their te and tu frames."""
        hidden = len(self.faults.skipped.get(symbol, ()))
        for conn in self.connections.values():
            if symbol in conn.symbols:
                lost = hidden - conn.hidden_seen.get(symbol, hidden)
                if lost > 0 and conn.flags & SEQ_ALL:
                    conn.sequence += 2 * lost
            conn.hidden_seen[symbol] = hidden

    def publish(self, symbol: str, burst: list[TapeTrade]) -> None:
        self._number_hidden(symbol)
        receivers = [c for c in self.connections.values() if symbol in c.symbols]
        if not receivers:
            return
        now = time.monotonic()
        for trade in burst:  # one te per trade, then its tu
            row = trade_row(trade)
            frame = []
            for conn in receivers:
                chan_id = conn.channel_of[symbol]
                frame.append((conn, conn.numbered(f'[{chan_id},"te",{row}]')))
                conn.last_on_channel[chan_id] = now
            self.send_trade_frame(symbol, [trade], frame)
            for conn in receivers:
                self.send(conn, conn.numbered(f'[{conn.channel_of[symbol]},"tu",{row}]'))

    def on_tick(self, now: float) -> None:
        for symbol in self.tapes:
            self._number_hidden(symbol)

    def on_timer(self, conn: BitfinexConnection, now: float) -> None:
        for chan_id, last in list(conn.last_on_channel.items()):
            if now - last >= self.heartbeat_s:
                conn.last_on_channel[chan_id] = now
                self.send(conn, conn.numbered(f'[{chan_id},"hb"]'))

    # --- client messages -------------------------------------------------------------------------
    def on_text(self, conn: BitfinexConnection, text: str) -> None:
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            request = None
        event = request.get("event") if isinstance(request, dict) else None
        if event == "conf" and isinstance(request, dict):
            flags = request.get("flags")
            if isinstance(flags, int) and not isinstance(flags, bool) and flags >= 0:
                conn.flags = flags
                self._event(conn, {"event": "conf", "status": "OK", "flags": flags})
            else:
                self._event(conn, {"event": "error", "msg": "conf: invalid", "code": 10000})
        elif event == "subscribe" and isinstance(request, dict):
            self._subscribe(conn, request)
        elif event == "unsubscribe" and isinstance(request, dict):
            self._unsubscribe(conn, request.get("chanId"))
        elif event == "ping" and isinstance(request, dict):
            self._event(conn, {"event": "pong", "ts": time.time_ns() // 1_000_000, "cid": request.get("cid")})
        else:
            self._event(conn, {"event": "error", "msg": "Unknown event", "code": 10000})

    def _subscribe(self, conn: BitfinexConnection, request: dict[str, Any]) -> None:
        channel, native = request.get("channel"), request.get("symbol")
        refused: dict[str, Any] = {"event": "error", "channel": channel, "symbol": native}
        symbol = self.by_native.get(native) if isinstance(native, str) else None
        if channel != TRADES:
            self._event(conn, {**refused, "msg": "channel: unknown", "code": 10302})
        elif symbol is None:
            self._event(conn, {**refused, "msg": "symbol: invalid", "code": 10300})
        elif symbol in conn.channel_of:
            self._event(conn, {**refused, "msg": "subscribe: dup", "code": 10301})
        elif len(conn.channels) >= MAX_CHANNELS:
            self._event(conn, {**refused, "msg": "subscribe: limit", "code": 10305})
        else:
            assert isinstance(native, str)
            chan_id = next(self._chan_ids)
            conn.channels[chan_id] = symbol
            conn.channel_of[symbol] = chan_id
            conn.symbols.add(symbol)
            conn.hidden_seen[symbol] = len(self.faults.skipped.get(symbol, ()))
            self._event(conn, {"event": "subscribed", "channel": TRADES, "chanId": chan_id, "symbol": native,
                               "pair": native[1:]})
            rows = ",".join(trade_row(t) for t in reversed(self.snapshot(symbol, SNAPSHOT_SIZE)))
            conn.last_on_channel[chan_id] = time.monotonic()
            self.send(conn, conn.numbered(f"[{chan_id},[{rows}]]"))

    def _unsubscribe(self, conn: BitfinexConnection, chan_id: Any) -> None:
        symbol = conn.channels.pop(chan_id, None) if isinstance(chan_id, int) else None
        if symbol is None:
            self._event(conn, {"event": "error", "msg": "unsubscribe: invalid", "code": 10400, "chanId": chan_id})
            return
        del conn.channel_of[symbol]
        conn.last_on_channel.pop(chan_id, None)
        conn.symbols.discard(symbol)
        self._event(conn, {"event": "unsubscribed", "status": "OK", "chanId": chan_id})

    def _event(self, conn: BitfinexConnection, message: dict[str, Any]) -> None:
        self.send(conn, orjson.dumps(message).decode())

    def rest_api(self, limit: RestLimit) -> BitfinexRest:
        return BitfinexRest(self, limit)


# --- REST ------------------------------------------------------------------------------------------
def _error(code: int, message: str, status: int = 500) -> Response:
    return json_response(["error", code, message], status)


def _ms(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 15:
        raise Rejected(_error(10020, f"{name}: invalid"))
    return int(text)


class BitfinexRest(RestApi):
    """``/v2/trades/{symbol}/hist`` over the tapes."""

    venue: BitfinexServer

    def routes(self) -> list[Route]:
        return [Route("/v2/trades/{symbol}/hist", self.guarded(self.trades_hist))]

    def failure(self, status: int, wait_s: float | None) -> Response:
        if status == 429:
            return _error(11010, "ratelimit: error", 429)
        return _error(20060 if status == 503 else 10000, "maintenance" if status == 503 else "ERR_GENERIC",
                      status)

    async def trades_hist(self, request: Request) -> Response:
        native = request.path_params["symbol"]
        symbol = self.venue.by_native.get(native)
        if symbol is None:
            raise Rejected(_error(10020, "symbol: invalid"))
        limit_text = request.query_params.get("limit", str(DEFAULT_LIMIT))
        valid = limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 5
        limit = int(limit_text) if valid else 0
        if not 1 <= limit <= MAX_LIMIT:
            raise Rejected(_error(10020, "limit: invalid"))
        start, end = _ms(request, "start"), _ms(request, "end")
        sort = request.query_params.get("sort", "-1")
        if sort not in ("1", "-1"):
            raise Rejected(_error(10020, "sort: invalid"))
        trades = self.venue.tapes[symbol].trades
        lo = 0 if start is None else bisect_left(trades, start, key=lambda t: t.ts_us // 1000)
        hi = len(trades) if end is None else bisect_right(trades, end, key=lambda t: t.ts_us // 1000)
        page = trades[lo:min(hi, lo + limit)] if sort == "1" else trades[max(lo, hi - limit):hi][::-1]
        body = "[" + ",".join(trade_row(t) for t in page) + "]"
        return Response(body, 200, media_type="application/json")


SERVER = BitfinexServer
