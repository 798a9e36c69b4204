"""Filling trade-id gaps from the venue's REST API, one market at a time.

The feed hands every gap its ``GapTracker`` reports to ``Backfill.add``. Per market (native symbol):

* gaps wait in a queue, lowest ids first, merged when they overlap or touch (fewer ids than one REST
  page apart: one span then costs no more requests than two);
* one task at a time works through the queue, after a short grace period (a reordered frame arriving
  late closes its gap without asking the venue anything);
* before each fetch the span is shrunk to what is still pending in the tracker (late socket trades
  and earlier pages count), so a retry does not fetch again what it already has;
* each REST answer is published like a WebSocket frame: a ``RawFrame`` (conn_id
  ``<exchange>-rest-<hex>``, one "connection" per run of the task, ``frame_seq`` 1, 2, 3 ... in it,
  payload the response body) followed by its trades within the span, in id order, in one publish;
* a failing fetch is retried with exponential backoff and full jitter for as long as the gap is
  still inside the look-back; a request the venue refuses outright (an error other than a throttle
  or an outage) is not retried; a venue whose REST API does not yet serve the span's newest ids
  (REST can lag the stream) is asked again a few times (``max_behind``);
* what is still pending when the work is done cannot be recovered: logged once with its ids and
  counted in ``ticklake_feed_trades_unrecoverable_total{exchange, symbol}``.

**Catch-up** (``catch_up``), for a venue whose trade ids do not count a market's trades (Bybit spot,
``Venue.ids_count_trades``): no gap can be found by id, so the feed reports every *break* it can see
(a new connection; a frame it could not read) with the newest trade it held of each market before it.
After the grace period the backfill asks the venue for the market's most recent trades (one page:
``RecentTradeFetcher.recent``) and publishes them like any page; the warehouse drops what it already
holds by id. When that page is full and its oldest trade is newer than the trade held before the break,
the page did not reach back across the break: trades in between may be lost, and how many cannot be
known. That is logged and counted per market in ``ticklake_feed_backfill_short_total`` (best effort:
the venue serves nothing older). Breaks of one market arriving before its page was asked for are asked
for once, reaching back to the oldest of them.

**Reconciliation by time** (``catch_up`` again), for a venue whose fetcher can ask for every trade from
a point in time on (``WindowTradeFetcher.since``: Bitstamp, Gemini, Bitfinex; completeness
"reconciled-by-time"). The feed reports breaks as for a catch-up (a new connection, an unreadable frame,
a jump in the connection's sequence number) and, every ``feed.reconcile_every_s``, the window since the
previous tick (losses no break shows: a frame the venue never sent). ``held`` then gives the window's
start (``RECONCILE_OVERLAP_S`` earlier). After the grace period the backfill reads the venue's trades
from that start up to now, page by page, and publishes those it does not hold yet (``SeenTrades``, by
native id: the socket's and earlier windows'). A start older than the venue's REST reach (``reach_s``:
Bitstamp one day) or than the look-back is moved up to it, and the break is counted in
``ticklake_feed_backfill_short_total`` (what lies before cannot be read back); so is a window the REST
API kept refusing.

**The look-back** (``feed.backfill_lookback_s``) is measured back from the exchange time of the
trade that revealed the gap: trades older than that are neither fetched (where the venue lets a
request start later) nor published (where a page reaches back further). It is a hard boundary, so the
count of unrecoverable trades depends on the tape only, not on page boundaries.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, NamedTuple

from ticklake.exchanges.gaps import Gap, GapTracker, SeenTrades
from ticklake.exchanges.mappers.common import MalformedResponse
from ticklake.exchanges.rest import RestClient, RestError, Span, TradeFetcher
from ticklake.model import Message, RawFrame, Trade, raw_topic, trades_topic
from ticklake.ops import metrics

log = logging.getLogger("ticklake.feeds.backfill")

Publish = Callable[[list[Message]], Awaitable[None]]

_MAX_LISTED: Final = 5  # id ranges named in one log line


def _ranges_text(ranges: list[tuple[int, int]]) -> str:
    shown = ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in ranges[:_MAX_LISTED])
    return shown + (f" and {len(ranges) - _MAX_LISTED} more ranges" if len(ranges) > _MAX_LISTED else "")


class BackfillMetrics(NamedTuple):
    """The counters a backfill moves, each labelled (exchange, symbol): the feed's own by default; the
    warehouse's completeness check counts what it finds under its own names."""

    gaps: Any  # gaps taken
    filled: Any  # missing trades fetched
    unrecoverable: Any  # missing trades given up
    fetched: Any | None  # every trade published (the feed's per-symbol trade count)


