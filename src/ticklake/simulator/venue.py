"""What every simulated venue shares: a picows server, its connections, the tapes, the clocks.

A venue module (binance.py, kraken.py, coinbase.py) only says how its protocol looks: which paths it
serves, what it answers to a client message, what a trade frame looks like, what it sends on a
timer. Everything here is venue-neutral.

Fault seam: every frame a venue sends goes through ``VenueServer.send``, which hands it to
``frame_filter`` when one is set. A filter receives the connection and the frame text and returns
the frames to actually send (none to drop one, two to duplicate, a broken one to corrupt it, ...).
Stalls, skipped ids and REST endpoints serving the tape attach at the same places later.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar
from urllib.parse import urlsplit

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from ticklake.simulator.tape import SymbolTape, TapeGenerator, TapeTrade, instrument_for

log = logging.getLogger(__name__)
# picows logs every connection at INFO: too chatty for a simulator serving test after test.
_picows_log = logging.getLogger("ticklake.simulator.picows")
_picows_log.setLevel(logging.WARNING)


@dataclass
class VenueOptions:
    """Protocol timings and sizes. Defaults are the real venues' values; tests shorten them."""

    ping_interval_s: float = 20.0  # Binance: a ping frame this often (docs: every 20 s)
    pong_timeout_s: float = 60.0  # Binance: disconnect when a ping stays unanswered this long (1 min)
    max_incoming_per_s: int = 5  # Binance: incoming messages (ping, pong, JSON) per second per connection
    heartbeat_interval_s: float | None = 1.0  # Kraken/Coinbase heartbeats; None: never send any
    subscribe_timeout_s: float = 5.0  # Coinbase: disconnect when no subscribe arrives within this
    idle_close_s: float = 75.0  # Coinbase: "channels close within 60-90 s" without heartbeats
    snapshot_size: int = 50  # Kraken v2 trade snapshot: the last 50 trades (Coinbase: the same here)
    batch_interval_s: float = 0.25  # Coinbase market_trades: "updates are collected over the last 250 ms"
    history_trades: int = 100  # trades "before start", so the first snapshot is already full
    tick_s: float = 0.02  # resolution of timers (heartbeats, pings, timeouts)


@dataclass
class ConnectionRecord:
    """What a test may check about one client connection: path, messages received, the end."""

    conn_id: int
    path: str
    connected_at: float
    received: list[str] = field(default_factory=list)
    closed_at: float | None = None
    close_reason: str = ""


class SimConnection:
    """One accepted client connection."""

    def __init__(self, conn_id: int, transport: WSTransport, path: str) -> None:
        now = time.monotonic()
        self.conn_id = conn_id
        self.transport = transport
        self.path = path
        self.symbols: set[str] = set()  # canonical symbols with a trade subscription
        self.connected_at = now
        self.last_sent = now
        self.closed = False
        self.record = ConnectionRecord(conn_id, path, time.time())

    def close(self, code: WSCloseCode, reason: str) -> None:
        """Close the way a venue does: a CLOSE frame, then the TCP connection."""
        if self.closed:
            return
        self.record.close_reason = reason
        self.transport.send_close(code, reason.encode())
        self.transport.disconnect()


ConnT = TypeVar("ConnT", bound=SimConnection)
FrameFilter = Callable[[SimConnection, str], list[str]]


