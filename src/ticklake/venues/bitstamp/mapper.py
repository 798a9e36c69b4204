"""Bitstamp v2: WebSocket ``live_trades_<market>`` events and REST ``transactions`` pages in, normalized trades out.

WebSocket (www.bitstamp.net/websocket/v2/, "Channels": live ticker; the cryptofeed recording of 2022)::

    {"data": {"id": 216000477, "timestamp": "1641343699", "amount": 0.0792, "amount_str": "0.07920000",
              "price": 3805.44, "price_str": "3805.44", "type": 0, "microtimestamp": "1641343699596000",
              "buy_order_id": 1443875737346049, "sell_order_id": 1443875731320832},
     "channel": "live_trades_ethusd", "event": "trade"}

One trade per event. ``amount``/``price`` are JSON floats (inexact): the exact ``amount_str``/``price_str``
are read instead, as sent. ``microtimestamp`` is the trade time in µs as a digit string (the recording's
are whole milliseconds; read as µs, exactly); ``timestamp`` (seconds) is not read. ``type`` 0 is "buy", 1
"sell": the taker's side (the docs say only "buy"/"sell"; the recording agrees with the taker reading:
every ``type`` 0 trade has a ``buy_order_id`` newer, i.e. larger, than its ``sell_order_id``, so the buy
order was the one that arrived and took liquidity; tests/exchanges/test_bitstamp_mapper.py checks it).
``id`` is a JSON integer, one sequence shared by all markets (not a per-market count). The market is the
channel's suffix, in Bitstamp's lower-case spelling (``ethusd``): the native symbol.

Other events: ``bts:subscription_succeeded`` -> "subscribed"; ``bts:heartbeat`` (the answer to ours,
``{"event":"bts:heartbeat","channel":"","data":{"status":"success"}}``) -> "heartbeat";
``bts:request_reconnect`` ("the server needs to go down: reconnect") -> "shutdown", so the connection is
replaced with overlap; ``bts:error`` -> "error" with the venue's message; every other event
(``bts:unsubscription_succeeded``, book ``data`` events, order events) -> "other". Bitstamp has no
per-connection sequence number: ``ParsedFrame.sequence`` stays None.

A trade whose market is not one the connection subscribed to, or not in Bitstamp's form (``BTCUSD``,
``btc_usd``), keeps ``symbol=""`` (``common.only_subscribed``, ``common.is_native_symbol``).

REST (www.bitstamp.net/api/, "Transactions"): ``GET /api/v2/transactions/{market_symbol}/?time=`` answers a
JSON list, newest first, of ``{"date": "1641343699", "tid": "216000477", "amount": "0.07920000", "price":
"3805.44", "type": "0"}``: every value a string, ``date`` in whole **seconds** (so a backfilled trade's time
is its second, not its microsecond: the same trade from the stream has the finer time), ``tid`` the stream's
``id``, ``type`` the stream's ``type``. An error is a JSON object (``{"status": "error", "reason": ..., "code":
...}``) instead of the list.

Pure: no I/O, no clock. The only state is the symbol memo in ``common``.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Annotated, Any, Final, Literal

import msgspec

from ticklake.exchanges.mappers.common import (
    MAX_TRADE_ID,
    BadField,
    MalformedResponse,
    SymbolMemo,
    decoded,
    error_reason,
    match_decimal,
    match_decimal_pair,
    only_subscribed,
    refused_payload,
    rest_rows,
    show,
    string_trade_id,
    venue_message,
)
from ticklake.model import ParsedFrame, Side, Trade

__all__ = ["CHANNEL_PREFIX", "EXCHANGE", "parse_frame", "parse_rest_trades"]

EXCHANGE: Final = "bitstamp"
CHANNEL_PREFIX: Final = "live_trades_"
TRADE: Final = "trade"
SUBSCRIBED: Final = "bts:subscription_succeeded"
HEARTBEAT: Final = "bts:heartbeat"
RECONNECT: Final = "bts:request_reconnect"
ERROR: Final = "bts:error"

_MAX_US_DIGITS: Final = 16  # epoch µs below 1e16: before the year 2286; the warehouse checks the range
_MAX_S_DIGITS: Final = 10  # epoch seconds below 1e10 (the year 2286)
_SIDES: Final[tuple[Side, Side]] = ("buy", "sell")
_REST_SIDES: Final[dict[str, Side]] = {"0": "buy", "1": "sell"}
_PREFIX_LEN: Final = len(CHANNEL_PREFIX)

_Id = Annotated[int, msgspec.Meta(ge=0, le=MAX_TRADE_ID)]


class _Row(msgspec.Struct, gc=False):
    id: _Id
    amount_str: str
    price_str: str
    type: Literal[0, 1]
    microtimestamp: str


class _TradeEvent(msgspec.Struct, gc=False):
    data: _Row
    channel: str
    event: str


class _Peek(msgspec.Struct, gc=False):
    """The routing fields of any event; decoding only these skips the rest without building it."""

    event: str | None = None
    channel: str | None = None


class _ErrorData(msgspec.Struct, gc=False):
    code: Any = None
    message: Any = None


class _ErrorEvent(msgspec.Struct, gc=False):
    data: _ErrorData | None = None


class _RestRow(msgspec.Struct, gc=False):
    date: str
    tid: str
    amount: str
    price: str
    type: str


_decode_trade: Final = msgspec.json.Decoder(_TradeEvent).decode
_decode_peek: Final = msgspec.json.Decoder(_Peek).decode
_decode_error: Final = msgspec.json.Decoder(_ErrorEvent).decode
_decode_any: Final = msgspec.json.Decoder().decode
_decode_rest: Final = msgspec.json.Decoder(list[_RestRow]).decode

_symbols: Final = SymbolMemo(EXCHANGE)
_OTHER: Final = ParsedFrame("other")
_HEARTBEAT: Final = ParsedFrame("heartbeat")
_SUBSCRIBED: Final = ParsedFrame("subscribed")
_SHUTDOWN: Final = ParsedFrame("shutdown")


def _trade(event: _TradeEvent, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    row = event.data
    price = row.price_str
    size = row.amount_str
    if match_decimal_pair(f"{price} {size}") is None:  # one regex call for both, then the wording
        field = f"price_str={show(price)}" if match_decimal(price) is None else f"amount_str={show(size)}"
        return ParsedFrame("error", error=f"{EXCHANGE} {TRADE}: bad {field}")
    when = row.microtimestamp
    if not (when.isascii() and when.isdigit()) or len(when) > _MAX_US_DIGITS:
        return ParsedFrame("error", error=f"{EXCHANGE} {TRADE}: bad microtimestamp={show(when)}")
    native = event.channel[_PREFIX_LEN:]
    return ParsedFrame("trades", (Trade(EXCHANGE, _symbols[native], native, row.id, price, size, _SIDES[row.type],
                                        int(when), received_us, conn_id, frame_seq),))


def parse_frame(payload: bytes | str, received_us: int, conn_id: str = "", frame_seq: int = 0, *,
                subscribed: AbstractSet[str] | None = None) -> ParsedFrame:
    """One Bitstamp v2 WebSocket frame -> ``ParsedFrame``; never raises (see the module docstring)."""
    try:
        event = _decode_trade(payload)
    except (ValueError, TypeError, RecursionError):  # msgspec errors are ValueErrors
        return only_subscribed(_parse_slow(payload, received_us, conn_id, frame_seq), subscribed)
    if event.event != TRADE or not event.channel.startswith(CHANNEL_PREFIX):
        return _OTHER  # a private ``my_trades`` event or another channel's rows that look like a trade
    return only_subscribed(_trade(event, received_us, conn_id, frame_seq), subscribed)


def _parse_slow(payload: bytes | str, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    """Everything the typed fast path did not take: control events, other channels, bad frames."""
    refused = refused_payload(EXCHANGE, payload)
    if refused is not None:
        return refused
    try:
        peek = _decode_peek(payload)
    except (ValueError, TypeError, RecursionError):
        return _verdict(payload)
    event = peek.event
    if event is None:
        return ParsedFrame("error", error=f"{EXCHANGE}: a JSON object without an event")
    if event == TRADE and peek.channel is not None and peek.channel.startswith(CHANNEL_PREFIX):
        try:
            trade_event = msgspec.convert(_decode_any(payload), _TradeEvent)
        except msgspec.ValidationError as exc:
            return ParsedFrame("error", error=error_reason(EXCHANGE, TRADE, exc))
        return _trade(trade_event, received_us, conn_id, frame_seq)
    if event == SUBSCRIBED:
        return _SUBSCRIBED
    if event == HEARTBEAT:
        return _HEARTBEAT
    if event == RECONNECT:
        return _SHUTDOWN
    if event == ERROR:
        return ParsedFrame("error", error=_error_text(payload))
    return _OTHER  # unsubscription answers, order books, order events, anything new


def _error_text(payload: bytes | str) -> str:
    try:
        data = _decode_error(payload).data
    except (ValueError, TypeError, RecursionError):
        data = None
    if data is None:
        return f"{EXCHANGE} {ERROR}"
    return f"{EXCHANGE} {ERROR} {show(data.code)}: {venue_message(data.message)}"


def _verdict(payload: bytes | str | bytearray | memoryview) -> ParsedFrame:
    """Why a frame the typed decoders refused is not one: invalid JSON, not an object, bad fields."""
    message: Any = decoded(EXCHANGE, payload, _decode_any)
    if isinstance(message, ParsedFrame):
        return message
    if not isinstance(message, dict):
        return ParsedFrame("error", error=f"{EXCHANGE}: expected a JSON object, got {type(message).__name__}")
    try:
        msgspec.convert(message, _Peek)
    except msgspec.ValidationError as exc:
        return ParsedFrame("error", error=f"{EXCHANGE}: bad routing fields ({exc})")
    return ParsedFrame("error", error=f"{EXCHANGE}: frame not understood")


def _rest_trade(row: _RestRow, native: str, received_us: int, conn_id: str, frame_seq: int) -> Trade:
    if match_decimal(row.price) is None:
        raise BadField(f"bad price={show(row.price)}")
    if match_decimal(row.amount) is None:
        raise BadField(f"bad amount={show(row.amount)}")
    side = _REST_SIDES.get(row.type)
    if side is None:
        raise BadField(f"bad type={show(row.type)}")
    date = row.date
    if not (date.isascii() and date.isdigit()) or len(date) > _MAX_S_DIGITS:
        raise BadField(f"bad date={show(date)}")
    return Trade(EXCHANGE, _symbols[native], native, string_trade_id(row.tid, "tid"), row.price, row.amount, side,
                 int(date) * 1_000_000, received_us, conn_id, frame_seq)


def parse_rest_trades(body: bytes | str, native_symbol: str, received_us: int, *, conn_id: str = "",
                      frame_seq: int = 0) -> tuple[Trade, ...]:
    """Trades of one ``GET /api/v2/transactions/{market}/`` answer, in page order (Bitstamp: newest first).

    ``native_symbol`` is the request's market (the rows do not name it). Raises ``MalformedResponse``
    (only) on an error reply (a JSON object instead of the list) or a bad row.
    """
    try:
        rows = _decode_rest(body)
    except (ValueError, TypeError, RecursionError) as exc:
        raise MalformedResponse(_rest_error(body, exc)) from None
    return rest_rows(EXCHANGE, rows, lambda row: _rest_trade(row, native_symbol, received_us, conn_id, frame_seq))


def _rest_error(body: bytes | str, exc: Exception) -> str:
    """Why a REST body is unusable: the venue's ``{"status": "error", "reason", "code"}`` when it sent one."""
    try:
        message = _decode_any(body)
    except (ValueError, TypeError, RecursionError):
        return f"{EXCHANGE} REST trades: invalid JSON ({exc})"
    if isinstance(message, dict) and ("reason" in message or "message" in message):
        reason = message.get("reason", message.get("message"))
        return f"{EXCHANGE} REST error {show(message.get('code'))}: {venue_message(reason)}"
    return f"{EXCHANGE} REST trades: {exc}"