FEED_METRICS = BackfillMetrics(metrics.FEED_GAPS, metrics.FEED_BACKFILLED, metrics.FEED_UNRECOVERABLE,
                               metrics.FEED_SYMBOL_TRADES)
CATCH_UP_SHORT = metrics.FEED_BACKFILL_SHORT


_REST_CONN = "-rest-"

# A reconciliation window starts this much earlier than the point it is asked from (the newest trade held,
# the previous tick): the venue's REST API may serve the newest trades a little late, and our clock may
# differ from the venue's. Only the point itself decides whether the window is beyond the venue's reach.
RECONCILE_OVERLAP_S: Final = 5.0
REST_TIME_SLACK_US: Final = 1_000_000  # the coarsest time a venue's REST API gives a trade: whole seconds


def from_rest(conn_id: str) -> bool:
    """Whether a record's ``conn_id`` names a backfill's REST "connection" rather than a WebSocket."""
    return _REST_CONN in conn_id


class _RestConnection:
    """One run of a market's backfill task: a conn_id and its page numbers (``FrameStamp``)."""

    def __init__(self, exchange: str) -> None:
        self.conn_id = f"{exchange}{_REST_CONN}{secrets.token_hex(4)}"
        self._frame_seq = 0

    def next_frame(self) -> int:
        self._frame_seq += 1
        return self._frame_seq


