"""The connection logic every venue shares (the role of tardis-node's ``realtimefeed.ts``).

A ``RealtimeFeed`` owns one venue: it spreads the symbols over as many connections as the venue's
limits ask for, and runs each connection in a loop that never gives up and never raises:

    connect (picows) -> send subscriptions -> receive until the connection ends -> back off -> again

Per received data frame, in receive order: ``received_us`` is taken in the picows callback (before
any queueing), ``frame_seq`` counts 1, 2, 3 ... on that connection, the venue's pure parser maps the
frame, and ONE ``bus.publish`` call carries the raw frame followed by its trades, so a consumer sees
a frame's trades right after the frame, and frames in order.

Robustness rules, each from something that went wrong before (shared notes, lessons.md):

* reconnect with exponential backoff and full jitter, reset once a connection proved stable;
* a watchdog reconnects a connection that went silent (no frame, not even a ping or heartbeat, for
  longer than the venue allows), since a half-open TCP connection can stay "up" for hours;
* server pings are answered with pongs echoing the payload (Binance disconnects otherwise), and a
  venue that wants the client to speak gets its keep-alive text, after a silence (OKX ``ping``) or on
  a fixed period (Bybit ``{"op":"ping"}`` every 20 s);
* nothing the server sends can crash the feed: bad frames go to the raw topic with ``error`` set,
  fragmented messages are reassembled (picows hands over frames, not messages), binary frames and
  broken UTF-8 are kept;
* a venue's shutdown notice (``ParsedFrame.kind == "shutdown"``), and a connection reaching the
  venue's maximum age (``rotates``: Binance ends connections at 24 h; ``feed.rotate_after_s``), replace
  the connection *with overlap*: the next one is opened, and the old one is closed only once the new
  one carries frames (plus ``rotation_overlap_s`` for frames in flight), so no trade falls between
  them; the repeats are dropped by the warehouse and the gap tracker sees no gap;
* every trade passes the venue's ``GapTracker``: a gap in a market's trade ids (a drop, a stall, a
  lost or garbled frame, the downtime before a start) is filled from the venue's REST API by the
  feed's ``Backfill``, whose pages are published like frames; a venue's per-connection message
  sequence (Coinbase ``sequence_num``) is checked too, and a jump is counted and logged;
* a venue whose trade ids are shared by all its markets shows no gap by id: every *break* (a new
  connection, an unreadable frame, a sequence jump) has the backfill read the markets' recent trades
  back (Bybit: the newest page; venues reconciled by time: the window since the newest trade held), and
  those venues also read each market's last period back every ``feed.reconcile_every_s``;
* an unreachable venue gives one clear log line per attempt, and the status says why and when the
  next attempt is.

Recording: with a recorder (``recording.SessionWriter``) every received data frame, every message
sent and every pong is buffered in memory by the callbacks and written by a task every 0.25 s, so
file I/O never runs inside the socket read path.

Where each job lives (this module only puts them together, per venue):

* ``backoff.py``: reconnect pacing; ``limiter.py``: the venue's connection-attempt budget;
* ``session.py``: one open socket's state and its picows callbacks (stamping, reassembly, pongs,
  pausing reads);
* ``connection.py``: one connection's lifecycle (connect, subscribe, watchdog, rotation with
  overlap), given a ``ConnectionSpec`` and four callables: the whole interface to the feed;
* ``frames.py``: each frame parsed, published, counted, its trade ids checked for gaps;
* ``recordbuffer.py``: the recording buffer; ``backfilling.py``: the REST client behind the backfill.

Back-pressure: frames are queued between the picows callback and the publishing task; when the
queue passes a high-water mark the socket stops being read (TCP flow control pushes back to the
venue) and reading resumes below a low-water mark. Memory stays bounded; no frame is dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar

import msgspec

from ticklake.exchanges.backfill import RECONCILE_OVERLAP_S
from ticklake.exchanges.feeds.backfilling import feed_backfill, rest_base_url
from ticklake.exchanges.feeds.backoff import Backoff, backoff_delay
from ticklake.exchanges.feeds.connection import Connection, ConnectionSpec, ConnectionState
from ticklake.exchanges.feeds.frames import FrameHandler
from ticklake.exchanges.feeds.limiter import ConnectLimiter
from ticklake.exchanges.feeds.recordbuffer import FrameRecorder, RecordBuffer, SessionRecorder
from ticklake.exchanges.gaps import Gap, GapTracker, SeenTrades
from ticklake.exchanges.mappers import FrameParser, parser_for
from ticklake.exchanges.rest import RestClient, TradeFetcher
from ticklake.model import MessageSink, ResumePoint
from ticklake.ops.metrics import FEED_LAST_FRAME
from ticklake.settings import FeedSettings
from ticklake.venues import to_native, venue

__all__ = [
    "Backoff",
    "FeedState",
    "FeedStatus",
    "FrameRecorder",
    "RealtimeFeed",
    "SessionRecorder",
    "backoff_delay",
    "rest_base_url",
]

log = logging.getLogger("ticklake.feeds")

FeedState = ConnectionState


class FeedStatus(msgspec.Struct):
    """One venue's feed, for /health."""

    exchange: str
    state: FeedState  # connected: every connection is up; backoff: one waits to retry
    connections: int  # connections open now
    expected_connections: int  # connections the symbols need
    last_error: str  # why the last connection attempt failed or the last connection ended
    last_frame_at: float | None  # epoch seconds of the newest frame on any connection
    reconnects: int  # connection attempts after each connection's first
    next_retry_in_s: float | None  # the soonest retry, while some connection backs off


