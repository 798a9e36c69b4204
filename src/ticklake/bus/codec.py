"""ticklake's records as Kafka messages: the schema other applications consume (docs/bus.md).

Every message is a JSON object, UTF-8, keyed by canonical symbol, with a header
``ticklake-schema`` naming its schema and version:

- ``trade.v1`` on ``market.crypto.trades.{exchange}``: one normalized trade;
- ``raw.v1`` on ``market.crypto.trades.{exchange}.raw``: one WebSocket frame (or REST page) as
  received, with the receive metadata.

A version changes only when a field changes meaning or type; adding a field keeps the version, so
readers ignore fields they do not know. What cannot be read (bad bytes, a missing or unknown
version, a record on the wrong topic) becomes a ``BusReject`` with the reason, never an exception:
the ingester dead-letters it and goes on.
"""

from __future__ import annotations

import json

import msgspec

from ticklake.model import BusReject, RawFrame, Side, Trade

SCHEMA_HEADER = "ticklake-schema"
TRADE_SCHEMA = "trade.v1"
RAW_SCHEMA = "raw.v1"
# Why a message is a ``BusReject``, every reason ``decode`` gives (the rejected-messages metric starts
# each at zero, so that the dashboard shows a line before anything was ever rejected).
REJECT_REASONS = ("undecodable", "unknown_schema", "wrong_schema_for_topic")

Headers = list[tuple[str, str | bytes | None]]
ReadHeaders = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None


class TradeV1(msgspec.Struct, frozen=True, gc=False):
    exchange: str
    symbol: str
    native_symbol: str
    trade_id: int
    price: str  # exact decimal text, as the venue sent it
    qty: str
    side: Side  # the taker's side
    ts_us: int  # exchange time, microseconds since the epoch, UTC
    received_us: int  # when ticklake received it, microseconds since the epoch, UTC
    conn_id: str = ""
    frame_seq: int = 0


class RawV1(msgspec.Struct, frozen=True, gc=False):
    exchange: str
    conn_id: str
    frame_seq: int
    received_us: int
    payload: str
    error: str = ""
    trade_count: int = 0
    source: str = "ws"
    native_symbol: str = ""


_encoder = msgspec.json.Encoder()
_trade_decoder = msgspec.json.Decoder(TradeV1)
_raw_decoder = msgspec.json.Decoder(RawV1)
_TRADE_BYTES = TRADE_SCHEMA.encode()
_RAW_BYTES = RAW_SCHEMA.encode()
_TRADE_HEADERS: Headers = [(SCHEMA_HEADER, TRADE_SCHEMA.encode())]
_RAW_HEADERS: Headers = [(SCHEMA_HEADER, RAW_SCHEMA.encode())]


def encode(value: RawFrame | Trade) -> tuple[bytes, Headers]:
    """A record as a message value and its headers."""
    if isinstance(value, Trade):
        record: TradeV1 | RawV1 = TradeV1(*msgspec.structs.astuple(value))
        return _encoder.encode(record), _TRADE_HEADERS
    return _encoder.encode(RawV1(*msgspec.structs.astuple(value))), _RAW_HEADERS


def decode(topic: str, key: str | bytes | None, value: str | bytes | None,
           headers: ReadHeaders) -> RawFrame | Trade | BusReject:
    """A message back into a record, or a ``BusReject`` saying why it is not one."""
    if type(headers) is list and len(headers) == 1 and headers[0][0] == SCHEMA_HEADER and value:
        # The common case, decoded without building anything for a reject.
        schema_bytes = headers[0][1]
        try:
            if schema_bytes == _TRADE_BYTES and not topic.endswith(".raw"):
                return Trade(*msgspec.structs.astuple(_trade_decoder.decode(value)))
            if schema_bytes == _RAW_BYTES and topic.endswith(".raw"):
                return RawFrame(*msgspec.structs.astuple(_raw_decoder.decode(value)))
        except (msgspec.DecodeError, UnicodeDecodeError):
            pass  # the full path below says why
    pairs = _pairs(headers)
    schema = ""
    for name, header_value in pairs:
        if name == SCHEMA_HEADER:
            schema = header_value
    expected = RAW_SCHEMA if topic.endswith(".raw") else TRADE_SCHEMA
    if schema != expected:
        family = expected.split(".")[0]
        if not schema:
            return _reject(key, value, pairs, "unknown_schema", f"no {SCHEMA_HEADER} header (expected {expected})")
        if schema.split(".")[0] != family:
            return _reject(key, value, pairs, "wrong_schema_for_topic",
                           f"{schema} on {topic} (expected {expected})")
        return _reject(key, value, pairs, "unknown_schema", f"{schema} (this ticklake reads {expected})")
    try:
        if expected == TRADE_SCHEMA:
            trade = _trade_decoder.decode(value or b"")
            return Trade(*msgspec.structs.astuple(trade))
        raw = _raw_decoder.decode(value or b"")
        return RawFrame(*msgspec.structs.astuple(raw))
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return _reject(key, value, pairs, "undecodable", str(exc)[:500])


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _pairs(headers: ReadHeaders) -> list[tuple[str, str]]:
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    return [(name, _text(value)) for name, value in items]


def _reject(key: str | bytes | None, value: str | bytes | None, headers: list[tuple[str, str]],
            reason: str, detail: str) -> BusReject:
    return BusReject(
        key=_text(key),
        headers=json.dumps([list(pair) for pair in headers]),
        value=_text(value),
        reason=reason,
        detail=detail,
    )
