"""The live hub: what the writer committed, pushed to the stream's subscribers (stream.py).

Why the stream cannot disagree with the warehouse: nothing is pushed before the warehouse holds it.

- **Trades** are the silver rows of each committed batch (the writer's ``Plan.silver``: validated,
  deduplicated, exactly what ``/v1/trades`` then serves), pushed from memory right after the commit,
  each market's sorted by (exchange time, trade id). A trade older than one already pushed for its
  market (a backfill after a gap) is marked ``late``.
- **Candles** are read back from gold (the same query as ``/v1/ohlcv``) for the buckets a batch
  touched, so every candle pushed *is* the warehouse's. A bucket is ``closed`` once the market has a
  committed trade at or after its end (exchange time); a late trade into a closed bucket pushes the
  bucket again, ``corrected``.

``committed`` runs on the event loop (the ingester's ``on_batch``) and never waits: a subscriber
whose bounded queue is full is dropped with the reason, so a client that stops reading slows nobody.
Candle reads happen on a task of their own; commits that come faster than they are read coalesce.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson

from ticklake.api.cursor import encode_cursor
from ticklake.api.formats import decimal_text, epoch_text, trade_json, vwap
from ticklake.model import Trade
from ticklake.ops import metrics
from ticklake.warehouse.reader import TIMEFRAMES, CandleRow, WarehouseReader

log = logging.getLogger(__name__)

MarketKey = tuple[str, str]  # exchange, canonical symbol
# A bucket with no later trade is closed this long after its end by the clock: a trade made just
# before the end may still be on its way.
CLOSE_GRACE_S = 5.0
ChannelKind = Literal["trades", "candles"]


@dataclass(frozen=True, slots=True)
class Channel:
    kind: ChannelKind
    exchange: str
    symbol: str
    timeframe: str = ""  # candles only

    @property
    def market(self) -> MarketKey:
        return self.exchange, self.symbol

    def describe(self) -> dict[str, str]:
        body = {"channel": self.kind, "exchange": self.exchange, "symbol": self.symbol}
        if self.kind == "candles":
            body["timeframe"] = self.timeframe
        return body


def candle_json(row: CandleRow) -> dict[str, Any]:
    """A candle exactly as ``/v1/ohlcv`` shows it."""
    start, open_, high, low, close, volume, quote_volume, buy_volume, trades = row
    return {"time": epoch_text(start), "open": open_, "high": high, "low": low, "close": close, "volume": volume,
            "quote_volume": quote_volume, "buy_volume": buy_volume,
            "vwap": decimal_text(vwap(Decimal(quote_volume), Decimal(volume))), "trades": trades}


class SlowSubscriber(Exception):
    """The subscriber's queue overflowed: it is dropped, with this reason."""


