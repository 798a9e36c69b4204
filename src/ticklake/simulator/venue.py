"""What every simulated venue shares: a picows server, its connections, the tapes, the clocks.

A venue's ``simulated.py`` (in ``ticklake/venues/<name>/``) only says how its protocol looks: which paths it
serves, what it answers to a client message, what a trade frame looks like, what it sends on a
timer. Everything here is venue-neutral.

Fault seams (see faults.py for the faults themselves):

* every new burst passes ``VenueFaults.visible`` before ``publish`` (``skip_next``), and snapshots
  come from ``snapshot`` (which leaves skipped trades out too);
* every live trade frame goes through ``send_trade_frame`` (malformed, duplicated, reordered);
* every frame a venue sends goes through ``send``, which drops it on a stalled connection and hands
  it to ``frame_filter`` when one is set. A filter receives the connection and the frame text and
  returns the frames to actually send (none to drop one, two to duplicate, a broken one to corrupt it);
* each venue also serves its tape over REST (rest.py), started and stopped with it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
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

from ticklake.simulator.faults import Frame, VenueFaults
from ticklake.simulator.rest import RestApi, RestLimit, RestServer
from ticklake.simulator.tape import (
    Instrument,
    SymbolTape,
    TapeGenerator,
    TapeTrade,
    instrument_for,
    render_to_tick,
)

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
    # Two different rules, kept apart: OKX closes a connection *it* pushed nothing on (its pong counts);
    # Bybit closes one *the client* sent no ping on and that carried no data.
    push_timeout_s: float = 30.0  # OKX: the connection breaks when nothing was pushed for 30 s
    client_idle_close_s: float = 600.0  # Bybit: no client ping and no data for 10 minutes closes the connection
    snapshot_size: int = 50  # Kraken v2 trade snapshot: the last 50 trades (Coinbase: the same here)
    batch_interval_s: float = 0.25  # Coinbase market_trades: "updates are collected over the last 250 ms"
    history_trades: int = 100  # trades "before start", so the first snapshot is already full
    tick_s: float = 0.02  # resolution of timers (heartbeats, pings, timeouts)
    # The server closes connections older than this; None: the venue's rule (Binance: 24 h, others: never).
    max_connection_age_s: float | None = None
    shutdown_grace_s: float = 1.0  # Binance: from the serverShutdown event to the close (not documented)
    # REST rate limit; None: the venue's documented limit (see each venue's ``default_rest_limit``).
    rest_limit: RestLimit | None = None


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
        self.stalled_until = 0.0  # monotonic; while later than now the server sends nothing at all
        self.record = ConnectionRecord(conn_id, path, time.time())

    def stalled(self, now: float | None = None) -> bool:
        return self.stalled_until > (time.monotonic() if now is None else now)

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
            if not conn.stalled():  # a stalled server answers nothing, pings included
                transport.send_pong(payload)
            self._venue.on_ping(conn, payload)
        elif msg_type == WSMsgType.PONG:
            self._venue.on_pong(conn, frame.get_payload_as_bytes())
        elif msg_type == WSMsgType.CLOSE:
            if not conn.stalled():
                transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self._conn is not None:
            self._venue._closed(self._conn)


class VenueServer(ABC, Generic[ConnT]):
    """One simulated venue: a WebSocket server on loopback, its tapes and its timers."""

    exchange: ClassVar[str]
    base_path: ClassVar[str] = ""  # appended to ws://host:port to form the venue's base URL
    default_max_connection_age_s: ClassVar[float | None] = None
    default_rest_limit: ClassVar[RestLimit] = RestLimit()
    shutdown_close_code: ClassVar[WSCloseCode] = WSCloseCode.GOING_AWAY
    announces_shutdown: ClassVar[bool] = False  # True: announce_shutdown sends something, close after grace
    time_resolution_us: ClassVar[int] = 1  # trade times are published to this resolution (µs)

    @staticmethod
    def render_price_qty(price: Decimal, qty: Decimal, instrument: Instrument) -> tuple[str, str]:
        """The venue's wire text for a price and a quantity (default: to the tick, 8 size decimals)."""
        return render_to_tick(price, qty, instrument)

    def __init__(self, symbols: list[str], seed: int, trades_per_second: float, options: VenueOptions) -> None:
        self.options = options
        self.frame_filter: FrameFilter | None = None
        self.faults = VenueFaults(self.exchange, seed)
        self.rest: RestServer | None = None
        self._closing: list[asyncio.TimerHandle] = []
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
    async def start(self, host: str, port: int = 0, rest_port: int = 0) -> None:
        self._server = await ws_create_server(
            self._route, host, port, enable_auto_pong=False, logger_name=_picows_log
        )
        sockets = self._server.sockets
        self.host, self.port = host, int(sockets[0].getsockname()[1])
        self.rest = RestServer(self.rest_api(self.options.rest_limit or self.default_rest_limit))
        await self.rest.start(host, rest_port)
        self._tasks = [
            asyncio.create_task(self._generate(), name=f"sim-{self.exchange}-tape"),
            asyncio.create_task(self._timers(), name=f"sim-{self.exchange}-timers"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for handle in self._closing:
            handle.cancel()
        self._closing.clear()
        self.faults.held.clear()
        if self.rest is not None:
            await self.rest.close()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            conn.transport.disconnect(graceful=False)
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def base_url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.base_path}"

    @property
    def rest_url(self) -> str:
        return self.rest.base_url if self.rest is not None and self.rest.port else ""

    @property
    def max_connection_age_s(self) -> float | None:
        configured = self.options.max_connection_age_s
        return configured if configured is not None else self.default_max_connection_age_s

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

    def snapshot(self, symbol: str, count: int) -> list[TapeTrade]:
        """The last ``count`` trades a socket may carry (``skip_next`` trades left out)."""
        hidden = self.faults.hidden_ids(symbol)
        trades = self.tapes[symbol].trades
        if not hidden:
            return trades[-count:] if count > 0 else []
        picked: list[TapeTrade] = []
        for trade in reversed(trades):
            if len(picked) >= count:
                break
            if trade.trade_id not in hidden:
                picked.append(trade)
        return picked[::-1]

    # --- faults --------------------------------------------------------------------------------
    def stall(self, seconds: float) -> int:
        """Send nothing (trades, heartbeats, pings, pongs) on the open connections for ``seconds``,
        without closing them; returns how many. Trades published meanwhile are lost to them (they
        stay on the tape and on REST); connections opened during the stall are not stalled."""
        until = time.monotonic() + seconds
        for conn in self.connections.values():
            conn.stalled_until = max(conn.stalled_until, until)
        return len(self.connections)

    def shutdown(self) -> int:
        """Close every open connection as a server going down does; returns how many.

        Kraken and Coinbase close at once with 1001 (going away). Binance first sends
        ``serverShutdown`` (wrapped as ``!serverShutdown`` on combined streams) and closes
        ``shutdown_grace_s`` later. New connections are accepted all along."""
        conns = list(self.connections.values())
        self.announce_shutdown(conns)
        if self.options.shutdown_grace_s > 0 and self.announces_shutdown:
            handle = asyncio.get_running_loop().call_later(self.options.shutdown_grace_s, self._shut, conns)
            self._closing.append(handle)
        else:
            self._shut(conns)
        return len(conns)

    def announce_shutdown(self, conns: list[ConnT]) -> None:
        """What the venue sends before a shutdown (Binance: ``serverShutdown``)."""

    def _shut(self, conns: list[ConnT]) -> None:
        for conn in conns:
            conn.close(self.shutdown_close_code, "server shutting down")

    def clear_faults(self) -> None:
        """Undo every pending fault: counters reset, held frames released in order, stalls ended."""
        held, self.faults.held = self.faults.held, []
        for frame in held:
            self._send_frame(frame)
        self.faults.clear()
        for conn in self.connections.values():
            conn.stalled_until = 0.0

    # --- sending -------------------------------------------------------------------------------
    def send(self, conn: SimConnection, text: str) -> None:
        if conn.closed or conn.stalled():
            return
        frames = [text] if self.frame_filter is None else self.frame_filter(conn, text)
        for frame in frames:
            conn.transport.send(WSMsgType.TEXT, frame.encode())
        conn.last_sent = time.monotonic()

    def send_trade_frame(self, symbol: str, trades: list[TapeTrade], frame: Frame) -> None:
        """One live trade frame: its text per receiving connection, through the frame faults."""
        if not frame:
            return
        shaped = self.faults.shape(symbol, trades, frame)
        if shaped is not None:
            self._send_frame(shaped)
        else:
            for held in self.faults.release_due(time.monotonic()):
                self._send_frame(held)

    def _send_frame(self, frame: Frame) -> None:
        for conn, text in frame:
            self.send(conn, text)

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

    @abstractmethod
    def rest_api(self, limit: RestLimit) -> RestApi:
        """The venue's REST endpoints over its tapes."""

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
                    visible = self.faults.visible(symbol, burst)
                    if not visible:
                        continue
                    try:
                        self.publish(symbol, visible)
                    except Exception:  # a broken client must not stop the tape
                        log.exception("%s simulator: publishing %s failed", self.exchange, symbol)
            next_due = min((t.generator.next_ts_us for t in self.tapes.values()), default=now + 50_000)
            await asyncio.sleep(min(max(next_due - now_us(), 0) / 1_000_000, 0.05))

    async def _timers(self) -> None:
        while True:
            await asyncio.sleep(self.options.tick_s)
            now = time.monotonic()
            try:
                for frame in self.faults.release_due(now):
                    self._send_frame(frame)
                self.on_tick(now)
            except Exception:
                log.exception("%s simulator: timer failed", self.exchange)
            max_age = self.max_connection_age_s
            for conn in list(self.connections.values()):
                if conn.closed or conn.stalled(now):
                    continue  # a stalled server does nothing, not even close old connections
                if max_age is not None and now - conn.connected_at >= max_age:
                    conn.close(WSCloseCode.GOING_AWAY, "connection exceeded its maximum age")
                    continue
                try:
                    self.on_timer(conn, now)
                except Exception:
                    log.exception("%s simulator: timer of connection %d failed", self.exchange, conn.conn_id)