class RealtimeFeed:
    """One venue's realtime trade feed. Venue modules subclass it and say only what is venue-specific.

    ``run()`` keeps every connection alive until ``stop()``; it never raises. Tests shorten the
    watchdog with ``stale_timeout_s`` and lower ``max_symbols_per_connection`` on a subclass.

    Backfill: ``resume`` maps (exchange, native symbol) to the newest *stored* trade, so the downtime
    before a start is a gap like any other. Gaps are filled through ``rest`` (a shared ``RestClient``;
    the feed opens its own when none is given) from ``rest_url``, or from the venue's public REST API
    when the feed talks to the venue's own WebSocket (``backfilling.py``). ``fetcher`` overrides the
    venue's REST fetcher (tests: smaller pages).
    """

    exchange: ClassVar[str]
    default_url: ClassVar[str]
    max_symbols_per_connection: ClassVar[int] = 100
    stale_timeout_s: float = 60.0  # class default; the constructor may override it per instance
    send_interval_s: ClassVar[float] = 0.25  # spacing of our control messages on one connection
    max_messages_per_s: ClassVar[int | None] = None  # the venue's cap on our messages per connection
    rotates: ClassVar[bool] = False  # the venue ends connections at an age: replace them before (rotate_after_s)
    # The venue wants a text message from us after this much silence (OKX: "ping" when nothing came for
    # less than 30 s; it answers "pong"), or on a fixed period (keepalive_periodic: Bybit's
    # ``{"op":"ping"}``); None: it keeps connections alive itself (pings, heartbeats).
    keepalive_message: ClassVar[str | None] = None
    keepalive_after_s: float = 20.0  # class default; a subclass (tests) may shorten it
    # True: send it every keepalive_after_s whatever the traffic (Bybit: "send the ping heartbeat packet
    # every 20 seconds"), instead of once per silence of keepalive_after_s (OKX).
    keepalive_periodic: ClassVar[bool] = False
    # The venue's cap on connection attempts, (attempts, seconds); repeated breaches get an IP banned.
    max_connects: ClassVar[tuple[int, float] | None] = None
    # A venue reconciled by time reads each market's last period back every ``feed.reconcile_every_s``, for
    # losses no break shows. False: every lost frame shows as a break (Bitfinex's per-connection sequence),
    # so the periodic reads would find nothing and only spend the venue's REST budget.
    periodic_reconcile: ClassVar[bool] = True
    # A replaced connection stays open this long after its successor's first frame (a property below:
    # setting it on a feed reaches its connections).
    default_rotation_overlap_s: ClassVar[float] = 1.0

    def __init__(
        self,
        symbols: Sequence[str],
        bus: MessageSink,
        settings: FeedSettings | None = None,
        ws_url: str = "",
        *,
        recorder: FrameRecorder | None = None,
        stale_timeout_s: float | None = None,
        parser: FrameParser | None = None,
        rng: random.Random | None = None,
        resume: Mapping[tuple[str, str], ResumePoint] | None = None,
        rest: RestClient | None = None,
        rest_url: str = "",
        fetcher: TradeFetcher | None = None,
    ) -> None:
        exchange = self.exchange
        self.symbols = list(dict.fromkeys(symbols))  # unique, in the configured order
        self.bus = bus
        self.settings = settings = settings or FeedSettings()
        self.base_url = (ws_url or self.default_url).rstrip("/")
        self.recorder = recorder
        if stale_timeout_s is not None:
            self.stale_timeout_s = stale_timeout_s
        self.parser: FrameParser = parser or parser_for(exchange)
        self.rng = rng or random.Random()
        natives = [to_native(exchange, s) for s in self.symbols]
        self._canonical = dict(zip(natives, self.symbols, strict=True))
        self.gaps = GapTracker({native: point for (venue, native), point in (resume or {}).items()
                                if venue == exchange})
        # A venue whose trade ids do not count a market's trades (``Venue.ids_count_trades``) cannot show
        # a gap by id: every break the feed can see (a new connection, a frame it could not read) asks
        # the backfill for each market's most recent trades instead (``Backfill.catch_up``).
        self.ids_count_trades = venue(exchange).ids_count_trades
        # A venue reconciled by time (global ids, docs/architecture.md "Completeness per venue") reads each
        # break's window, and every ``feed.reconcile_every_s`` the last period's, from REST: ``seen`` keeps
        # the ids held long enough for those windows to publish only what the socket missed.
        self.reconciled = venue(exchange).completeness == "reconciled-by-time"
        self._started_us = time.time_ns() // 1000
        self.seen = (SeenTrades(int((2 * settings.reconcile_every_s + 2 * RECONCILE_OVERLAP_S + 60) * 1_000_000))
                     if self.reconciled else None)
        self.frames = FrameHandler(exchange, self.parser, bus, self.gaps, self._canonical,
                                   track_ids=self.ids_count_trades, seen=self.seen)
        if not self.ids_count_trades:
            self.frames.newest.update({native: (point.trade_id, point.ts_us)
                                       for (venue_name, native), point in (resume or {}).items()
                                       if venue_name == exchange})
        self.backfill, self._own_rest = feed_backfill(
            exchange, settings, self.gaps, self.frames.publish, default_ws_url=self.default_url,
            ws_url=self.base_url, rest=rest, rest_url=rest_url, fetcher=fetcher, symbols=self._canonical,
            rng=self.rng, seen=self.seen, floor_us=self._started_us)
        self.frames.on_gaps = self._gaps
        self.frames.on_break = self._break
        self._limiter = ConnectLimiter(exchange, self.max_connects)
        self._records = RecordBuffer(exchange, recorder) if recorder is not None else None
        self._stop_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        cap = max(1, self.max_symbols_per_connection)
        self.connections = [self._connection(i, natives[start:start + cap])
                            for i, start in enumerate(range(0, len(natives), cap))]
        # Computed at each scrape from what the socket callbacks keep anyway: nothing added per frame.
        FEED_LAST_FRAME.labels(exchange).set_function(self.last_heard_at)

    def _connection(self, index: int, natives: list[str]) -> Connection:
        settings = self.settings
        spec = ConnectionSpec(
            exchange=self.exchange,
            url=self.connect_url(self.base_url, natives),
            natives=tuple(natives),
            subscribe_messages=tuple(self.subscribe_messages(natives)),
            connect_timeout_s=settings.connect_timeout_s,
            stale_timeout_s=self.stale_timeout_s,
            rotate_after_s=settings.rotate_after_s if self.rotates else None,
            rotation_overlap_s=self.default_rotation_overlap_s,
            send_interval_s=self.send_interval_s,
            max_messages_per_s=self.max_messages_per_s,
            keepalive_message=self.keepalive_message,
            keepalive_after_s=self.keepalive_after_s,
            keepalive_periodic=self.keepalive_periodic,
        )
        backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s, settings.stable_after_s, rng=self.rng)
        return Connection(spec, index, backoff, handle_frame=self.frames.handle, connect_slot=self.connect_slot,
                          stopped=self._stop_event,
                          record=self._records.record if self._records is not None else None)

    @property
    def rotation_overlap_s(self) -> float:
        return self.connections[0].spec.rotation_overlap_s if self.connections else self.default_rotation_overlap_s

    @rotation_overlap_s.setter
    def rotation_overlap_s(self, seconds: float) -> None:
        for connection in self.connections:
            connection.spec = dataclasses.replace(connection.spec, rotation_overlap_s=seconds)

    # --- what a venue says ---------------------------------------------------------------------
    async def connect_slot(self) -> None:
        """Wait until one more connection attempt stays within the venue's ``max_connects``."""
        await self._limiter.slot()

    def connect_url(self, base_url: str, natives: list[str]) -> str:
        """The URL one connection opens for ``natives`` (venue spelling of its symbols)."""
        return base_url

    def subscribe_messages(self, natives: list[str]) -> list[str]:
        """Text messages sent, in order, right after the connection opened."""
        return []

    @property
    def natives(self) -> list[str]:
        """The venue's spelling of the symbols this feed subscribes."""
        return list(self._canonical)

    # --- running -------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    async def run(self) -> None:
        """Run every connection until ``stop()``; never raises (cancellation aside)."""
        if self.stopping or self._tasks:
            return
        self._tasks = [asyncio.create_task(c.run(), name=f"feed-{self.exchange}-{c.index}")
                       for c in self.connections]
        if self._records is not None:
            self._tasks.append(asyncio.create_task(self._records.run(), name=f"feed-{self.exchange}-recorder"))
        if self.reconciled and self.periodic_reconcile and self.backfill.fetcher is not None:
            self._tasks.append(asyncio.create_task(self._reconcile_periodically(),
                                                   name=f"feed-{self.exchange}-reconcile"))
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):  # cannot happen by design; say so if it does
                log.error("%s: a connection task ended with %r", self.exchange, result)

    async def stop(self) -> None:
        """Close every connection and end ``run()``."""
        self._stop_event.set()
        for connection in self.connections:
            connection.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.backfill.close()
        if self._own_rest is not None:
            await self._own_rest.aclose()
        if self._records is not None:
            self._records.write()
        for connection in self.connections:
            connection.state = "stopped"

    def status(self) -> FeedStatus:
        connections = self.connections
        now = time.monotonic()
        states = [c.state for c in connections]
        if self.stopping or not states or all(s == "stopped" for s in states):
            state: FeedState = "stopped"
        elif states and all(s == "connected" for s in states):
            state = "connected"
        elif "backoff" in states:
            state = "backoff"
        else:
            state = "connecting"
        errored = [c for c in connections if c.last_error]
        last_error = max(errored, key=lambda c: c.last_error_at).last_error if errored else ""
        frames = [c.last_frame_at for c in connections if c.last_frame_at is not None]
        retries = [c.next_retry_at - now for c in connections if c.next_retry_at is not None]
        return FeedStatus(
            exchange=self.exchange,
            state=state,
            connections=states.count("connected"),
            expected_connections=len(connections),
            last_error=last_error,
            last_frame_at=max(frames) if frames else None,
            reconnects=sum(c.reconnects for c in connections),
            next_retry_in_s=round(max(0.0, min(retries)), 3) if retries else None,
        )

    def last_heard_at(self) -> float:
        """Epoch seconds at which the venue was last heard on its most silent connection: the oldest of
        each connection's newest frame of any kind (pings and heartbeats too, so a quiet market is not
        silence), a connection that has received nothing counting from the feed's start."""
        wall, mono = time.time(), time.monotonic()
        started = self._started_us / 1_000_000
        heard = [c.heard_mono() for c in self.connections]
        return min((started if t is None else wall - (mono - t) for t in heard), default=started)

    def _gaps(self, gaps: list[Gap]) -> None:
        for gap in gaps:
            self.backfill.add(gap)

    def _break(self, natives: Iterable[str], why: str) -> None:
        newest = self.frames.newest
        for native in natives:
            if native not in self._canonical:
                continue
            held = newest.get(native)
            if self.reconciled and held is None:
                held = (0, self._started_us)  # nothing held yet: the window starts at the feed's start
            self.backfill.catch_up(native, held, why)

    async def _reconcile_periodically(self) -> None:
        """Every ``feed.reconcile_every_s``, each market's trades since the previous tick (the backfill starts
        each window ``RECONCILE_OVERLAP_S`` earlier): the losses no break shows (a frame the venue never
        sent, a stall the watchdog did not end) are found there. The windows chain, so every moment since
        the start is read back once after the fact."""
        period = self.settings.reconcile_every_s
        previous_us = self._started_us
        while not self.stopping:
            try:
                await asyncio.wait_for(self._stop_event.wait(), period)
                return
            except TimeoutError:
                pass
            now_us = time.time_ns() // 1000
            for native in self._canonical:
                self.backfill.catch_up(native, (0, previous_us), "periodic reconciliation", counted=False)
            previous_us = now_us