class Backfill:
    """The gaps of one venue's markets, filled from REST (see the module docstring).

    ``fetcher``/``client`` None: no REST API to ask (a simulated or replayed feed without a REST
    URL); gaps are still detected, counted, and then reported unrecoverable.
    """

    grace_s: float = 0.2  # before asking the venue: reordered frames arrive within milliseconds
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_behind: int = 5  # times a span is asked again while the venue's REST API lags its stream

    def __init__(
        self,
        exchange: str,
        tracker: GapTracker,
        publish: Publish,
        *,
        fetcher: TradeFetcher | None,
        client: RestClient | None,
        lookback_s: float,
        symbols: Mapping[str, str],
        rng: random.Random | None = None,
        clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
        counters: BackfillMetrics = FEED_METRICS,
        seen: SeenTrades | None = None,
        floor_us: int = 0,
    ) -> None:
        self.exchange = exchange
        self.tracker = tracker
        self._publish = publish
        self.fetcher = fetcher
        self.client = client
        self.lookback_us = int(lookback_s * 1_000_000)
        self.symbols = dict(symbols)  # native -> canonical, for the markets this feed subscribes
        self._rng = rng or random.Random()
        self._clock_us = clock_us
        self.counters = counters
        for symbol in self.symbols.values():  # each market's counts at zero from the start: a dashboard line
            for counter in (counters.gaps, counters.filled, counters.unrecoverable):
                counter.labels(exchange, symbol)
        self.seen = seen  # ids already held per market, for reconciliation windows (None: none kept)
        # The feed's start: a reconciliation window asked from a point after it (a trade the feed received,
        # the feed's start itself, a tick) does not reach before it, overlap or not: trades from before
        # the feed began are not the feed's to store, unless it resumes from a trade stored before.
        self.floor_us = floor_us
        self._raw_topic = raw_topic(exchange)
        self._trades_topic = trades_topic(exchange)
        self._queues: dict[str, list[Span]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._refills: dict[str, int] = {}  # per market, how often refill() made ids pending again
        # catch_up: per market, the break not yet asked for (newest trade held before it, why), and its task
        self._catch_ups: dict[str, tuple[tuple[int, int] | None, str]] = {}
        self._catch_up_tasks: dict[str, asyncio.Task[None]] = {}

    # --- taking gaps (called from the feed's frame loop: no awaiting) ---------------------------
    def add(self, gap: Gap, found_in: str = "") -> None:
        """Fill ``gap``; ``found_in`` says where it was found for the log (default: the feed's stream)."""
        native = gap.native_symbol
        symbol = self._label(native)
        self.counters.gaps.labels(self.exchange, symbol).inc()
        log.info("%s %s: trade ids %s missing%s (%d trades); %s", self.exchange, symbol,
                 _ranges_text([(gap.first, gap.last)]), f" from {found_in}" if found_in else "", gap.size,
                 "backfilling" if self.fetcher is not None else "no REST API to backfill from")
        span = Span(native, gap.first, gap.last, gap.before_ts_us, gap.after_ts_us - self.lookback_us,
                    gap.after_ts_us)
        queue = self._queues.setdefault(native, [])
        # Gaps touch when fewer ids than a page lie between them: one span then costs no more
        # requests than two, and only what is still pending in it is kept.
        near = (self.fetcher.page_size if self.fetcher is not None else 0) + 1
        merged: list[Span] = []
        for queued in queue:
            if queued.first <= span.last + near and span.first <= queued.last + near:
                span = Span(native, min(span.first, queued.first), max(span.last, queued.last),
                            min(span.start_us, queued.start_us), min(span.cutoff_us, queued.cutoff_us),
                            max(span.end_us, queued.end_us))
            else:
                merged.append(queued)
        merged.append(span)
        merged.sort(key=lambda s: s.first)
        self._queues[native] = merged
        if native not in self._tasks:
            self._tasks[native] = asyncio.create_task(self._run(native), name=f"backfill-{self.exchange}-{native}")

    def refill(self, gap: Gap, found_in: str) -> int:
        """A hole found after delivery (in what a broker or the warehouse holds, ``found_in``): make its
        ids pending again and fill them like any gap. Returns how many ids were taken; ids already
        pending, or already given up as unrecoverable, are not asked for again."""
        taken = 0
        for first, last in self.tracker.reopen(gap.native_symbol, gap.first, gap.last):
            self.add(gap._replace(first=first, last=last), found_in)
            taken += last - first + 1
        if taken:  # a fetch running over these ids must not give them up when it ends (see _recover)
            self._refills[gap.native_symbol] = self._refills.get(gap.native_symbol, 0) + 1
        return taken

    def catch_up(self, native: str, held: tuple[int, int] | None, why: str, *, counted: bool = True) -> None:
        """A break in a market of a venue whose ids do not count its trades (see the module docstring):
        fetch its most recent trades, or, with a window fetcher, reconcile from ``held``'s time on.
        ``held``: (id, exchange time µs) of the newest trade held before the break (for a reconciliation:
        where its window starts); None: nothing held, so nothing to reach back to. ``why`` names the break
        for the log. ``counted`` False: not a break (the periodic reconciliation), not counted as a gap."""
        if counted:
            self.counters.gaps.labels(self.exchange, self._label(native)).inc()
        queued = self._catch_ups.get(native)
        if queued is not None and (held is None or (queued[0] is not None and queued[0][1] <= held[1])):
            return  # a break not yet asked for reaches back at least as far
        self._catch_ups[native] = (held, why)
        if native not in self._catch_up_tasks:
            self._catch_up_tasks[native] = asyncio.create_task(
                self._run_catch_up(native), name=f"catch-up-{self.exchange}-{native}")

    def busy(self) -> bool:
        """Whether some market still has gaps queued or being filled."""
        return bool(self._tasks) or bool(self._catch_up_tasks)

    async def close(self) -> None:
        tasks = list(self._tasks.values()) + list(self._catch_up_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._queues.clear()
        self._catch_up_tasks.clear()
        self._catch_ups.clear()

    def _label(self, native: str) -> str:
        return self.symbols.get(native) or native

    # --- one market's task ---------------------------------------------------------------------
    async def _run(self, native: str) -> None:
        try:
            await asyncio.sleep(self.grace_s)
            connection = _RestConnection(self.exchange)
            queue = self._queues[native]
            while queue:
                await self._recover(queue.pop(0), connection)
                queue = self._queues.get(native, [])
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug of ours: say so; the gap stays pending and the next one retries
            log.exception("%s %s: backfill failed", self.exchange, self._label(native))
        finally:
            # No await between the last look at the queue and this: add() sees either the task or no task.
            self._tasks.pop(native, None)
            if not self._queues.get(native):
                self._queues.pop(native, None)

    async def _recover(self, span: Span, connection: _RestConnection) -> None:
        native = span.native_symbol
        fetcher, client = self.fetcher, self.client
        why = "older than the look-back, or not served by the venue"
        if fetcher is None or client is None:
            why = "no REST API configured for this feed"
        elif native not in self.symbols:
            why = f"not a market this feed subscribes ({native})"
        else:
            attempt = behind = 0
            while True:
                pending = self.tracker.pending(native, span.first, span.last)
                if not pending:
                    return
                todo = span._replace(first=pending[0][0], last=pending[-1][1])
                refills = self._refills.get(native, 0)
                try:
                    served = await self._fetch(todo, fetcher, client, connection)
                except (RestError, MalformedResponse) as exc:
                    retryable = getattr(exc, "retryable", True)
                    too_old = self._clock_us() > span.end_us + self.lookback_us
                    if not retryable or too_old:
                        why = f"{exc}" if not retryable else f"REST failing ({exc}) until the look-back passed"
                        break
                    attempt += 1
                    delay = self._delay(attempt)
                    log.warning("%s %s: backfill of ids %s failed: %s; retrying in %.1f s", self.exchange,
                                self._label(native), _ranges_text(pending), exc, delay)
                    await asyncio.sleep(delay)
                    continue
                if self._refills.get(native, 0) != refills:
                    continue  # ids were found missing again while this fetch ran (refill): fetch them too
                if served is None or served >= todo.last or not self.tracker.pending(native, todo.first, todo.last):
                    break  # the venue served the whole span: what it did not have, it does not have
                # The venue's REST API lags its stream (a database behind the matching engine): ask again
                # a few times before calling the rest lost.
                behind += 1
                if behind > self.max_behind:
                    why = f"the venue's REST API serves ids only up to {served}"
                    break
                delay = self._delay(behind)
                log.info("%s %s: REST serves ids only up to %d of %d; asking again in %.1f s", self.exchange,
                         self._label(native), served, todo.last, delay)
                await asyncio.sleep(delay)
        lost = self.tracker.abandon(native, span.first, span.last)
        if lost:
            count = sum(b - a + 1 for a, b in lost)
            symbol = self._label(native)
            self.counters.unrecoverable.labels(self.exchange, symbol).inc(count)
            log.warning("%s %s: %d trades cannot be recovered (ids %s): %s", self.exchange, symbol, count,
                        _ranges_text(lost), why)

    def _delay(self, attempt: int) -> float:
        return self._rng.uniform(0, min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** attempt))

    async def _fetch(self, span: Span, fetcher: TradeFetcher, client: RestClient,
                     connection: _RestConnection) -> int | None:
        """Publish the span's pages; returns the highest id the venue served (None: no page needed)."""
        native = span.native_symbol
        symbol = self._label(native)
        first, last, cutoff = span.first, span.last, span.cutoff_us
        served: int | None = None
        async for page in fetcher.pages(client, span, connection):
            if page.trades:
                served = max(served or 0, page.trades[-1].trade_id)
            elif served is None:
                served = -1  # asked, and the venue had nothing
            keep: list[Trade] = [t for t in page.trades if first <= t.trade_id <= last and t.ts_us >= cutoff]
            key = (keep[0].symbol or native) if keep else symbol
            messages = [Message(self._raw_topic, key, RawFrame(self.exchange, connection.conn_id, page.frame_seq,
                                                               page.received_us, page.body,
                                                               trade_count=len(keep), source="rest",
                                                               native_symbol=native))]
            messages.extend(Message(self._trades_topic, t.symbol or t.native_symbol, t) for t in keep)
            await self._publish(messages)
            if keep:
                filled = self.tracker.fill(keep)
                if self.counters.fetched is not None:
                    self.counters.fetched.labels(self.exchange, symbol).inc(len(keep))
                if filled:
                    self.counters.filled.labels(self.exchange, symbol).inc(filled)
        return served

    # --- catch-up: the most recent page after a break ------------------------------------------
    async def _run_catch_up(self, native: str) -> None:
        try:
            connection = _RestConnection(self.exchange)
            while native in self._catch_ups:
                await asyncio.sleep(self.grace_s)
                held, why = self._catch_ups.pop(native)
                await self._catch_up_once(native, held, why, connection)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug of ours: say so; the next break asks again
            log.exception("%s %s: catch-up failed", self.exchange, self._label(native))
        finally:
            # No await between the last look at the queue and this: catch_up() sees the task or none.
            self._catch_up_tasks.pop(native, None)

    async def _catch_up_once(self, native: str, held: tuple[int, int] | None, why: str,
                             connection: _RestConnection) -> None:
        fetcher, client = self.fetcher, self.client
        if getattr(fetcher, "since", None) is not None:
            await self._reconcile_once(native, held, why, connection)
            return
        recent = getattr(fetcher, "recent", None)
        if fetcher is None or client is None or recent is None or native not in self.symbols:
            reason = ("no REST API configured for this feed" if fetcher is None or client is None else
                      "the venue's fetcher cannot ask for recent trades" if recent is None else
                      f"not a market this feed subscribes ({native})")
            self._short(native, held, None, f"{why}: {reason}")
            return
        page_size = fetcher.page_size
        attempt = 0
        while True:
            try:
                page = await recent(client, native, connection)
                break
            except (RestError, MalformedResponse) as exc:
                attempt += 1
                if not await self._again(exc, attempt, native, held, f"fetching the recent trades after {why}"):
                    return
        cutoff = self._clock_us() - self.lookback_us
        keep = [t for t in page.trades if t.ts_us >= cutoff]
        await self._publish_page(native, page.body, page.received_us, page.frame_seq, keep, connection)
        if held is None:
            return
        held_id, held_ts = held
        trades = page.trades
        reached = (len(trades) < page_size or trades[0].ts_us < held_ts
                   or any(t.trade_id == held_id for t in trades))
        if not reached:
            self._short(native, held, trades[0].ts_us, f"{why}: the newest {len(trades)} trades reach back only "
                        f"{(page.received_us - trades[0].ts_us) / 1e6:.1f} s")

    # --- reconciliation: every trade of a window of time, after a break or on the periodic tick ----
    async def _reconcile_once(self, native: str, held: tuple[int, int] | None, why: str,
                              connection: _RestConnection) -> None:
        if held is None:
            return  # nothing held, nothing to reach back to: the socket's first trades start the market
        symbol = self._label(native)
        fetcher, client = self.fetcher, self.client
        since = getattr(fetcher, "since", None)
        if fetcher is None or client is None or since is None or native not in self.symbols:
            reason = ("no REST API configured for this feed" if fetcher is None or client is None else
                      f"not a market this feed subscribes ({native})")
            self._short(native, held, None, f"{why}: {reason}")
            return
        now = self._clock_us()
        reach_s = getattr(fetcher, "reach_s", None)
        earliest = now - self.lookback_us
        if reach_s is not None:
            earliest = max(earliest, now - int(reach_s * 1_000_000))
        if held[1] < earliest:
            self._short(native, held, earliest, f"{why}: older than the venue's REST window")
        start = held[1] - int(RECONCILE_OVERLAP_S * 1_000_000)
        if held[1] >= self.floor_us:
            start = max(start, self.floor_us)
        start = max(start, earliest)
        # A venue's REST API may date trades more coarsely than its socket (Bitstamp: whole seconds): a
        # trade of the window's first second can carry a time before the start. Keep a second more.
        kept_from = start - REST_TIME_SLACK_US
        seen = self.seen
        attempt = kept_total = 0
        while True:
            try:
                async for page in since(client, native, start, connection):
                    keep: list[Trade] = []
                    for t in page.trades:
                        if t.ts_us >= kept_from and not (seen is not None and seen.holds(native, t.trade_id)):
                            keep.append(t)
                            if seen is not None:
                                seen.add(native, t.trade_id, t.ts_us)
                    await self._publish_page(native, page.body, page.received_us, page.frame_seq, keep,
                                             connection)
                    kept_total += len(keep)
                break
            except (RestError, MalformedResponse) as exc:
                attempt += 1
                if not await self._again(exc, attempt, native, held, f"the reconciliation after {why}"):
                    return
        if kept_total:
            self.counters.filled.labels(self.exchange, symbol).inc(kept_total)
            log.info("%s %s: %d trades the socket did not deliver recovered by reconciliation (%s)",
                     self.exchange, symbol, kept_total, why)

    async def _again(self, exc: RestError | MalformedResponse, attempt: int, native: str,
                     held: tuple[int, int] | None, doing: str) -> bool:
        """After a REST failure of a catch-up or a reconciliation: wait and say to ask again, or, refused
        outright or failing ``max_behind`` times, count the break as not covered and say to give up."""
        if not getattr(exc, "retryable", True) or attempt > self.max_behind:
            self._short(native, held, None, f"{doing}: REST failing ({exc})")
            return False
        delay = self._delay(attempt)
        log.warning("%s %s: %s failed: %s; retrying in %.1f s", self.exchange, self._label(native), doing, exc,
                    delay)
        await asyncio.sleep(delay)
        return True

    async def _publish_page(self, native: str, body: str, received_us: int, frame_seq: int, keep: list[Trade],
                            connection: _RestConnection) -> None:
        """One REST answer, as a raw frame followed by the trades kept from it, in one publish."""
        key = (keep[0].symbol or native) if keep else self._label(native)
        messages = [Message(self._raw_topic, key, RawFrame(self.exchange, connection.conn_id, frame_seq,
                                                           received_us, body, trade_count=len(keep),
                                                           source="rest", native_symbol=native))]
        messages.extend(Message(self._trades_topic, t.symbol or t.native_symbol, t) for t in keep)
        await self._publish(messages)
        if keep and self.counters.fetched is not None:
            self.counters.fetched.labels(self.exchange, self._label(native)).inc(len(keep))

    def _short(self, native: str, held: tuple[int, int] | None, oldest_us: int | None, why: str) -> None:
        """A break the most recent page did not cover: count it (how many trades it lost is unknown)."""
        if held is None:
            return  # nothing was held before it: nothing to reach back to
        symbol = self._label(native)
        CATCH_UP_SHORT.labels(self.exchange, symbol).inc()
        until = "" if oldest_us is None else f" and {oldest_us}"
        log.warning("%s %s: trades between exchange times %d%s (µs) may be lost: %s", self.exchange, symbol,
                    held[1], until or " and now", why)
