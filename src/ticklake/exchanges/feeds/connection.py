"""One of a feed's connections: a fixed set of symbols on one URL, reconnected forever.

    connect (picows) -> send subscriptions -> receive until the connection ends -> back off -> again

A connection is replaced *with overlap* when the venue announced a shutdown or the connection
reached the venue's maximum age (``ConnectionSpec.rotate_after_s``): the next one is opened, and the
old one closed only once the new one carries frames (plus ``rotation_overlap_s`` for frames in
flight). A watchdog reconnects a connection that went silent for longer than the venue allows.

The connection knows nothing of the feed it belongs to: the feed gives it a ``ConnectionSpec``
(the venue's connection facts and the settings that apply) and four things to call, which are the
whole interface between them: ``handle_frame`` (each received frame, in order), ``connect_slot``
(wait for the venue's connection-attempt budget), ``record`` (the recording buffer, or None) and
``stopped`` (set when the feed stops).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, Literal

from picows import WSHandshakeError, WSMsgType, WSTransport, ws_connect

from ticklake.exchanges.feeds.backfilling import display_url
from ticklake.exchanges.feeds.backoff import Backoff
from ticklake.exchanges.feeds.session import LOW_WATER, Direction, FeedListener, QueueItem, Session
from ticklake.model import ParsedFrame
from ticklake.ops.metrics import FEED_CONNECTED, FEED_RECONNECTS, FEED_SEQUENCE_GAPS

log = logging.getLogger("ticklake.feeds")
# picows logs every connection at INFO; our own lines already say connected/ended and why.
_picows_log = logging.getLogger("ticklake.feeds.picows")
_picows_log.setLevel(logging.WARNING)

ConnectionState = Literal["connecting", "connected", "backoff", "stopped"]
# (conn_id, frame_seq, received_us, payload) -> what the mapper made of it, and the frame's text
FrameHandle = Callable[[str, int, int, bytes, AbstractSet[str]], Awaitable[tuple[ParsedFrame, str]]]
RecordFn = Callable[[str, str, int, str | bytes, Direction], None]  # conn_id, url, t_us, payload, direction


@dataclass(frozen=True)
class ConnectionSpec:
    """What one connection needs to know of its venue and of the feed settings."""

    exchange: str
    url: str  # what it opens (the venue's ``connect_url`` for its symbols)
    natives: tuple[str, ...]  # its symbols, in the venue's spelling
    subscribe_messages: tuple[str, ...]  # sent in order right after opening
    connect_timeout_s: float
    stale_timeout_s: float  # no frame at all for this long: the connection is dead
    rotate_after_s: float | None  # replace a connection this old (None: the venue does not end them)
    rotation_overlap_s: float
    send_interval_s: float  # spacing of our control messages
    max_messages_per_s: int | None  # the venue's cap on our messages per connection, pongs counted
    # A text message the venue wants from the client (OKX: "ping", answered "pong"; Bybit:
    # ``{"op":"ping"}``, answered with a pong); None: the venue keeps the connection alive itself.
    keepalive_message: str | None = None
    # When it is sent: after ``keepalive_after_s`` of silence, once per silence (OKX), or, with
    # ``keepalive_periodic``, every ``keepalive_after_s`` whatever the traffic (Bybit).
    keepalive_after_s: float = 20.0
    keepalive_periodic: bool = False


@cache
def _default_ssl_context() -> ssl.SSLContext:
    # Built once: loading the CA store costs milliseconds, and every reconnect would pay it.
    return ssl.create_default_context()


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, WSHandshakeError) and exc.response is not None:
        return f"HTTP {int(exc.response.status)} on upgrade: {exc}"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, OSError | ssl.SSLError) else f"{type(exc).__name__}: {text}"


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


class Connection:
    """One connection of a feed: ``run()`` until ``stopped`` is set; it never raises."""

    def __init__(self, spec: ConnectionSpec, index: int, backoff: Backoff, *, handle_frame: FrameHandle,
                 connect_slot: Callable[[], Awaitable[None]], stopped: asyncio.Event,
                 record: RecordFn | None = None) -> None:
        self.spec = spec
        self.index = index
        self.natives = list(spec.natives)
        self.url = spec.url
        self.backoff = backoff
        self._handle_frame = handle_frame
        # The mapper keeps other markets' trades out of silver (their symbol blanked).
        self.subscribed = frozenset(spec.natives)
        self._connect_slot = connect_slot
        self._stopped = stopped
        self._record = record
        self._m_reconnects = FEED_RECONNECTS.labels(spec.exchange)
        self._m_connected = FEED_CONNECTED.labels(spec.exchange)
        self._m_sequence_gaps = FEED_SEQUENCE_GAPS.labels(spec.exchange)
        self.state: ConnectionState = "connecting"
        self.reconnects = 0
        self.last_error = ""
        self.last_error_at = 0.0
        self.last_frame_at: float | None = None
        self._heard_before_mono: float | None = None  # the newest frame of the sessions that ended
        self.next_retry_at: float | None = None
        self.sessions: list[Session] = []  # open now: one, or two while one replaces the other
        self._runners: set[asyncio.Task[None]] = set()  # the frame loops of those sessions

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    def heard_mono(self) -> float | None:
        """Monotonic time of the newest frame of any kind (data, heartbeat, ping) this connection received,
        over all its sessions; None before the first. Kept by the socket callback already: no cost per frame."""
        times = [t for t in (self._heard_before_mono, *(s.heard_mono for s in self.sessions)) if t is not None]
        return max(times) if times else None

    def close(self) -> None:
        """Drop every open session at once (the feed is stopping)."""
        for session in list(self.sessions):
            session.disconnect("stopped", graceful=False)

    def _new_session(self) -> Session:
        session = Session(f"{self.spec.exchange}-{secrets.token_hex(4)}")
        if self._record is not None:
            session.record = partial(self._record, session.conn_id, self.url)
        return session

    # --- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        spec = self.spec
        attempts = 0
        try:
            # Checked as well as cancelled: asyncio.wait_for in 3.11 can swallow a cancellation that
            # races with the inner connect failing, and a lost cancel must not keep a feed alive.
            while not self.stopping:
                if attempts:
                    self._count_reconnect()
                attempts += 1
                self.state = "connecting"
                session = self._new_session()
                try:
                    await self._open(session)
                except Exception as exc:
                    if self.stopping:
                        break
                    self._failed(_describe(exc, spec.connect_timeout_s))
                    delay = self.backoff.next_delay()
                    if isinstance(exc, WSHandshakeError) and exc.response is not None \
                            and int(exc.response.status) in (418, 429):
                        delay = self.backoff.max_s  # rate limited or banned: the longest wait
                    log.warning("%s: cannot connect to %s: %s; retrying in %.1f s", spec.exchange,
                                display_url(self.url), self.last_error, delay)
                    await self._wait(delay)
                    continue
                if self.stopping:  # stopped while the handshake was completing
                    session.disconnect("stopped", graceful=False)
                    break
                session = await self._serve(session)
                if self.stopping:
                    break
                reason = session.end_reason or "connection closed by venue"
                self._failed(reason)
                delay = 0.0 if session.prompt_reconnect else self.backoff.next_delay()
                log.warning("%s: connection %s ended: %s; reconnecting in %.1f s", spec.exchange,
                            session.conn_id, reason, delay)
                await self._wait(delay)
        finally:
            self.state = "stopped"
            self.next_retry_at = None

    def _count_reconnect(self) -> None:
        self.reconnects += 1
        self._m_reconnects.inc()

    def _failed(self, reason: str) -> None:
        self.last_error = reason
        self.last_error_at = time.time()

    async def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less when the feed is stopped meanwhile."""
        self.state = "backoff"
        self.next_retry_at = time.monotonic() + delay
        try:
            async with asyncio.timeout(delay):
                await self._stopped.wait()
        except TimeoutError:
            pass
        finally:
            self.next_retry_at = None

    async def _open(self, session: Session) -> None:
        await self._connect_slot()
        timeout = self.spec.connect_timeout_s
        ssl_context = _default_ssl_context() if self.url.startswith("wss://") else None
        try:
            async with asyncio.timeout(timeout):  # DNS + TCP + TLS + upgrade, all together
                await ws_connect(lambda: FeedListener(session), self.url, ssl_context=ssl_context,
                                 websocket_handshake_timeout=timeout, enable_auto_pong=False,
                                 logger_name=_picows_log)
        except BaseException:
            # A handshake completing just as the timeout fired would otherwise leak the socket.
            if session.transport is not None:
                session.transport.disconnect(graceful=False)
            raise
        if self.spec.rotate_after_s is not None:
            session.replace_at = time.monotonic() + self.spec.rotate_after_s

    async def _serve(self, session: Session) -> Session:
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
                    session.want_replacement(f"connection reached {self.spec.rotate_after_s:g} s")
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
            for ended in list(self.sessions):
                self._forget(ended)
            self.backoff.disconnected()

    def _forget(self, session: Session) -> None:
        """Drop an ended session, keeping when it last heard from the venue (``heard_mono``)."""
        heard = session.heard_mono
        if heard is not None and (self._heard_before_mono is None or heard > self._heard_before_mono):
            self._heard_before_mono = heard
        self.sessions.remove(session)

    def _start(self, session: Session) -> asyncio.Task[None]:
        self.sessions.append(session)
        runner = asyncio.create_task(self._pump(session), name=f"{session.conn_id}-frames")
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)
        return runner

    async def _replace(self, old: Session, old_runner: asyncio.Task[None]
                       ) -> tuple[Session, asyncio.Task[None]] | None:
        """Open the next connection while ``old`` still runs; close ``old`` once the new one carries
        frames (and ``rotation_overlap_s`` more, for ``old``'s frames in flight). None: not possible now."""
        spec = self.spec
        self._count_reconnect()
        new = self._new_session()
        log.info("%s: replacing connection %s (%s): opening %s first", spec.exchange, old.conn_id,
                 old.replace_reason, new.conn_id)
        try:
            await self._open(new)
        except Exception as exc:
            self._failed(f"replacement: {_describe(exc, spec.connect_timeout_s)}")
            log.warning("%s: cannot open a replacement for %s: %s", spec.exchange, old.conn_id, self.last_error)
            return None
        if self.stopping:
            new.disconnect("stopped", graceful=False)
            return None
        runner = self._start(new)
        started = asyncio.ensure_future(new.first_frame.wait())
        # A quiet market may send no data frame for a while: after the stale timeout, a connection
        # that is still open is trusted as it is.
        await asyncio.wait({started, runner}, timeout=spec.stale_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if runner.done():
            self._failed(f"replacement {new.conn_id} ended: {new.end_reason or 'closed by venue'}")
            log.warning("%s: replacement %s ended before carrying frames; keeping %s", spec.exchange,
                        new.conn_id, old.conn_id)
            return None
        if not old_runner.done():
            await asyncio.wait({old_runner}, timeout=spec.rotation_overlap_s)
            old.disconnect(f"replaced by {new.conn_id}")
            await asyncio.gather(old_runner, return_exceptions=True)
        log.info("%s: connection %s replaced by %s", spec.exchange, old.conn_id, new.conn_id)
        return new, runner

    async def _pump(self, session: Session) -> None:
        """Hand one connection's frames to the parser and the bus, in order, until it ends."""
        exchange = self.spec.exchange
        self._m_connected.inc()
        log.info("%s: connected %s to %s (%d symbols)", exchange, session.conn_id,
                 display_url(self.url), len(self.natives))
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
                if session.paused and session.queue.qsize() <= LOW_WATER and session.transport is not None:
                    session.paused = False
                    session.transport.underlying_transport.resume_reading()
        except Exception as exc:  # a bug of ours, not the venue's: log it and start over
            log.exception("%s: connection %s failed", exchange, session.conn_id)
            session.disconnect(f"internal error: {type(exc).__name__}: {exc}", graceful=False)
        finally:
            for task in helpers:
                task.cancel()
            session.disconnect(session.end_reason or "stopped", graceful=False)
            self._m_connected.dec()
            if session in self.sessions:
                self._forget(session)

    async def _subscribe(self, session: Session) -> None:
        transport = session.transport
        if transport is None:
            return
        spec = self.spec
        for index, message in enumerate(spec.subscribe_messages):
            if index:
                await asyncio.sleep(spec.send_interval_s)  # venues cap control messages per second
            wait = session.control_wait(spec.max_messages_per_s, time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)
            self._send_control(session, transport, message)

    @staticmethod
    def _send_control(session: Session, transport: WSTransport, message: str) -> None:
        """Send one text message of ours: counted against the venue's message budget, and recorded."""
        transport.send(WSMsgType.TEXT, message.encode())
        session.control_sent.append(time.monotonic())
        if session.record is not None:
            session.record(time.time_ns() // 1000, message, "sent")

    async def _watchdog(self, session: Session) -> None:
        spec = self.spec
        timeout = spec.stale_timeout_s
        keepalive = spec.keepalive_message
        tick = min(timeout, spec.keepalive_after_s) / 4 if keepalive is not None else timeout / 4
        periodic = keepalive is not None and spec.keepalive_periodic
        # The keep-alive is the one hook for both kinds of venue: a periodic one is due
        # ``keepalive_after_s`` after the last one sent (or after the connection opened), whatever arrived.
        if periodic:
            session.keepalive_sent_mono = time.monotonic()
        while True:
            await asyncio.sleep(min(tick, 1.0))
            now = time.monotonic()
            if (periodic and keepalive is not None and session.transport is not None and not session.end_reason
                    and now - session.keepalive_sent_mono >= spec.keepalive_after_s):
                # On a fixed period, even while paused: the venue wants to hear from us, not to be read.
                self._send_control(session, session.transport, keepalive)
                session.keepalive_sent_mono = now
            if session.paused:
                # Not reading because the bus is slow is not the venue going silent.
                session.last_frame_mono = now
                continue
            idle = now - session.last_frame_mono
            if (keepalive is not None and not periodic and idle >= spec.keepalive_after_s
                    and session.transport is not None and session.keepalive_sent_mono < session.last_frame_mono):
                # Once per silence: the venue's answer is a frame, which ends the silence.
                self._send_control(session, session.transport, keepalive)
                session.keepalive_sent_mono = now
            if idle > timeout:
                log.warning("%s: connection %s is stale (no frame for %.1f s, limit %g s); reconnecting",
                            self.spec.exchange, session.conn_id, idle, timeout)
                session.disconnect(f"stale: no frame for {idle:.1f} s", graceful=False)
                return

    # --- one frame -----------------------------------------------------------------------------
    async def _handle(self, session: Session, item: QueueItem, errors: _ErrorLog) -> None:
        frame_seq, received_us, data = item
        self.last_frame_at = session.last_frame_at
        parsed, text = await self._handle_frame(session.conn_id, frame_seq, received_us, data, self.subscribed)
        self._react(session, frame_seq, parsed, errors, text)

    def _react(self, session: Session, frame_seq: int, parsed: ParsedFrame, errors: _ErrorLog,
               text: str) -> None:
        exchange = self.spec.exchange
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
                self._m_sequence_gaps.inc()
                errors.warn("%s: %s sequence gap: %d after %s (%d messages lost)", exchange, session.conn_id,
                            sequence, last, skipped)
