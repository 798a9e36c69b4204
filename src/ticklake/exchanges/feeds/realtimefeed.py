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
* server pings are answered with pongs echoing the payload (Binance disconnects otherwise);
* nothing the server sends can crash the feed: bad frames go to the raw topic with ``error`` set,
  fragmented messages are reassembled (picows hands over frames, not messages), binary frames and
  broken UTF-8 are kept;
* a venue's shutdown notice (``ParsedFrame.kind == "shutdown"``) reconnects at once, without backoff;
* an unreachable venue gives one clear log line per attempt, and the status says why and when the
  next attempt is.

Recording: with a recorder (``recording.SessionWriter``) every received data frame, every message
sent and every pong is buffered in memory by the callbacks and written by a task every 0.25 s, so
file I/O never runs inside the socket read path.

Back-pressure: frames are queued between the picows callback and the publishing task; when the
queue passes a high-water mark the socket stops being read (TCP flow control pushes back to the
venue) and reading resumes below a low-water mark. Memory stays bounded; no frame is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import ssl
import time
from collections.abc import Callable, Sequence
from functools import cache, partial
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import msgspec
from picows import WSCloseCode, WSFrame, WSHandshakeError, WSListener, WSMsgType, WSTransport, ws_connect

from ticklake.exchanges.mappers import FrameParser, parser_for
from ticklake.model import Message, MessageSink, ParsedFrame, RawFrame, Trade, raw_topic, trades_topic
from ticklake.ops.metrics import (
    FEED_CONNECTED,
    FEED_FRAMES,
    FEED_LAG,
    FEED_PARSE_ERRORS,
    FEED_RECONNECTS,
    FEED_TRADES,
)
from ticklake.settings import FeedSettings
from ticklake.symbols import to_native

log = logging.getLogger("ticklake.feeds")
# picows logs every connection at INFO; our own lines already say connected/ended and why.
_picows_log = logging.getLogger("ticklake.feeds.picows")
_picows_log.setLevel(logging.WARNING)

FeedState = Literal["connecting", "connected", "backoff", "stopped"]


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


Direction = Literal["recv", "sent"]


@runtime_checkable
class SessionRecorder(Protocol):
    """A session recorder: ``ticklake.exchanges.recording.SessionWriter`` (pass it directly)."""

    def write_frame(self, exchange: str, conn_id: str, t_us: int, payload: str | bytes, *,
                    direction: Direction = "recv", url: str = "") -> None: ...

    def flush(self) -> None: ...


FrameRecorder = SessionRecorder


_Record = tuple[str, str, int, str | bytes, Direction]  # conn_id, url, t_us, payload, direction


