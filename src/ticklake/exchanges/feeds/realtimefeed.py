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
* a venue's shutdown notice (``ParsedFrame.kind == "shutdown"``), and a connection reaching the
  venue's maximum age (``rotates``: Binance ends connections at 24 h; ``feed.rotate_after_s``), replace
  the connection *with overlap*: the next one is opened, and the old one is closed only once the new
  one carries frames (plus ``rotation_overlap_s`` for frames in flight), so no trade falls between
  them; the repeats are dropped by the warehouse and the gap tracker sees no gap;
* every trade passes the venue's ``GapTracker``: a gap in a market's trade ids (a drop, a stall, a
  lost or garbled frame, the downtime before a start) is filled from the venue's REST API by the
  feed's ``Backfill``, whose pages are published like frames; a venue's per-connection message
  sequence (Coinbase ``sequence_num``) is checked too, and a jump is counted and logged;
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
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import cache, partial
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import msgspec
from picows import WSCloseCode, WSFrame, WSHandshakeError, WSListener, WSMsgType, WSTransport, ws_connect

from ticklake.exchanges.backfill import Backfill
from ticklake.exchanges.gaps import Gap, GapTracker, SequenceTracker
from ticklake.exchanges.mappers import FrameParser, parser_for
from ticklake.exchanges.rest import RestClient, TradeFetcher, default_url, fetcher_for
from ticklake.model import Message, MessageSink, ParsedFrame, RawFrame, ResumePoint, Trade, raw_topic, trades_topic
from ticklake.ops.metrics import (
    FEED_CONNECTED,
    FEED_FRAMES,
    FEED_LAG,
    FEED_PARSE_ERRORS,
    FEED_RECONNECTS,
    FEED_SEQUENCE_GAPS,
    FEED_SYMBOL_TRADES,
    FEED_TRADES,
)
from ticklake.settings import FeedSettings
from ticklake.venues import to_native

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
        self.sequence = SequenceTracker()
        self.first_frame = asyncio.Event()  # set by the first data frame: the connection carries data
        self.replace_wanted = asyncio.Event()  # set when the connection should be replaced (with overlap)
        self.replace_reason = ""
        self.replace_at: float | None = None  # monotonic time of a planned replacement (maximum age)
        self.control_sent: deque[float] = deque()  # monotonic send times of our control messages
        self.fragments: list[bytes] | None = None  # a fragmented message being reassembled
        self.fragments_size = 0
        # Set when the feed records: appends to the feed's buffer (file I/O happens in a task).
        self.record: Callable[[int, str | bytes, Direction], None] | None = None

    def disconnect(self, reason: str, graceful: bool = True) -> None:
        if not self.end_reason:
            self.end_reason = reason
        if self.transport is not None:
            self.transport.disconnect(graceful=graceful)

    def want_replacement(self, reason: str, prompt: bool = False) -> None:
        if not self.replace_wanted.is_set():
            self.replace_reason = reason
            self.prompt_reconnect = self.prompt_reconnect or prompt
            self.replace_wanted.set()

    def control_wait(self, per_second: int | None, now: float) -> float:
        """Seconds until another control message fits in the venue's per-second budget (0: now)."""
        sent = self.control_sent
        while sent and sent[0] <= now - 1.0:
            sent.popleft()
        if per_second is None or len(sent) < per_second:
            return 0.0
        return sent[len(sent) - per_second] + 1.0 - now


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
                session.control_sent.append(time.monotonic())  # pongs count against the message budget
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
        if session.frame_seq == 1:
            session.first_frame.set()
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
        self.sessions: list[_Session] = []  # open now: one, or two while one replaces the other
        self._runners: set[asyncio.Task[None]] = set()  # the frame loops of those sessions

    def _new_session(self) -> _Session:
        feed = self.feed
        session = _Session(f"{feed.exchange}-{secrets.token_hex(4)}")
        if feed.recorder is not None:
            session.record = partial(feed._record, session.conn_id, self.url)
        return session

    # --- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        feed = self.feed
        attempts = 0
        try:
            # Checked as well as cancelled: asyncio.wait_for in 3.11 can swallow a cancellation that
            # races with the inner connect failing, and a lost cancel must not keep a feed alive.
            while not feed.stopping:
                if attempts:
                    self._count_reconnect()
                attempts += 1
                self.state = "connecting"
                session = self._new_session()
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
                session = await self._serve(session)
                if feed.stopping:
                    break
                reason = session.end_reason or "connection closed by venue"
                self._failed(reason)
                delay = 0.0 if session.prompt_reconnect else self.backoff.next_delay()
                log.warning("%s: connection %s ended: %s; reconnecting in %.1f s", feed.exchange,
                            session.conn_id, reason, delay)
                await self._wait(delay)
        finally:
            self.state = "stopped"
            self.next_retry_at = None

    def _count_reconnect(self) -> None:
        self.reconnects += 1
        self.feed._m_reconnects.inc()

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
        await feed.connect_slot()
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
        if feed.rotates:
            session.replace_at = time.monotonic() + feed.settings.rotate_after_s

    async def _serve(self, session: _Session) -> _Session:
        """Run an open connection until it ends, replacing it with overlap whenever that is due or
        asked for; returns the session that ended last (its ``end_reason`` says why)."""
        self.state = "connected"
        self.backoff.connected()
        runner = self._start(session)
        try:
            while True:
                wanted = asyncio.ensure_future(session.replace_wanted.wait())
                timeout = None if session.replace_at is None else max(0.0, session.replace_at - time.monotonic())
                done, _ = await asyncio.wait({runner, wanted}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                wanted.cancel()
                if runner in done:
                    return session
                if not session.replace_wanted.is_set():
                    session.want_replacement(f"connection reached {self.feed.settings.rotate_after_s:g} s")
                successor = await self._replace(session, runner)
                if successor is None:
                    if runner.done():
                        return session
                    # Keep the old connection and try again later; it still carries everything.
                    session.replace_wanted.clear()
                    session.replace_at = time.monotonic() + self.backoff.next_delay()
                    continue
                session, runner = successor
        finally:
            for open_session in list(self.sessions):
                open_session.disconnect(open_session.end_reason or "stopped", graceful=False)
            for task in list(self._runners):  # only left running when we were cancelled (stop)
                task.cancel()
            await asyncio.gather(*self._runners, return_exceptions=True)
            self.sessions.clear()
            self.backoff.disconnected()

    def _start(self, session: _Session) -> asyncio.Task[None]:
        self.sessions.append(session)
        runner = asyncio.create_task(self._pump(session), name=f"{session.conn_id}-frames")
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)
        return runner

    async def _replace(self, old: _Session, old_runner: asyncio.Task[None]
                       ) -> tuple[_Session, asyncio.Task[None]] | None:
        """Open the next connection while ``old`` still runs; close ``old`` once the new one carries
        frames (and ``rotation_overlap_s`` more, for ``old``'s frames in flight). None: not possible now."""
        feed = self.feed
        self._count_reconnect()
        new = self._new_session()
        log.info("%s: replacing connection %s (%s): opening %s first", feed.exchange, old.conn_id,
                 old.replace_reason, new.conn_id)
        try:
            await self._open(new)
        except Exception as exc:
            self._failed(f"replacement: {_describe(exc, feed.settings.connect_timeout_s)}")
            log.warning("%s: cannot open a replacement for %s: %s", feed.exchange, old.conn_id, self.last_error)
            return None
        if feed.stopping:
            new.disconnect("stopped", graceful=False)
            return None
        runner = self._start(new)
        started = asyncio.ensure_future(new.first_frame.wait())
        # A quiet market may send no data frame for a while: after the stale timeout, a connection
        # that is still open is trusted as it is.
        await asyncio.wait({started, runner}, timeout=feed.stale_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if runner.done():
            self._failed(f"replacement {new.conn_id} ended: {new.end_reason or 'closed by venue'}")
            log.warning("%s: replacement %s ended before carrying frames; keeping %s", feed.exchange,
                        new.conn_id, old.conn_id)
            return None
        if not old_runner.done():
            await asyncio.wait({old_runner}, timeout=feed.rotation_overlap_s)
            old.disconnect(f"replaced by {new.conn_id}")
            await asyncio.gather(old_runner, return_exceptions=True)
        log.info("%s: connection %s replaced by %s", feed.exchange, old.conn_id, new.conn_id)
        return new, runner

    async def _pump(self, session: _Session) -> None:
        """Hand one connection's frames to the parser and the bus, in order, until it ends."""
        feed = self.feed
        feed._m_connected.inc()
        log.info("%s: connected %s to %s (%d symbols)", feed.exchange, session.conn_id,
                 _display_url(self.url), len(self.natives))
        helpers = [asyncio.create_task(self._subscribe(session)), asyncio.create_task(self._watchdog(session))]
        errors = _ErrorLog()
        try:
            while True:
                item = await session.queue.get()
                if item is None:
                    if not session.end_reason:  # no close frame, no reason of ours: the network
                        session.end_reason = "connection lost (no close frame)"
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
            if session in self.sessions:
                self.sessions.remove(session)

    async def _subscribe(self, session: _Session) -> None:
        transport = session.transport
        if transport is None:
            return
        feed = self.feed
        for index, message in enumerate(feed.subscribe_messages(self.natives)):
            if index:
                await asyncio.sleep(feed.send_interval_s)  # venues cap control messages per second
            wait = session.control_wait(feed.max_messages_per_s, time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)
            transport.send(WSMsgType.TEXT, message.encode())
            session.control_sent.append(time.monotonic())
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
        if trades:
            gaps = feed._observe_ids(trades)  # the gap tracker's hot path: usually None
            if gaps is not None:
                feed._gaps(gaps)
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
            log.info("%s: venue announced a shutdown on %s; replacing it now", exchange, session.conn_id)
            session.want_replacement("venue announced shutdown", prompt=True)
        elif kind == "subscribed":
            log.debug("%s: %s subscription acknowledged: %.200s", exchange, session.conn_id, text)
        elif parsed.error:
            errors.warn("%s: %s frame %d not understood: %s", exchange, session.conn_id, frame_seq, parsed.error)
        sequence = parsed.sequence
        if sequence is not None:
            last = session.sequence.last
            skipped = session.sequence.observe(sequence)
            if skipped:
                self.feed._m_sequence_gaps.inc()
                errors.warn("%s: %s sequence gap: %d after %s (%d messages lost)", exchange, session.conn_id,
                            sequence, last, skipped)


# --- the feed ------------------------------------------------------------------------------------


def rest_base_url(exchange: str, default_ws_url: str, ws_url: str, rest_url: str) -> str:
    """Where gaps of ``exchange`` are filled from: ``rest_url``, else the venue's public REST API when
    the WebSocket is the venue's own; "" when neither (a simulator or proxy without a REST URL: trades
    from the real venue would be mixed into another tape)."""
    if rest_url:
        return rest_url.rstrip("/")
    if not ws_url or ws_url.rstrip("/") == default_ws_url.rstrip("/"):
        return default_url(exchange)
    return ""



class RealtimeFeed:
    """One venue's realtime trade feed. Venue modules subclass it and say only what is venue-specific.

    ``run()`` keeps every connection alive until ``stop()``; it never raises. Tests shorten the
    watchdog with ``stale_timeout_s`` and lower ``max_symbols_per_connection`` on a subclass.

    Backfill: ``resume`` maps (exchange, native symbol) to the newest *stored* trade, so the downtime
    before a start is a gap like any other. Gaps are filled through ``rest`` (a shared ``RestClient``;
    the feed opens its own when none is given) from ``rest_url``, or from the venue's public REST API
    when the feed talks to the venue's own WebSocket. A feed pointed at another WebSocket (a simulator,
    a proxy) without a ``rest_url`` does not backfill: trades from the real venue would be mixed
    into another tape. ``fetcher`` overrides the venue's REST fetcher (tests: smaller pages).
    """

    exchange: ClassVar[str]
    default_url: ClassVar[str]
    max_symbols_per_connection: ClassVar[int] = 100
    stale_timeout_s: float = 60.0  # class default; the constructor may override it per instance
    send_interval_s: ClassVar[float] = 0.25  # spacing of our control messages on one connection
    max_messages_per_s: ClassVar[int | None] = None  # the venue's cap on our messages per connection
    rotates: ClassVar[bool] = False  # the venue ends connections at an age: replace them before (rotate_after_s)
    # The venue's cap on connection attempts, (attempts, seconds); repeated breaches get an IP banned.
    max_connects: ClassVar[tuple[int, float] | None] = None
    rotation_overlap_s: float = 1.0  # a replaced connection stays open this long after its successor's first frame

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
        self._m_sequence_gaps = FEED_SEQUENCE_GAPS.labels(self.exchange)
        self._m_symbol_trades: dict[str, Any] = {}  # native -> its FEED_SYMBOL_TRADES child
        natives = [to_native(self.exchange, s) for s in self.symbols]
        self._canonical = dict(zip(natives, self.symbols, strict=True))
        cap = max(1, self.max_symbols_per_connection)
        self.connections = [_Connection(self, i, natives[start:start + cap])
                            for i, start in enumerate(range(0, len(natives), cap))]
        self._tasks: list[asyncio.Task[None]] = []
        self._connect_times: deque[float] = deque()  # monotonic times of recent connection attempts
        self._stopped = False
        self._stop_event = asyncio.Event()
        # Gap tracking and backfill.
        exchange = self.exchange
        self.gaps = GapTracker({native: point for (venue, native), point in (resume or {}).items()
                                if venue == exchange})
        self._observe_ids = self.gaps.observe  # bound once: it runs for every trade frame
        rest_base = rest_base_url(exchange, self.default_url, self.base_url, rest_url)
        self._own_rest: RestClient | None = None
        if rest_base and rest is None:
            rest = self._own_rest = RestClient(self.settings, urls={exchange: rest_base})
        elif rest_base and rest is not None and rest_url:
            rest.urls[exchange] = rest_url.rstrip("/")
        if not rest_base:
            log.info("%s: WebSocket %s is not the venue's and no REST URL is set: gaps are detected, "
                     "not backfilled", exchange, _display_url(self.base_url))
        self.backfill = Backfill(
            exchange, self.gaps, self._publish,
            fetcher=(fetcher or fetcher_for(exchange)) if rest_base else None,
            client=rest if rest_base else None,
            lookback_s=self.settings.backfill_lookback_s,
            symbols=self._canonical,
            rng=self.rng,
        )

    # --- what a venue says ---------------------------------------------------------------------
    async def connect_slot(self) -> None:
        """Wait until one more connection attempt stays within the venue's ``max_connects``."""
        if self.max_connects is None:
            return
        count, window = self.max_connects
        times = self._connect_times
        while True:
            now = time.monotonic()
            while times and now - times[0] >= window:
                times.popleft()
            if len(times) < count:
                times.append(now)
                return
            wait = window - (now - times[0])
            log.warning("%s: %d connection attempts in %g s, the venue's limit: waiting %.1f s", self.exchange,
                        count, window, wait)
            await asyncio.sleep(wait)

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
            for session in list(connection.sessions):
                session.disconnect("stopped", graceful=False)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.backfill.close()
        if self._own_rest is not None:
            await self._own_rest.aclose()
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

    def _gaps(self, gaps: list[Gap]) -> None:
        for gap in gaps:
            self.backfill.add(gap)