def rfc3339_us(ts_us: int) -> str:
    """``2023-09-25T07:48:36.925533Z`` from microseconds (integer arithmetic, no float rounding)."""
    seconds, micros = divmod(ts_us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def now_us() -> int:
    return time.time_ns() // 1000


class _ServerListener(WSListener):
    def __init__(self, venue: VenueServer[SimConnection], path: str) -> None:
        self._venue = venue
        self._path = path
        self._conn: SimConnection | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._conn = self._venue._opened(transport, self._path)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        conn = self._conn
        if conn is None:
            return
        msg_type = frame.msg_type
        if msg_type == WSMsgType.TEXT or msg_type == WSMsgType.BINARY:
            text = frame.get_payload_as_bytes().decode("utf-8", "replace")
            conn.record.received.append(text)
            self._venue.on_text(conn, text)
        elif msg_type == WSMsgType.PING:
            payload = frame.get_payload_as_bytes()
            transport.send_pong(payload)
            self._venue.on_ping(conn, payload)
        elif msg_type == WSMsgType.PONG:
            self._venue.on_pong(conn, frame.get_payload_as_bytes())
        elif msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self._conn is not None:
            self._venue._closed(self._conn)


class VenueServer(ABC, Generic[ConnT]):
    """One simulated venue: a WebSocket server on loopback, its tapes and its timers."""

    exchange: ClassVar[str]
    base_path: ClassVar[str] = ""  # appended to ws://host:port to form the venue's base URL

    def __init__(self, symbols: list[str], seed: int, trades_per_second: float, options: VenueOptions) -> None:
        self.options = options
        self.frame_filter: FrameFilter | None = None
        self.connections: dict[int, ConnT] = {}
        self.records: list[ConnectionRecord] = []
        self._ids = itertools.count(1)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._paused_at: int | None = None
        self.host = ""
        self.port = 0
        start = now_us()
        # Start the schedule early enough that about ``history_trades`` trades already happened.
        history_us = int(options.history_trades / trades_per_second * 1_000_000)
        self.tapes: dict[str, SymbolTape] = {}
        for symbol in symbols:
            generator = TapeGenerator(instrument_for(self.exchange, symbol), seed, trades_per_second,
                                      start - history_us)
            tape = SymbolTape(generator)
            tape.generate_until(start)
            self.tapes[symbol] = tape
        self.by_native = {tape.generator.instrument.native: symbol for symbol, tape in self.tapes.items()}

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self, host: str, port: int = 0) -> None:
        self._server = await ws_create_server(
            self._route, host, port, enable_auto_pong=False, logger_name=_picows_log
        )
        sockets = self._server.sockets
        self.host, self.port = host, int(sockets[0].getsockname()[1])
        self._tasks = [
            asyncio.create_task(self._generate(), name=f"sim-{self.exchange}-tape"),
            asyncio.create_task(self._timers(), name=f"sim-{self.exchange}-timers"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            conn.transport.disconnect(graceful=False)
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def base_url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.base_path}"

    # --- controls used by tests and, later, fault scripts ---------------------------------------
    def drop_connections(self) -> int:
        """Cut every client connection without a CLOSE frame, as a network failure would."""
        dropped = 0
        for conn in list(self.connections.values()):
            conn.record.close_reason = "dropped by simulator"
            conn.transport.disconnect(graceful=False)
            dropped += 1
        return dropped

    def pause(self) -> None:
        """Stop producing trades (heartbeats and pings continue), so a test can drain and compare."""
        if self._paused_at is None:
            self._paused_at = now_us()

    def resume(self) -> None:
        if self._paused_at is None:
            return
        shift = now_us() - self._paused_at
        self._paused_at = None
        for tape in self.tapes.values():
            tape.generator.shift(shift)

    def tape(self, symbol: str) -> list[TapeTrade]:
        return list(self.tapes[symbol].trades)

    # --- sending -------------------------------------------------------------------------------
    def send(self, conn: SimConnection, text: str) -> None:
        if conn.closed:
            return
        frames = [text] if self.frame_filter is None else self.frame_filter(conn, text)
        for frame in frames:
            conn.transport.send(WSMsgType.TEXT, frame.encode())
        conn.last_sent = time.monotonic()

    # --- what a venue module implements --------------------------------------------------------
    @abstractmethod
    def accepts(self, path: str, query: str) -> bool:
        """Whether this venue serves a WebSocket at this path (anything else gets a 404)."""

    @abstractmethod
    def new_connection(self, conn_id: int, transport: WSTransport, path: str) -> ConnT: ...

    def on_open(self, conn: ConnT) -> None:
        """Called once the WebSocket handshake completed."""

    @abstractmethod
    def on_text(self, conn: ConnT, text: str) -> None:
        """A client text message."""

    def on_ping(self, conn: ConnT, payload: bytes) -> None:
        """A client ping (already answered with a pong)."""

    def on_pong(self, conn: ConnT, payload: bytes) -> None:
        """A client pong."""

    def on_tick(self, now: float) -> None:
        """Called every ``tick_s`` once for the venue, before ``on_timer`` (monotonic ``now``)."""

    def on_timer(self, conn: ConnT, now: float) -> None:
        """Called every ``tick_s`` per open connection (monotonic ``now``)."""

    @abstractmethod
    def publish(self, symbol: str, burst: list[TapeTrade]) -> None:
        """Send one burst of new trades to every connection subscribed to ``symbol``."""

    # --- internals -----------------------------------------------------------------------------
    def _route(self, request: WSUpgradeRequest) -> WSListener | None:
        raw = request.path.decode("latin-1")
        parts = urlsplit(raw)
        if not self.accepts(parts.path, parts.query):
            return None  # picows answers 404 Not Found
        return _ServerListener(self, raw)  # type: ignore[arg-type]

    def _opened(self, transport: WSTransport, path: str) -> ConnT:
        conn = self.new_connection(next(self._ids), transport, path)
        self.connections[conn.conn_id] = conn
        self.records.append(conn.record)
        self.on_open(conn)
        return conn

    def _closed(self, conn: SimConnection) -> None:
        conn.closed = True
        conn.record.closed_at = time.time()
        self.connections.pop(conn.conn_id, None)

    async def _generate(self) -> None:
        while True:
            if self._paused_at is not None:
                await asyncio.sleep(self.options.tick_s)
                continue
            now = now_us()
            for symbol, tape in self.tapes.items():
                for burst in tape.generate_until(now):
                    try:
                        self.publish(symbol, burst)
                    except Exception:  # a broken client must not stop the tape
                        log.exception("%s simulator: publishing %s failed", self.exchange, symbol)
            next_due = min((t.generator.next_ts_us for t in self.tapes.values()), default=now + 50_000)
            await asyncio.sleep(min(max(next_due - now_us(), 0) / 1_000_000, 0.05))

    async def _timers(self) -> None:
        while True:
            await asyncio.sleep(self.options.tick_s)
            now = time.monotonic()
            try:
                self.on_tick(now)
            except Exception:
                log.exception("%s simulator: timer failed", self.exchange)
            for conn in list(self.connections.values()):
                if not conn.closed:
                    try:
                        self.on_timer(conn, now)
                    except Exception:
                        log.exception("%s simulator: timer of connection %d failed", self.exchange, conn.conn_id)
