"""What a feed does with each received frame, whichever connection it came on: parse it with the
venue's pure mapper, publish the raw frame and its trades in one ``bus.publish`` call, count it,
and hand the trade ids to the gap tracker (gaps go to the backfill)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

from ticklake.exchanges.gaps import Gap, GapTracker, SeenTrades
from ticklake.exchanges.mappers import FrameParser
from ticklake.model import Message, MessageSink, ParsedFrame, RawFrame, Trade, raw_topic, trades_topic
from ticklake.ops.metrics import FEED_FRAMES, FEED_LAG, FEED_PARSE_ERRORS, FEED_SYMBOL_TRADES, FEED_TRADES

log = logging.getLogger("ticklake.feeds")


class FrameHandler:
    """One venue's frames to the bus. ``on_gaps`` receives the gaps the trade ids reveal.

    ``track_ids`` False (a venue whose ids do not count a market's trades): no id is checked; instead
    ``newest`` keeps each market's newest trade (id, exchange time µs), ``seen`` (when given) the ids
    held, and ``on_break`` is told the markets of a connection, and why, whenever trades may have been
    lost on it unseen: its first frame (a new connection: whatever traded while none was open), every
    frame that could not be read, and a jump in the connection's sequence number (Bitfinex SEQ_ALL)."""

    def __init__(self, exchange: str, parser: FrameParser, bus: MessageSink, gaps: GapTracker,
                 canonical: dict[str, str], *, track_ids: bool = True, seen: SeenTrades | None = None) -> None:
        self.exchange = exchange
        self.parser = parser
        self.bus = bus
        self.on_gaps: Callable[[list[Gap]], None] = lambda gaps: None
        self.on_break: Callable[[AbstractSet[str], str], None] = lambda natives, why: None
        self.track_ids = track_ids
        self.newest: dict[str, tuple[int, int]] = {}  # native -> (id, exchange time µs); track_ids False
        self._connections: set[str] = set()  # conn_ids seen (track_ids False)
        self._sequences: dict[str, int] = {}  # conn_id -> the highest sequence number seen on it
        self.seen = seen
        self._canonical = canonical  # native -> configured canonical symbol (metric labels)
        self._observe_ids = gaps.observe  # bound once: it runs for every trade frame
        self._raw_topic = raw_topic(exchange)
        self._trades_topic = trades_topic(exchange)
        self._m_frames = FEED_FRAMES.labels(exchange)
        self._m_trades = FEED_TRADES.labels(exchange)
        self._m_errors = FEED_PARSE_ERRORS.labels(exchange)
        self._m_lag = FEED_LAG.labels(exchange)
        self._m_symbol_trades: dict[str, Any] = {}  # native -> its FEED_SYMBOL_TRADES child

    async def handle(self, conn_id: str, frame_seq: int, received_us: int, data: bytes,
                     subscribed: AbstractSet[str] | None = None) -> tuple[ParsedFrame, str]:
        """Parse and publish one frame; returns what the mapper made of it and the frame's text.
        ``subscribed``: the connection's native symbols (the mapper blanks the symbol of another market's
        trade, which the warehouse then dead-letters)."""
        exchange = self.exchange
        try:
            parsed = self.parser(data, received_us, conn_id, frame_seq, subscribed=subscribed)
        except Exception as exc:  # mappers should never raise; if one does, the frame is still kept
            parsed = ParsedFrame("error", error=f"{exchange} parser raised {type(exc).__name__}: {exc}")
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            text = data.decode("utf-8", "replace")
            parsed = ParsedFrame("error", error=f"{exchange}: frame is not valid UTF-8 ({exc})")
        trades = parsed.trades
        if not self.track_ids:
            self._breaks(conn_id, parsed, trades, subscribed)
        elif trades:
            # Only subscribed, well-formed markets are tracked: a gap in another would be backfilled over
            # REST, and those pages would store the market the mapper kept out.
            tracked: tuple[Trade, ...]
            if len(trades) == 1:  # most frames
                tracked = trades if trades[0].symbol else ()
            else:
                tracked = trades if all(t.symbol for t in trades) else tuple(t for t in trades if t.symbol)
            gaps = self._observe_ids(tracked) if tracked else None  # the hot path: usually None
            if gaps is not None:
                self.on_gaps(gaps)
        key = (trades[0].symbol or trades[0].native_symbol) if trades else conn_id
        messages = [Message(self._raw_topic, key, RawFrame(exchange, conn_id, frame_seq, received_us, text,
                                                          error=parsed.error, trade_count=len(trades)))]
        for trade in trades:
            messages.append(Message(self._trades_topic, trade.symbol or trade.native_symbol, trade))
        await self.publish(messages)
        self._observe(parsed, trades, received_us)
        return parsed, text

    def _breaks(self, conn_id: str, parsed: ParsedFrame, trades: tuple[Trade, ...],
                subscribed: AbstractSet[str] | None) -> None:
        """``track_ids`` False: note each market's newest trade, and tell ``on_break`` what may be lost."""
        if subscribed is not None and conn_id not in self._connections:
            self._connections.add(conn_id)
            if len(self._connections) > 10_000:  # a feed reconnecting for weeks: old ids never return
                self._connections = {conn_id}
                self._sequences = {}
            self.on_break(subscribed, f"new connection {conn_id}")
        elif subscribed is not None and parsed.kind == "error":
            self.on_break(subscribed, f"unreadable frame on {conn_id}")
        sequence = parsed.sequence
        if sequence is not None:
            last = self._sequences.get(conn_id)
            if last is None or sequence > last:
                self._sequences[conn_id] = sequence
            if last is not None and sequence > last + 1 and subscribed is not None:
                # Frames were lost on this connection; which markets' is unknown: all of them.
                self.on_break(subscribed, f"sequence jump on {conn_id} ({last} to {sequence})")
        self.hold(trades)

    def hold(self, trades: tuple[Trade, ...]) -> None:
        """``track_ids`` False: note each subscribed market's newest trade, and its id in ``seen``."""
        newest = self.newest
        add = self.seen.add if self.seen is not None else None
        for trade in trades:
            if trade.symbol:
                native, trade_id, ts_us = trade.native_symbol, trade.trade_id, trade.ts_us
                held = newest.get(native)
                if held is None or ts_us > held[1] or (ts_us == held[1] and trade_id > held[0]):
                    newest[native] = (trade_id, ts_us)
                if add is not None:
                    add(native, trade_id, ts_us)

    async def publish(self, messages: list[Message]) -> None:
        """Hand one frame's messages to the bus; retry (holding the frame) if the bus fails."""
        delay = 0.1
        while True:
            try:
                await self.bus.publish(messages)
                return
            except Exception as exc:
                if delay == 0.1:  # the first failure of this frame with its traceback, then one line each
                    log.exception("%s: publishing to the bus failed; retrying in %.1f s", self.exchange, delay)
                else:
                    log.warning("%s: publishing to the bus failed again (%s); retrying in %.1f s", self.exchange,
                                type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _observe(self, parsed: ParsedFrame, trades: tuple[Trade, ...], received_us: int) -> None:
        self._m_frames.inc()
        if parsed.error:
            self._m_errors.inc()
        if trades:
            self._m_trades.inc(len(trades))
            if trades[0].native_symbol == trades[-1].native_symbol:  # one market per frame: one increment
                self._symbol_trades(trades[0]).inc(len(trades))
            else:
                for trade in trades:
                    self._symbol_trades(trade).inc()
            # Once a frame, not once a trade (a histogram update costs about as much as parsing a trade):
            # the newest trade's lag is how late the frame itself arrived.
            self._m_lag.observe(max(0.0, (received_us - trades[-1].ts_us) / 1_000_000))

    def _symbol_trades(self, trade: Trade) -> Any:
        child = self._m_symbol_trades.get(trade.native_symbol)
        if child is None:
            label = self._canonical.get(trade.native_symbol) or trade.symbol or trade.native_symbol
            child = self._m_symbol_trades[trade.native_symbol] = FEED_SYMBOL_TRADES.labels(self.exchange, label)
        return child
