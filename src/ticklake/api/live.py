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
- **Before the commit**, the open bucket moves at once: a trade handed to the bus (``arrived``) is
  folded into the last candle read from the warehouse and pushed as ``provisional`` (never closed), so
  that a chart's latency does not wait for the writer's batching. The candle read after the commit
  replaces it; a provisional candle is the only message that may differ from the warehouse, and says so.

``committed`` runs on the event loop (the ingester's ``on_batch``) and never waits: a subscriber
whose bounded queue is full is dropped with the reason, so a client that stops reading slows nobody.
Candle reads happen on a task of their own; commits that come faster than they are read coalesce.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson

from ticklake.api.cursor import CursorSeal
from ticklake.api.formats import decimal_text, trade_json, vwap
from ticklake.model import Trade
from ticklake.ops import metrics
from ticklake.times import iso_seconds_z
from ticklake.warehouse.changes import Market
from ticklake.warehouse.reader import TIMEFRAMES, CandleRow, WarehouseReader

log = logging.getLogger(__name__)

# A bucket with no later trade is closed this long after its end by the clock: a trade made just
# before the end may still be on its way.
CLOSE_GRACE_S = 5.0
PENDING_S = 5.0  # a trade handed to the bus is written within this, or never (a duplicate, a dead letter)
RECENT_IDS = 20_000  # committed trade ids remembered per market, to know a venue's repeats
KEPT_ROWS = 4  # candles read from the warehouse kept per channel: the base of provisional candles
ChannelKind = Literal["trades", "candles"]


@dataclass(frozen=True, slots=True)
class Channel:
    kind: ChannelKind
    exchange: str
    symbol: str
    timeframe: str = ""  # candles only

    @property
    def market(self) -> Market:
        return self.exchange, self.symbol

    def describe(self) -> dict[str, str]:
        body = {"channel": self.kind, "exchange": self.exchange, "symbol": self.symbol}
        if self.kind == "candles":
            body["timeframe"] = self.timeframe
        return body


def candle_json(row: CandleRow) -> dict[str, Any]:
    """A candle exactly as ``/v1/ohlcv`` shows it."""
    start, open_, high, low, close, volume, quote_volume, buy_volume, trades = row
    return {"time": iso_seconds_z(start), "open": open_, "high": high, "low": low, "close": close, "volume": volume,
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
    close_code: int = 1008  # the WebSocket close code that says it: 1008 too slow, 1001 going away
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

    def drop(self, reason: str, code: int = 1008) -> None:
        if not self.dropped:
            self.dropped = reason
            self.close_code = code
            if code == 1008:
                metrics.STREAM_DROPPED.inc()
            # Wakes the sender, which closes the connection with the reason.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(b"")


class LiveHub:
    """Subscriptions, and the committed batches fanned out to them (see the module docstring)."""

    def __init__(self, reader: WarehouseReader, queue_size: int = 1000, cursors: CursorSeal | None = None) -> None:
        self.reader = reader
        self.cursors = cursors or CursorSeal.random()  # the installation's, to hand out resumable cursors
        self.queue_size = queue_size
        self._subscribers: dict[Channel, set[Subscriber]] = defaultdict(set)
        self._newest: dict[Market, tuple[int, int]] = {}  # newest (ts_us, trade_id) committed per market
        self._dirty: dict[Channel, dict[int, bool]] = defaultdict(dict)  # bucket start -> corrected
        # The last candle read from the warehouse per bucket (the base of provisional candles), and the
        # trades handed to the bus but not committed yet, per market (trade id -> trade, arrival time).
        self._rows: dict[Channel, dict[int, CandleRow]] = defaultdict(dict)
        self._pending: dict[Market, dict[int, tuple[Trade, float]]] = defaultdict(dict)
        # Trades committed since the last candle read of their market began: the read does not show them
        # yet, a provisional candle must (with the number of the commit, to forget them after the read).
        self._unread: dict[Market, list[tuple[Trade, int]]] = defaultdict(list)
        self._commits = 0
        # Ids committed lately per market: a repeat of one (a venue's duplicate) is not pending.
        self._recent: dict[Market, OrderedDict[int, None]] = defaultdict(OrderedDict)
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

    def _follows_candles(self, market: Market) -> bool:
        return any(Channel("candles", *market, tf) in self._subscribers for tf in TIMEFRAMES)

    # -- the bus's side: provisional open candles ---------------------------------------------------
    def arrived(self, trades: Iterable[Trade]) -> None:
        """Trades handed to the bus, not yet written. On the event loop; never blocks."""
        followed = {channel.market for channel in self._subscribers if channel.kind == "candles"}
        if not followed:  # the common case on the feeds' hot path: nothing to do per trade
            return
        now = time.monotonic()
        touched: set[Market] = set()
        for trade in trades:
            market = (trade.exchange, trade.symbol)
            if market in followed and trade.trade_id not in self._recent[market]:
                self._pending[market][trade.trade_id] = (trade, now)
                touched.add(market)
        for market in touched:
            self._push_provisional(market)

    def _push_provisional(self, market: Market) -> None:
        unread = [trade for trade, _commit in self._unread[market]]
        pending = unread + [trade for trade, _at in self._pending[market].values()]
        for timeframe, seconds in TIMEFRAMES.items():
            channel = Channel("candles", *market, timeframe)
            subscribers = self._subscribers.get(channel)
            if not subscribers or not pending:
                continue
            bucket = max(t.ts_us for t in pending) // 1_000_000 // seconds * seconds
            if self.is_closed(channel, bucket):
                continue  # late trades into a closed bucket wait for the commit (a correction)
            in_bucket = sorted((t for t in pending if t.ts_us // 1_000_000 // seconds * seconds == bucket),
                               key=lambda t: (t.ts_us, t.trade_id))
            row = _fold(self._rows[channel].get(bucket), bucket, in_bucket)
            message = {"type": "candle", **channel.describe(), "candle": candle_json(row), "closed": False,
                       "provisional": True}
            encoded = orjson.dumps(message)
            for subscriber in list(subscribers):
                subscriber.offer(channel, message, encoded)
            metrics.STREAM_MESSAGES.labels("candle").inc(len(subscribers))

    # -- the writer's side ------------------------------------------------------------------------
    def committed(self, trades: Sequence[Trade], committed_us: int = 0) -> None:
        """A batch the warehouse now holds (its silver rows, and their place in commit order: 0 where
        the schema has none). On the event loop; never blocks."""
        by_market: dict[Market, list[Trade]] = defaultdict(list)
        for trade in trades:
            by_market[(trade.exchange, trade.symbol)].append(trade)
        self._commits += 1
        for market, market_trades in by_market.items():
            if self._follows_candles(market):  # unread until the next candle read of the market
                self._unread[market] += [(trade, self._commits) for trade in market_trades]
                recent = self._recent[market]
                for trade in market_trades:
                    recent[trade.trade_id] = None
                while len(recent) > RECENT_IDS:
                    recent.popitem(last=False)
            else:  # nobody follows its candles (any more): nothing to keep for provisional ones
                self._unread.pop(market, None)
                self._pending.pop(market, None)
                self._recent.pop(market, None)
        # What the warehouse holds is no longer pending; neither is what it never will (a duplicate the
        # writer dropped, a dead letter): anything pending for longer than a batch can take.
        expired = time.monotonic() - PENDING_S
        for market, pending in self._pending.items():
            for trade in by_market.get(market, ()):
                pending.pop(trade.trade_id, None)
            for trade_id in [i for i, (_t, at) in pending.items() if at < expired]:
                del pending[trade_id]
        for market, market_trades in by_market.items():
            market_trades.sort(key=lambda t: (t.ts_us, t.trade_id))
            before = self._newest.get(market)
            last = market_trades[-1]
            if before is None or (last.ts_us, last.trade_id) > before:
                self._newest[market] = (last.ts_us, last.trade_id)
            self._push_trades(market, market_trades, before, committed_us)
            self._mark_candles(market, market_trades, before)
        if any(self._dirty.values()):
            self._wake.set()

    def _push_trades(self, market: Market, trades: list[Trade], before: tuple[int, int] | None,
                     committed_us: int) -> None:
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
        # The cursor a client resumes from: its place in commit order, so that trades stored while it is
        # away, late ones included, are all it gets (stream.py); by (time, id) without a commit order.
        cursor = (self.cursors.encode_stream(market[0], market[1], committed_us, last.ts_us, last.trade_id)
                  if committed_us else self.cursors.encode(market[0], market[1], last.ts_us, last.trade_id))
        message = {"type": "trades", "exchange": market[0], "symbol": market[1], "trades": rows, "cursor": cursor}
        encoded = orjson.dumps(message)
        for subscriber in list(subscribers):
            subscriber.offer(channel, message, encoded)
        metrics.STREAM_MESSAGES.labels("trades").inc(len(subscribers))

    def _mark_candles(self, market: Market, trades: list[Trade], before: tuple[int, int] | None) -> None:
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
                subscriber.drop("the server is stopping", 1001)

    async def _read_candles_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, defaultdict(dict)
            read_after = self._commits  # the reads below show every commit up to this one
            read: set[Market] = set()
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
                read.add(channel.market)
            for market in read:
                unread = self._unread[market]
                unread[:] = [(trade, commit) for trade, commit in unread if commit > read_after]

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

    def remember(self, channel: Channel, row: CandleRow) -> None:
        """A candle read from the warehouse (by a catch-up): the base of provisional candles."""
        self._rows[channel][row[0]] = row

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
        kept = self._rows[channel]
        for bucket in sorted(kept)[:-KEPT_ROWS]:
            del kept[bucket]
        for row in rows:
            self._rows[channel][row[0]] = row
            message = self.candle_message(channel, row, buckets.get(row[0], False))
            encoded = orjson.dumps(message)
            for subscriber in list(subscribers):
                subscriber.offer(channel, message, encoded)
            metrics.STREAM_MESSAGES.labels("candle").inc(len(subscribers))


def _fold(base: CandleRow | None, bucket: int, trades: list[Trade]) -> CandleRow:
    """The candle ``base`` (read from the warehouse; None: nothing stored yet) with ``trades`` (not yet
    stored, in (exchange time, id) order) added. Provisional: a pending trade older than the base's
    open would not become the open here; the commit's read puts that right."""
    prices = [Decimal(t.price) for t in trades]
    quantities = [Decimal(t.qty) for t in trades]
    volume = sum(quantities, Decimal(0))
    quote = sum((p * q for p, q in zip(prices, quantities, strict=True)), Decimal(0))
    bought = sum((q for t, q in zip(trades, quantities, strict=True) if t.side == "buy"), Decimal(0))
    if base is None:
        open_, high, low = prices[0], max(prices), min(prices)
        count, before = 0, (Decimal(0), Decimal(0), Decimal(0))
    else:
        open_, high, low = Decimal(base[1]), max(Decimal(base[2]), *prices), min(Decimal(base[3]), *prices)
        count, before = base[8], (Decimal(base[5]), Decimal(base[6]), Decimal(base[7]))
    return (bucket, decimal_text(open_), decimal_text(high), decimal_text(low), decimal_text(prices[-1]),
            decimal_text(before[0] + volume), decimal_text(before[1] + quote), decimal_text(before[2] + bought),
            count + len(trades))
