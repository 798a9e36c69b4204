"""``/v1/stream``: live trades and candles over a WebSocket, or as Server-Sent Events (``curl -N``).

WebSocket: send ``{"op": "subscribe", "channel": "trades", "exchange": "binance", "symbol": "BTC/USDT"}``
or ``{"op": "subscribe", "channel": "candles", ..., "timeframe": "1m"}``, as many as wanted, and
``"op": "unsubscribe"`` with the same keys. Server-Sent Events: the same keys as query parameters,
one subscription per request. What is pushed, and why it equals what the warehouse serves: live.py.

Resuming without a gap: a trades subscription with ``"after"`` (the ``cursor`` of the last trades
message seen, or a ``/v1/trades`` cursor) first gets every stored trade after it, then the live flow;
a candles subscription with ``"since"`` (a time) first gets the stored candles from then on. Live
messages that arrive meanwhile wait, and what the catch-up already delivered is not sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ticklake.api.auth import KEY_PARAMETER
from ticklake.api.cursor import BadCursor, CursorSeal, is_stream_cursor
from ticklake.api.formats import stored_trade_json
from ticklake.api.live import Channel, LiveHub, Subscriber
from ticklake.api.params import market, moment, reject_unknown
from ticklake.api.responses import ApiError, error_response, shown
from ticklake.warehouse.reader import TIMEFRAMES, StoredTrade

log = logging.getLogger(__name__)

SUBSCRIPTION_KEYS = ("channel", "exchange", "symbol", "timeframe", "after", "since")
CATCH_UP_PAGE = 5000
# A resume further back than this is a download, not a catch-up: /v1/trades pages through it.
MAX_CATCH_UP_TRADES = 100_000
MAX_CATCH_UP_CANDLES = 5000
HEARTBEAT_S = 15.0
NO_HUB = ("the live stream is served by a process that ingests (`ticklake up`, or `ticklake ingest --api`); "
          "this one only reads the warehouse")


class Subscription:
    """A parsed subscribe (or unsubscribe) request; ApiError names what is wrong."""

    def __init__(self, fields: Mapping[str, Any], cursors: CursorSeal) -> None:
        params = QueryParams({k: str(v) for k, v in fields.items() if k in SUBSCRIPTION_KEYS and v is not None})
        reject_unknown(QueryParams({k: "" for k in fields if k != "op"}), SUBSCRIPTION_KEYS)
        kind = params.get("channel")
        if kind not in ("trades", "candles"):
            raise ApiError(400, f"channel {shown(kind)} is not one of: trades, candles", "channel")
        exchange, symbol = market(params)
        timeframe = params.get("timeframe", "")
        if kind == "candles":
            if timeframe not in TIMEFRAMES:
                raise ApiError(400, f"timeframe {shown(timeframe)} is not one of: {', '.join(TIMEFRAMES)}",
                               "timeframe")
        elif timeframe:
            raise ApiError(400, "timeframe is for the candles channel only", "timeframe")
        self.channel = Channel(kind, exchange, symbol, timeframe)  # type: ignore[arg-type]
        self.after: tuple[int, int] | None = None  # a /v1/trades cursor: (time, id)
        self.after_commit: tuple[int, int, int] | None = None  # a stream cursor: (committed_us, time, id)
        self.since: datetime | None = None
        if "after" in params:
            if kind != "trades":
                raise ApiError(400, "after (a trade cursor) is for the trades channel; candles take since", "after")
            try:
                if is_stream_cursor(params["after"]):
                    self.after_commit = cursors.decode_stream(exchange, symbol, params["after"])
                else:
                    self.after = cursors.decode(exchange, symbol, params["after"])
            except BadCursor as exc:
                raise ApiError(400, f"{exc}; pass the cursor of the last trades message unchanged", "after") from None
        if "since" in params:
            if kind != "candles":
                raise ApiError(400, "since (a time) is for the candles channel; trades take after", "since")
            self.since = moment(params, "since")


class StreamEndpoints:
    def __init__(self, hub: LiveHub | None) -> None:
        self.hub = hub

    def routes(self) -> list[Route | WebSocketRoute]:
        return [WebSocketRoute("/v1/stream", self.websocket), Route("/v1/stream", self.events, methods=["GET"])]

    # -- WebSocket ------------------------------------------------------------------------------------
    async def websocket(self, websocket: WebSocket) -> None:
        await websocket.accept()
        if self.hub is None:
            await websocket.close(code=1011, reason=NO_HUB[:120])
            return
        hub = self.hub
        subscriber = hub.subscriber()
        sender = asyncio.create_task(self._send(websocket, subscriber))
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                # A binary frame is read as UTF-8 text: what it says is judged like any request.
                text = message.get("text") or (message.get("bytes") or b"").decode("utf-8", "replace")
                await self._handle(hub, subscriber, text)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            hub.leave(subscriber)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _handle(self, hub: LiveHub, subscriber: Subscriber, text: str) -> None:
        try:
            request = orjson.loads(text)
            if not isinstance(request, dict):
                raise ApiError(400, 'send a JSON object such as {"op": "subscribe", "channel": "trades", '
                                    '"exchange": "binance", "symbol": "BTC/USDT"}')
            op = request.get("op")
            if op not in ("subscribe", "unsubscribe"):
                raise ApiError(400, f"op {shown(op)} is not one of: subscribe, unsubscribe", "op")
            subscription = Subscription(request, hub.cursors)
        except orjson.JSONDecodeError:
            subscriber.put(orjson.dumps({"type": "error", "error": "not JSON"}))
            return
        except ApiError as exc:
            subscriber.put(orjson.dumps({"type": "error", "error": exc.message, "parameter": exc.parameter}))
            return
        if op == "unsubscribe":
            hub.unsubscribe(subscriber, subscription.channel)
            subscriber.put(orjson.dumps({"type": "unsubscribed", **subscription.channel.describe()}))
            return
        await catch_up_and_follow(hub, subscriber, subscription)

    @staticmethod
    async def _send(websocket: WebSocket, subscriber: Subscriber) -> None:
        while True:
            message = await subscriber.queue.get()
            if not message and subscriber.dropped:
                await websocket.close(code=subscriber.close_code, reason=subscriber.dropped[:120])
                return
            await websocket.send_text(message.decode())

    # -- Server-Sent Events ---------------------------------------------------------------------------
    async def events(self, request: Request) -> Response:
        if self.hub is None:
            return error_response(503, NO_HUB)
        # The API key (api/auth.py) may come as a query parameter here: it is not part of the subscription.
        subscription = Subscription({k: v for k, v in request.query_params.items() if k != KEY_PARAMETER},
                                    self.hub.cursors)
        hub = self.hub
        subscriber = hub.subscriber()
        await catch_up_and_follow(hub, subscriber, subscription)

        async def stream() -> AsyncIterator[bytes]:
            try:
                while True:
                    try:
                        message = await asyncio.wait_for(subscriber.queue.get(), HEARTBEAT_S)
                    except TimeoutError:
                        yield b": still here\n\n"
                        continue
                    if not message and subscriber.dropped:
                        yield b"event: error\ndata: " + orjson.dumps({"error": subscriber.dropped}) + b"\n\n"
                        return
                    kind = orjson.loads(message)["type"]
                    yield f"event: {kind}\ndata: ".encode() + message + b"\n\n"
            finally:
                hub.leave(subscriber)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def catch_up_and_follow(hub: LiveHub, subscriber: Subscriber, subscription: Subscription) -> None:
    """Subscribe, holding live messages while the stored ones are sent, then release what was not sent."""
    channel = subscription.channel
    if channel in subscriber.channels:
        subscriber.put(orjson.dumps({"type": "subscribed", **channel.describe()}))
        return
    subscriber.held[channel] = []
    hub.subscribe(subscriber, channel)
    subscriber.put(orjson.dumps({"type": "subscribed", **channel.describe()}))
    try:
        if channel.kind == "trades":
            skip = _trades_already_sent(await _catch_up_trades(hub, subscriber, subscription))
        else:
            sent_counts = await _catch_up_candles(hub, subscriber, channel, subscription.since)
            skip = _candles_already_sent(sent_counts)
    except ApiError as exc:
        hub.unsubscribe(subscriber, channel)
        subscriber.put(orjson.dumps({"type": "error", "error": exc.message, "parameter": exc.parameter}))
        return
    except Exception as exc:  # the warehouse is busy or away: say so, keep the connection
        log.warning("catching up %s %s for a stream client failed: %s", channel.exchange, channel.symbol, exc)
        hub.unsubscribe(subscriber, channel)
        subscriber.put(orjson.dumps({"type": "error", "error": f"the stored data could not be read "
                                     f"({type(exc).__name__}); subscribe again in a moment"}))
        return
    for message, encoded in subscriber.held.pop(channel, []):
        kept = skip(message)
        if kept is message:
            subscriber.put(encoded)
        elif kept is not None:
            subscriber.put(orjson.dumps(kept))


async def _catch_up_trades(hub: LiveHub, subscriber: Subscriber, subscription: Subscription) -> set[str]:
    """The stored trades after the subscription's cursor: with a stream cursor, those stored since, in
    commit order, late ones included (migration 0006); with a /v1/trades cursor, those after it in
    (time, id) order. Returns the ids sent."""
    channel = subscription.channel
    exchange, symbol = channel.market
    reader = hub.reader
    position: tuple[int, ...]
    if subscription.after_commit is not None:
        position = subscription.after_commit

        def page_after(after: tuple[int, ...]) -> list[tuple[StoredTrade, int]]:
            return reader.trades_committed_after(exchange, symbol, (after[0], after[1], after[2]), CATCH_UP_PAGE)

        def cursor(trade: StoredTrade, committed_us: int) -> tuple[tuple[int, ...], str]:
            at = (committed_us, trade.ts_us, trade.trade_id)
            return at, hub.cursors.encode_stream(exchange, symbol, *at)
    elif subscription.after is not None:
        position = subscription.after

        def page_after(after: tuple[int, ...]) -> list[tuple[StoredTrade, int]]:
            return [(t, 0) for t in reader.trades(exchange, symbol, None, None, CATCH_UP_PAGE, (after[0], after[1]))]

        def cursor(trade: StoredTrade, committed_us: int) -> tuple[tuple[int, ...], str]:
            return (trade.ts_us, trade.trade_id), hub.cursors.encode(exchange, symbol, trade.ts_us, trade.trade_id)
    else:
        return set()
    sent: set[str] = set()
    newest: tuple[int, int] | None = None
    while True:
        page = await asyncio.to_thread(page_after, position)
        if not page:
            return sent
        if len(sent) + len(page) > MAX_CATCH_UP_TRADES:
            raise ApiError(400, f"more than {MAX_CATCH_UP_TRADES} trades were stored after this cursor: page "
                                "through them with /v1/trades, then subscribe with the last trades cursor", "after")
        rows = []
        for trade, _committed in page:
            row = stored_trade_json(trade)
            if newest is not None and (trade.ts_us, trade.trade_id) < newest:
                row["late"] = True  # stored after a newer trade: a backfill
            newest = max(newest or (trade.ts_us, trade.trade_id), (trade.ts_us, trade.trade_id))
            rows.append(row)
        sent.update(row["trade_id"] for row in rows)
        position, text = cursor(*page[-1])
        subscriber.put(orjson.dumps({"type": "trades", "exchange": exchange, "symbol": symbol, "trades": rows,
                                     "catch_up": True, "cursor": text}))
        if len(page) < CATCH_UP_PAGE:
            return sent


async def _catch_up_candles(hub: LiveHub, subscriber: Subscriber, channel: Channel,
                            since: datetime | None) -> dict[str, tuple[int, bool]]:
    """The stored candles from ``since`` (default: the newest one), oldest first; what was sent of each."""
    rows = await asyncio.to_thread(hub.reader.ohlcv_rows, channel.exchange, channel.symbol, channel.timeframe,
                                   since, None, 1 if since is None else MAX_CATCH_UP_CANDLES)
    sent = {}
    for number, row in enumerate(rows, 1):
        hub.remember(channel, row)
        # A candle followed by another is closed: the market traded after its end.
        message = hub.candle_message(channel, row, closed=True if number < len(rows) else None)
        message["catch_up"] = True
        sent[message["candle"]["time"]] = (row[8], message["closed"])
        subscriber.put(orjson.dumps(message))
    return sent


def _trades_already_sent(sent: set[str]) -> Any:
    def keep(message: dict[str, Any]) -> dict[str, Any] | None:
        rows = [row for row in message["trades"] if row["trade_id"] not in sent]
        if len(rows) == len(message["trades"]):
            return message
        return {**message, "trades": rows} if rows else None
    return keep


def _candles_already_sent(sent: dict[str, tuple[int, bool]]) -> Any:
    def keep(message: dict[str, Any]) -> dict[str, Any] | None:
        candle = message["candle"]
        # A held update read before the catch-up's own read says nothing new: skip it.
        with contextlib.suppress(KeyError):
            trades, closed = sent[candle["time"]]
            if candle["trades"] < trades or (candle["trades"] == trades and message["closed"] == closed):
                return None
        return message
    return keep