# --- backoff -------------------------------------------------------------------------------------


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(max_s, initial_s * 2**attempt)]``.

    Full jitter spreads the reconnects of many clients (or many connections of ours) after a venue
    outage instead of having them all retry in lock step (AWS Architecture Blog, "Exponential
    Backoff And Jitter").
    """
    ceiling = min(max_s, initial_s * 2.0 ** min(attempt, 64))
    return rng.uniform(0.0, ceiling)


class Backoff:
    """Attempt counter for one connection; reset once a connection stayed up ``stable_after_s``."""

    def __init__(self, initial_s: float, max_s: float, stable_after_s: float,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.stable_after_s = stable_after_s
        self.attempt = 0
        self._rng = rng or random.Random()
        self._clock = clock
        self._up_since: float | None = None

    def next_delay(self) -> float:
        delay = backoff_delay(self.attempt, self.initial_s, self.max_s, self._rng)
        self.attempt += 1
        return delay

    def connected(self) -> None:
        self._up_since = self._clock()

    def disconnected(self) -> None:
        """A connection ended; if it had been stable, start over from the initial delay."""
        if self._up_since is not None and self._clock() - self._up_since >= self.stable_after_s:
            self.attempt = 0
        self._up_since = None


# --- one connection ------------------------------------------------------------------------------


@cache
def _default_ssl_context() -> ssl.SSLContext:
    # Built once: loading the CA store costs milliseconds, and every reconnect would pay it.
    return ssl.create_default_context()


def _display_url(url: str) -> str:
    # A combined-stream URL carries every symbol; the log line needs the endpoint, not the list.
    base, sep, _ = url.partition("?")
    return base + "?..." if sep else base


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, WSHandshakeError) and exc.response is not None:
        return f"HTTP {int(exc.response.status)} on upgrade: {exc}"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, OSError | ssl.SSLError) else f"{type(exc).__name__}: {text}"


_HIGH_WATER = 10_000  # queued frames before the socket stops being read
_LOW_WATER = 1_000
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a reassembled message; picows caps single frames at 10 MiB
_QueueItem = tuple[int, int, bytes]  # frame_seq, received_us, payload


class _Session:
    """The state of one open WebSocket connection, shared by the picows callbacks and the tasks."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self.queue: asyncio.Queue[_QueueItem | None] = asyncio.Queue()
        self.transport: WSTransport | None = None
        self.frame_seq = 0
        self.last_frame_mono = time.monotonic()
        self.last_frame_at: float | None = None
        self.paused = False
        self.end_reason = ""
        self.prompt_reconnect = False  # the venue asked us to reconnect (shutdown notice)
        self.last_sequence: int | None = None
        self.fragments: list[bytes] | None = None  # a fragmented message being reassembled
        self.fragments_size = 0
        # Set when the feed records: appends to the feed's buffer (file I/O happens in a task).
        self.record: Callable[[int, str | bytes, Direction], None] | None = None

    def disconnect(self, reason: str, graceful: bool = True) -> None:
        if not self.end_reason:
            self.end_reason = reason
        if self.transport is not None:
            self.transport.disconnect(graceful=graceful)


class _FeedListener(WSListener):
    """picows callbacks: keep them minimal, they run inside the socket read path."""

    def __init__(self, session: _Session) -> None:
        self._session = session

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._session.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        session = self._session
        try:
            session.last_frame_mono = time.monotonic()
            msg_type = frame.msg_type
            if msg_type == WSMsgType.TEXT or msg_type == WSMsgType.BINARY:
                if frame.fin:
                    self._deliver(transport, frame.get_payload_as_bytes())
                else:  # the first fragment of a message (picows hands over frames, not messages)
                    session.fragments = [frame.get_payload_as_bytes()]
                    session.fragments_size = frame.payload_size
            elif msg_type == WSMsgType.CONTINUATION:
                self._continue(transport, frame)
            elif msg_type == WSMsgType.PING:
                # Binance: "send a pong with a copy of ping's payload as soon as possible".
                payload = frame.get_payload_as_bytes()
                transport.send_pong(payload)
                # The pong is recorded as a sent frame (the recording format lists pongs there);
                # the ping is not: received lines are replayed into the mappers as data frames.
                if session.record is not None:
                    session.record(time.time_ns() // 1000, payload, "sent")
            elif msg_type == WSMsgType.CLOSE:
                self._on_close(transport, frame)
        except Exception:  # nothing a server sends may take the feed down
            log.exception("%s: error handling a frame", session.conn_id)
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()

    def _deliver(self, transport: WSTransport, payload: bytes) -> None:
        """One complete message: stamp it, number it, queue it for the publishing task."""
        session = self._session
        received_us = time.time_ns() // 1000
        session.last_frame_at = received_us / 1_000_000
        session.frame_seq += 1
        session.queue.put_nowait((session.frame_seq, received_us, payload))
        if session.record is not None:
            session.record(received_us, payload, "recv")
        if not session.paused and session.queue.qsize() >= _HIGH_WATER:
            session.paused = True
            transport.underlying_transport.pause_reading()

    def _continue(self, transport: WSTransport, frame: WSFrame) -> None:
        session = self._session
        fragments = session.fragments
        if fragments is None:
            log.warning("%s: continuation frame without a message to continue; ignored", session.conn_id)
            return
        fragments.append(frame.get_payload_as_bytes())
        session.fragments_size += frame.payload_size
        if session.fragments_size > _MAX_MESSAGE_BYTES:
            session.fragments = None
            session.disconnect(f"fragmented message over {_MAX_MESSAGE_BYTES} bytes", graceful=False)
        elif frame.fin:
            session.fragments = None
            self._deliver(transport, b"".join(fragments))

    def _on_close(self, transport: WSTransport, frame: WSFrame) -> None:
        session = self._session
        code = frame.get_close_code()
        number = int(code.value) if isinstance(code, WSCloseCode) else int(code)
        reason = frame.get_close_reason() if frame.payload_size > 2 else ""
        if not session.end_reason:
            session.end_reason = f"closed by venue: {number} {reason}".rstrip()
        transport.send_close(code)  # complete the closing handshake, then drop the socket
        transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._session.queue.put_nowait(None)


class _ErrorLog:
    """At most one warning a second per connection for error frames, then a count of the rest."""

    def __init__(self) -> None:
        self._last = 0.0
        self._suppressed = 0

    def warn(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < 1.0:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} more since the last one)"
            self._suppressed = 0
        self._last = now
        log.warning(message, *args)


class _Connection:
    """One of a feed's connections: a fixed set of symbols, reconnected forever."""

    def __init__(self, feed: RealtimeFeed, index: int, natives: list[str]) -> None:
        self.feed = feed
        self.index = index
        self.natives = natives
        self.url = feed.connect_url(feed.base_url, natives)
        settings = feed.settings
        self.backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s, settings.stable_after_s,
                               rng=feed.rng)
        self.state: FeedState = "connecting"
        self.reconnects = 0
        self.last_error = ""
        self.last_error_at = 0.0
        self.last_frame_at: float | None = None
        self.next_retry_at: float | None = None
        self.session: _Session | None = None

    # --- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        feed = self.feed
        attempts = 0
        try:
            # Checked as well as cancelled: asyncio.wait_for in 3.11 can swallow a cancellation that
            # races with the inner connect failing, and a lost cancel must not keep a feed alive.
            while not feed.stopping:
                if attempts:
                    self.reconnects += 1
                    feed._m_reconnects.inc()
                attempts += 1
                self.state = "connecting"
                session = _Session(f"{feed.exchange}-{secrets.token_hex(4)}")
                if feed.recorder is not None:
                    session.record = partial(feed._record, session.conn_id, self.url)
                try:
                    await self._open(session)
                except Exception as exc:
                    if feed.stopping:
                        break
                    self._failed(_describe(exc, feed.settings.connect_timeout_s))
                    delay = self.backoff.next_delay()
                    if isinstance(exc, WSHandshakeError) and exc.response is not None \
                            and int(exc.response.status) in (418, 429):
                        delay = self.backoff.max_s  # rate limited or banned: the longest wait
                    log.warning("%s: cannot connect to %s: %s; retrying in %.1f s", feed.exchange,
                                _display_url(self.url), self.last_error, delay)
                    await self._wait(delay)
                    continue
                if feed.stopping:  # stopped while the handshake was completing
                    session.disconnect("stopped", graceful=False)
                    break
                reason = await self._serve(session)
                if feed.stopping:
                    break
                self._failed(reason)
                delay = 0.0 if session.prompt_reconnect else self.backoff.next_delay()
                log.warning("%s: connection %s ended: %s; reconnecting in %.1f s", feed.exchange,
                            session.conn_id, reason, delay)
                await self._wait(delay)
        finally:
            self.state = "stopped"
            self.next_retry_at = None

    def _failed(self, reason: str) -> None:
        self.last_error = reason
        self.last_error_at = time.time()

    async def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less when the feed is stopped meanwhile."""
        self.state = "backoff"
        self.next_retry_at = time.monotonic() + delay
        try:
            async with asyncio.timeout(delay):
                await self.feed._stop_event.wait()
        except TimeoutError:
            pass
        finally:
            self.next_retry_at = None

    async def _open(self, session: _Session) -> None:
        feed = self.feed
        timeout = feed.settings.connect_timeout_s
        ssl_context = _default_ssl_context() if self.url.startswith("wss://") else None
        try:
            async with asyncio.timeout(timeout):  # DNS + TCP + TLS + upgrade, all together
                await ws_connect(lambda: _FeedListener(session), self.url, ssl_context=ssl_context,
                                 websocket_handshake_timeout=timeout, enable_auto_pong=False,
                                 logger_name=_picows_log)
        except BaseException:
            # A handshake completing just as the timeout fired would otherwise leak the socket.
            if session.transport is not None:
                session.transport.disconnect(graceful=False)
            raise

    async def _serve(self, session: _Session) -> str:
        """Run one open connection until it ends; returns why it ended."""
        feed = self.feed
        self.session = session
        self.state = "connected"
        self.backoff.connected()
        feed._m_connected.inc()
        log.info("%s: connected %s to %s (%d symbols)", feed.exchange, session.conn_id,
                 _display_url(self.url), len(self.natives))
        helpers = [asyncio.create_task(self._subscribe(session)), asyncio.create_task(self._watchdog(session))]
        errors = _ErrorLog()
        try:
            while True:
                item = await session.queue.get()
                if item is None:
                    break
                await self._handle(session, item, errors)
                if session.paused and session.queue.qsize() <= _LOW_WATER and session.transport is not None:
                    session.paused = False
                    session.transport.underlying_transport.resume_reading()
        except Exception as exc:  # a bug of ours, not the venue's: log it and start over
            log.exception("%s: connection %s failed", feed.exchange, session.conn_id)
            session.disconnect(f"internal error: {type(exc).__name__}: {exc}", graceful=False)
        finally:
            for task in helpers:
                task.cancel()
            session.disconnect(session.end_reason or "stopped", graceful=False)
            feed._m_connected.dec()
            self.backoff.disconnected()
            self.session = None
        return session.end_reason or "connection closed by venue"

    async def _subscribe(self, session: _Session) -> None:
        transport = session.transport
        if transport is None:
            return
        for index, message in enumerate(self.feed.subscribe_messages(self.natives)):
            if index:
                await asyncio.sleep(self.feed.send_interval_s)  # venues cap control messages per second
            transport.send(WSMsgType.TEXT, message.encode())
            if session.record is not None:
                session.record(time.time_ns() // 1000, message, "sent")

    async def _watchdog(self, session: _Session) -> None:
        timeout = self.feed.stale_timeout_s
        while True:
            await asyncio.sleep(min(timeout / 4, 1.0))
            now = time.monotonic()
            if session.paused:
                # Not reading because the bus is slow is not the venue going silent.
                session.last_frame_mono = now
                continue
            idle = now - session.last_frame_mono
            if idle > timeout:
                log.warning("%s: connection %s is stale (no frame for %.1f s, limit %g s); reconnecting",
                            self.feed.exchange, session.conn_id, idle, timeout)
                session.disconnect(f"stale: no frame for {idle:.1f} s", graceful=False)
                return

    # --- one frame -----------------------------------------------------------------------------
    async def _handle(self, session: _Session, item: _QueueItem, errors: _ErrorLog) -> None:
        feed = self.feed
        frame_seq, received_us, data = item
        try:
            parsed = feed.parser(data, received_us, session.conn_id, frame_seq)
        except Exception as exc:  # mappers should never raise; if one does, the frame is still kept
            parsed = ParsedFrame("error", error=f"{feed.exchange} parser raised {type(exc).__name__}: {exc}")
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            text = data.decode("utf-8", "replace")
            parsed = ParsedFrame("error", error=f"{feed.exchange}: frame is not valid UTF-8 ({exc})")
        self.last_frame_at = session.last_frame_at
        trades = parsed.trades
        key = (trades[0].symbol or trades[0].native_symbol) if trades else session.conn_id
        messages = [Message(feed._raw_topic, key, RawFrame(feed.exchange, session.conn_id, frame_seq, received_us,
                                                          text, error=parsed.error, trade_count=len(trades)))]
        for trade in trades:
            messages.append(Message(feed._trades_topic, trade.symbol or trade.native_symbol, trade))
        await feed._publish(messages)
        feed._observe(parsed, trades, received_us)
        self._react(session, frame_seq, parsed, errors, text)

    def _react(self, session: _Session, frame_seq: int, parsed: ParsedFrame, errors: _ErrorLog,
               text: str) -> None:
        exchange = self.feed.exchange
        kind = parsed.kind
        if kind == "error":
            errors.warn("%s: %s frame %d: %s | %.200s", exchange, session.conn_id, frame_seq, parsed.error, text)
        elif kind == "shutdown":
            log.info("%s: venue announced a shutdown on %s; reconnecting now", exchange, session.conn_id)
            session.prompt_reconnect = True
            session.disconnect("venue announced shutdown")
        elif kind == "subscribed":
            log.debug("%s: %s subscription acknowledged: %.200s", exchange, session.conn_id, text)
        elif parsed.error:
            errors.warn("%s: %s frame %d not understood: %s", exchange, session.conn_id, frame_seq, parsed.error)
        sequence = parsed.sequence
        if sequence is not None:
            last = session.last_sequence
            if last is not None and sequence != last + 1:
                log.warning("%s: %s sequence gap: %d after %d", exchange, session.conn_id, sequence, last)
            session.last_sequence = sequence


# --- the feed ------------------------------------------------------------------------------------


class RealtimeFeed:
    """One venue's realtime trade feed. Venue modules subclass it and say only what is venue-specific.

    ``run()`` keeps every connection alive until ``stop()``; it never raises. Tests shorten the
    watchdog with ``stale_timeout_s`` and lower ``max_symbols_per_connection`` on a subclass.
    """

    exchange: ClassVar[str]
    default_url: ClassVar[str]
    max_symbols_per_connection: ClassVar[int] = 100
    stale_timeout_s: float = 60.0  # class default; the constructor may override it per instance
    send_interval_s: ClassVar[float] = 0.25  # spacing of our control messages on one connection

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
    ) -> None:
        self.symbols = list(dict.fromkeys(symbols))  # unique, in the configured order
        self.bus = bus
        self.settings = settings or FeedSettings()
        self.base_url = (ws_url or self.default_url).rstrip("/")
        self.recorder = recorder
        self._records: list[_Record] = []
        if stale_timeout_s is not None:
            self.stale_timeout_s = stale_timeout_s
        self.parser: FrameParser = parser or parser_for(self.exchange)
        self.rng = rng or random.Random()
        self._raw_topic = raw_topic(self.exchange)
        self._trades_topic = trades_topic(self.exchange)
        self._m_frames = FEED_FRAMES.labels(self.exchange)
        self._m_trades = FEED_TRADES.labels(self.exchange)
        self._m_errors = FEED_PARSE_ERRORS.labels(self.exchange)
        self._m_reconnects = FEED_RECONNECTS.labels(self.exchange)
        self._m_connected = FEED_CONNECTED.labels(self.exchange)
        self._m_lag = FEED_LAG.labels(self.exchange)
        natives = [to_native(self.exchange, s) for s in self.symbols]
        cap = max(1, self.max_symbols_per_connection)
        self.connections = [_Connection(self, i, natives[start:start + cap])
                            for i, start in enumerate(range(0, len(natives), cap))]
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self._stop_event = asyncio.Event()

    # --- what a venue says ---------------------------------------------------------------------
    def connect_url(self, base_url: str, natives: list[str]) -> str:
        """The URL one connection opens for ``natives`` (venue spelling of its symbols)."""
        return base_url

    def subscribe_messages(self, natives: list[str]) -> list[str]:
        """Text messages sent, in order, right after the connection opened."""
        return []

    # --- running -------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stopped

    async def run(self) -> None:
        """Run every connection until ``stop()``; never raises (cancellation aside)."""
        if self._stopped or self._tasks:
            return
        self._tasks = [asyncio.create_task(c.run(), name=f"feed-{self.exchange}-{c.index}")
                       for c in self.connections]
        if self.recorder is not None:
            self._tasks.append(asyncio.create_task(self._recording(), name=f"feed-{self.exchange}-recorder"))
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):  # cannot happen by design; say so if it does
                log.error("%s: a connection task ended with %r", self.exchange, result)

    async def stop(self) -> None:
        """Close every connection and end ``run()``."""
        self._stopped = True
        self._stop_event.set()
        for connection in self.connections:
            if connection.session is not None:
                connection.session.disconnect("stopped", graceful=False)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._write_records()
        for connection in self.connections:
            connection.state = "stopped"

    def status(self) -> FeedStatus:
        connections = self.connections
        now = time.monotonic()
        states = [c.state for c in connections]
        if self._stopped or not states or all(s == "stopped" for s in states):
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

    # --- internals shared by the connections ---------------------------------------------------
    def _record(self, conn_id: str, url: str, t_us: int, payload: str | bytes, direction: Direction) -> None:
        self._records.append((conn_id, url, t_us, payload, direction))

    async def _recording(self) -> None:
        # The recorder writes files synchronously: batch that out of the socket callbacks.
        while True:
            await asyncio.sleep(0.25)
            self._write_records()

    def _write_records(self) -> None:
        recorder = self.recorder
        records, self._records = self._records, []
        if recorder is None or not records:
            return
        try:
            for conn_id, url, t_us, payload, direction in records:
                recorder.write_frame(self.exchange, conn_id, t_us, payload, direction=direction, url=url)
            recorder.flush()
        except Exception:  # a full disk must not stop the feed; the bus still gets every frame
            log.exception("%s: recording %d frames failed", self.exchange, len(records))

    async def _publish(self, messages: list[Message]) -> None:
        """Hand one frame's messages to the bus; retry (holding the frame) if the bus fails."""
        delay = 0.1
        while True:
            try:
                await self.bus.publish(messages)
                return
            except Exception:
                log.exception("%s: publishing to the bus failed; retrying in %.1f s", self.exchange, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _observe(self, parsed: ParsedFrame, trades: tuple[Trade, ...], received_us: int) -> None:
        self._m_frames.inc()
        if parsed.error:
            self._m_errors.inc()
        if trades:
            self._m_trades.inc(len(trades))
            observe = self._m_lag.observe
            for trade in trades:
                observe(max(0.0, (received_us - trade.ts_us) / 1_000_000))
