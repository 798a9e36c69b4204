"""The records that flow through ticklake: raw frames and normalized trades.

Both are msgspec Structs: cheap to build in the feed handler's hot loop and cheap to encode when a
bus needs bytes. Prices and quantities stay as the venue's decimal *text* until the columnar insert,
where Arrow converts a whole batch to an exact decimal type at once (shared notes, stack.md: a
``Decimal()`` per value costs 12-37 % of the parse rate; the text is exact, a float is not).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

from ticklake.venues import NAMES

Side = Literal["buy", "sell", "unknown"]
"""The *taker's* side: "buy" means an aggressive buyer lifted the offer."""

EXCHANGES: tuple[str, ...] = NAMES  # the registered venues (ticklake.venues), in registry order


class Trade(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One exchange trade, normalized.

    ``trade_id`` is the venue's own id (Binance ``t``, Kraken v2 ``trade_id``, Coinbase
    ``trade_id``); where a venue has none (Kraken WS v1) the mapper derives a deterministic one
    from content and position. ``conn_id``/``frame_seq`` name the raw frame the trade came from,
    so any layer can be traced back to, and re-derived from, the raw layer.
    """

    exchange: str
    symbol: str  # canonical BASE/QUOTE, "" when the native symbol cannot be mapped
    native_symbol: str
    trade_id: int
    price: str  # exact decimal text, e.g. "64123.10"
    qty: str
    side: Side
    ts_us: int  # exchange timestamp, microseconds since the epoch, UTC
    received_us: int  # local receive timestamp, microseconds since the epoch, UTC
    conn_id: str = ""
    frame_seq: int = 0


class RawFrame(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One WebSocket frame exactly as received, or one REST page fetched to fill a gap."""

    exchange: str
    conn_id: str
    frame_seq: int  # 1, 2, 3 ... per connection, in receive order
    received_us: int
    payload: str
    error: str = ""  # why the frame could not be parsed; "" when it parsed
    trade_count: int = 0  # how many trades the mapper found in it
    source: str = "ws"  # "ws": a WebSocket frame; "rest": a REST page fetched to fill a gap
    native_symbol: str = ""  # for a REST page, the market it is for (its body may not say)


def raw_topic(exchange: str) -> str:
    """Where a venue's raw frames go: ``market.crypto.trades.{exchange}.raw``."""
    return f"market.crypto.trades.{exchange}.raw"


def trades_topic(exchange: str) -> str:
    """Where a venue's normalized trades go: ``market.crypto.trades.{exchange}``."""
    return f"market.crypto.trades.{exchange}"


class BusReject(msgspec.Struct, frozen=True):
    """A message taken from a Kafka topic that is not a ticklake record (bad bytes, an unknown schema
    version): kept whole with the reason, so consumption goes on and nothing vanishes silently."""

    key: str
    headers: str  # the message's headers as JSON text
    value: str  # the value as text (undecodable bytes replaced)
    reason: str  # "undecodable", "unknown_schema", "wrong_schema_for_topic"
    detail: str


class Message(msgspec.Struct, frozen=True):
    """One record on its way through the bus, keyed by canonical symbol so that one symbol's
    messages stay in order on one partition.

    ``partition`` and ``offset`` say where a message was read from a Kafka topic (-1 on the embedded
    bus); the warehouse stores them with the rows. ``replayed`` marks a message read again after a
    crash or a rebalance, at or below what the warehouse may already partly hold.
    """

    topic: str
    key: str
    value: RawFrame | Trade | BusReject
    partition: int = -1
    offset: int = -1
    replayed: bool = False


class MessageSink(Protocol):
    """Where a feed hands its messages: the bus, seen from the feed handlers."""

    async def publish(self, messages: Sequence[Message]) -> None:
        """Take messages, in order; wait (back-pressure) while full."""
        ...


FrameKind = Literal["trades", "heartbeat", "subscribed", "shutdown", "error", "ping", "other"]


class ParsedFrame(msgspec.Struct, frozen=True):
    """What a pure mapper makes of one frame.

    ``kind`` lets the connection logic react to control messages (acks, heartbeats, a venue's
    shutdown notice) without knowing the venue's format. ``error`` is set, and ``trades`` is
    empty, when the frame could not be understood; the frame is still kept in the raw layer.
    """

    kind: FrameKind
    trades: tuple[Trade, ...] = ()
    error: str = ""
    sequence: int | None = None  # a per-connection sequence the venue stamps (Coinbase sequence_num)


class ResumePoint(msgspec.Struct, frozen=True):
    """The newest trade ticklake already *stored* for one market (exchange, native symbol).

    Handed to the feeds at start so that the downtime before it shows as a gap in the trade ids and
    is backfilled from the venue's REST API (within ``feed.backfill_lookback_s``).
    """

    trade_id: int
    ts_us: int  # its exchange time, microseconds since the epoch, UTC