@dataclass(eq=False)
class Subscriber:
    """One connection's subscriptions and its bounded queue of encoded messages."""

    queue_size: int
    channels: set[Channel] = field(default_factory=set)
    queue: asyncio.Queue[bytes] = field(init=False)
    dropped: str = ""  # why it was dropped ("" while it keeps up)
    # Channels catching up from the warehouse: live messages wait here meanwhile (stream.py).
    held: dict[Channel, list[tuple[dict[str, Any], bytes]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)

    def offer(self, channel: Channel, message: dict[str, Any], encoded: bytes) -> None:
        if self.dropped:
            return
        if channel in self.held:
            self.held[channel].append((message, encoded))
            return
        self.put(encoded)

    def put(self, encoded: bytes) -> None:
        try:
            self.queue.put_nowait(encoded)
        except asyncio.QueueFull:
            self.drop(f"too slow: {self.queue_size} messages were waiting to be read")

    def drop(self, reason: str) -> None:
        if not self.dropped:
            self.dropped = reason
            metrics.STREAM_DROPPED.inc()
            # Wakes the sender, which closes the connection with the reason.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(b"")


class LiveHub:
    """Subscriptions, and the committed batches fanned out to them (see the module docstring)."""

    def __init__(self, reader: WarehouseReader, queue_size: int = 1000) -> None:
        self.reader = reader
        self.queue_size = queue_size
        self._subscribers: dict[Channel, set[Subscriber]] = defaultdict(set)
        self._newest: dict[MarketKey, tuple[int, int]] = {}  # newest (ts_us, trade_id) committed per market
        self._dirty: dict[Channel, dict[int, bool]] = defaultdict(dict)  # bucket start -> corrected
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- subscriptions ------------------------------------------------------------------------------
    def subscriber(self) -> Subscriber:
        return Subscriber(self.queue_size)

    def subscribe(self, subscriber: Subscriber, channel: Channel) -> None:
        subscriber.channels.add(channel)
        self._subscribers[channel].add(subscriber)
        metrics.STREAM_SUBSCRIPTIONS.labels(channel.kind).inc()

    def unsubscribe(self, subscriber: Subscriber, channel: Channel) -> None:
        if channel in subscriber.channels:
            subscriber.channels.discard(channel)
            subscriber.held.pop(channel, None)
            self._subscribers[channel].discard(subscriber)
            if not self._subscribers[channel]:
                del self._subscribers[channel]
            metrics.STREAM_SUBSCRIPTIONS.labels(channel.kind).dec()

    def leave(self, subscriber: Subscriber) -> None:
        for channel in list(subscriber.channels):
            self.unsubscribe(subscriber, channel)

    def newest(self, market: MarketKey) -> tuple[int, int] | None:
        return self._newest.get(market)

    # -- the writer's side ------------------------------------------------------------------------
    def committed(self, trades: Sequence[Trade]) -> None:
        """A batch the warehouse now holds (its silver rows). On the event loop; never blocks."""
        by_market: dict[MarketKey, list[Trade]] = defaultdict(list)
        for trade in trades:
            by_market[(trade.exchange, trade.symbol)].append(trade)
        for market, market_trades in by_market.items():
            market_trades.sort(key=lambda t: (t.ts_us, t.trade_id))
            before = self._newest.get(market)
            last = market_trades[-1]
            if before is None or (last.ts_us, last.trade_id) > before:
                self._newest[market] = (last.ts_us, last.trade_id)
            self._push_trades(market, market_trades, before)
            self._mark_candles(market, market_trades, before)
        if any(self._dirty.values()):
            self._wake.set()

    def _push_trades(self, market: MarketKey, trades: list[Trade], before: tuple[int, int] | None) -> None:
        channel = Channel("trades", *market)
        subscribers = self._subscribers.get(channel)
        if not subscribers:
            return
        rows = []
        for trade in trades:
            row = trade_json(trade)
            if before is not None and (trade.ts_us, trade.trade_id) < before:
                row["late"] = True  # older than a trade already pushed: a backfill after a gap
            rows.append(row)
        last = trades[-1]
        message = {"type": "trades", "exchange": market[0], "symbol": market[1], "trades": rows,
                   "cursor": encode_cursor(market[0], market[1], last.ts_us, last.trade_id)}
        encoded = orjson.dumps(message)
        for subscriber in list(subscribers):
            subscriber.offer(channel, message, encoded)
        metrics.STREAM_MESSAGES.labels("trades").inc(len(subscribers))

    def _mark_candles(self, market: MarketKey, trades: list[Trade], before: tuple[int, int] | None) -> None:
        newest_s = self._newest[market][0] // 1_000_000
        before_s = before[0] // 1_000_000 if before is not None else None
        for timeframe, seconds in TIMEFRAMES.items():
            channel = Channel("candles", market[0], market[1], timeframe)
            if channel not in self._subscribers:
                continue
            dirty = self._dirty[channel]
            for trade in trades:
                bucket = trade.ts_us // 1_000_000 // seconds * seconds
                closed_before = before_s is not None and bucket + seconds <= before_s
                dirty[bucket] = dirty.get(bucket, False) or closed_before
            # The bucket that was open until now, and that this batch closed: pushed once more, closed.
            if before_s is not None:
                open_bucket = before_s // seconds * seconds
                if open_bucket + seconds <= newest_s:
                    dirty.setdefault(open_bucket, False)

    # -- candles, read back from the warehouse --------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._read_candles_forever(), name="live-candles")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for subscribers in list(self._subscribers.values()):
            for subscriber in list(subscribers):
                subscriber.drop("the server is stopping")

    async def _read_candles_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, defaultdict(dict)
            for channel, buckets in dirty.items():
                if not buckets or channel not in self._subscribers:
                    continue
                try:
                    rows = await asyncio.to_thread(self.read_buckets, channel, buckets)
                except Exception as exc:  # the warehouse is busy or away: read these again next time
                    log.warning("live candles of %s %s %s: %s", channel.exchange, channel.symbol,
                                channel.timeframe, exc)
                    self._dirty[channel].update(buckets)
                    await asyncio.sleep(0.5)
                    self._wake.set()
                    continue
                self._push_candles(channel, rows, buckets)

    def read_buckets(self, channel: Channel, buckets: Iterable[int]) -> list[CandleRow]:
        """The warehouse's candles for these bucket starts (blocking: on a thread)."""
        wanted = set(buckets)
        seconds = TIMEFRAMES[channel.timeframe]
        low, high = min(wanted), max(wanted) + seconds
        rows = self.reader.ohlcv_rows(channel.exchange, channel.symbol, channel.timeframe,
                                      datetime.fromtimestamp(low, UTC), datetime.fromtimestamp(high, UTC),
                                      (high - low) // seconds)
        return [row for row in rows if row[0] in wanted]

    def candle_message(self, channel: Channel, row: CandleRow, corrected: bool = False,
                       closed: bool | None = None) -> dict[str, Any]:
        if closed is None:
            closed = self.is_closed(channel, row[0])
        message = {"type": "candle", **channel.describe(), "candle": candle_json(row), "closed": closed}
        if corrected:
            message["corrected"] = True
        return message

    def is_closed(self, channel: Channel, bucket: int) -> bool:
        """Closed: the market has a committed trade at or after the bucket's end (exchange time), or, for a
        market quiet since this process started, the bucket ended ``CLOSE_GRACE_S`` ago by the clock."""
        end = bucket + TIMEFRAMES[channel.timeframe]
        newest = self._newest.get(channel.market)
        if newest is not None and end <= newest[0] // 1_000_000:
            return True
        return end <= time.time() - CLOSE_GRACE_S

    def _push_candles(self, channel: Channel, rows: list[CandleRow], buckets: dict[int, bool]) -> None:
        subscribers = self._subscribers.get(channel)
        if not subscribers:
            return
        for row in rows:
            message = self.candle_message(channel, row, buckets.get(row[0], False))
            encoded = orjson.dumps(message)
            for subscriber in list(subscribers):
                subscriber.offer(channel, message, encoded)
            metrics.STREAM_MESSAGES.labels("candle").inc(len(subscribers))
