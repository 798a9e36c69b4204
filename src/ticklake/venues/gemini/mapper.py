"""Gemini: market data v2 WebSocket frames and ``/v1/trades`` REST pages in, normalized trades out.

WebSocket, market data v2 (docs.gemini.com websocket/market-data/v2 "About" and "Level 2 Data"; the
same text is now under websocket/archived/v2), ``wss://api.gemini.com/v2/marketdata``:

* a trade::

      {"type": "trade", "symbol": "BTCUSD", "event_id": 3575573053, "timestamp": 1560976400428,
       "price": "9004.21000000", "quantity": "0.09110000", "side": "buy", "tid": 2840140800042677}

  ``timestamp`` epoch milliseconds, ``price``/``quantity`` decimal strings (kept as sent), ``side``
  "Side of the taker in the trade". ``tid`` "Trade ID of the trade" is the id REST ``/v1/trades``
  serves as ``tid``, so live and REST trades dedup against each other. The 2021 recording
  (cryptofeed ``GEMINI.ws.1.0``) has no ``tid``, only ``event_id``; then ``event_id`` is the trade id
  (Gemini's v1 feed put a trade's event id and its ``tid`` in one number). Both are exchange-wide
  (one counter for all markets: the recording's ids of ten markets interleave), so a market's ids
  skip the other markets' trades and a hole says nothing (``Venue.ids_count_trades`` False).
* the first ``l2_updates`` of a symbol after subscribing is the subscription's answer ("The initial
  response message will show the existing state of the order books and last 50 trades"): its
  ``trades`` list -> "subscribed" *with* those trades (Gemini sends no other acknowledgement). Later
  ``l2_updates`` (book changes only) -> "other"; ``changes`` and ``auction_events`` are not read.
  The recording's snapshot rows come newest first (not always: ZECLTC's are not sorted); trades are
  handed over in the frame's order.
* ``{"type": "heartbeat", "timestamp": ms}`` (every 5 s in the recording) -> "heartbeat";
* an error: Gemini documents no WebSocket error message for v2. Its REST errors are
  ``{"result": "error", "reason": "...", "message": "..."}`` (the documented ``ErrorResponse``), and
  that object on the socket -> "error" with the venue's reason and message;
* candles (``candles_1m_updates`` ...), ``mark_price_updates`` and anything else with a ``type`` ->
  "other".

A trade whose ``symbol`` is not one the connection subscribed, or not in the venue's form
(``btcusd``, ``BTC-USD``), keeps ``symbol=""`` (``common.only_subscribed``, ``common.is_native_symbol``).

REST (developer.gemini.com trading/rest-api/market-data/list-trades), ``GET /v1/trades/{symbol}``::

    [{"timestamp": 1547146811, "timestampms": 1547146811357, "tid": 5335307668, "price": "3610.85",
      "amount": "0.27413495", "exchange": "gemini", "type": "buy"}]

``type`` is the taker's side ("buy", "sell"); an auction or block fill (``type`` "auction", "block")
has no taker: side "unknown". A ``broken`` trade (only served with ``include_breaks``, which ticklake
does not ask for) was reversed by the exchange: not a trade, left out. An error is the
``ErrorResponse`` object instead of the list.

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
    only_subscribed,
    refused_payload,
    show,
    venue_message,
)
from ticklake.model import ParsedFrame, Side, Trade

__all__ = ["EXCHANGE", "parse_frame", "parse_rest_trades"]

EXCHANGE: Final = "gemini"

_MAX_MS: Final = 10**15  # epoch ms below 1e15: above it, it is µs, ns or garbage
_Ms = Annotated[int, msgspec.Meta(gt=0, lt=_MAX_MS)]
_Id = Annotated[int, msgspec.Meta(gt=0, le=MAX_TRADE_ID)]
_REST_SIDES: Final[dict[str, Side]] = {"buy": "buy", "sell": "sell", "auction": "unknown", "block": "unknown"}
_HEARTBEAT: Final = ParsedFrame("heartbeat")
_OTHER: Final = ParsedFrame("other")


class _Row(msgspec.Struct, gc=False):
    """One trade: a ``trade`` message, or a row of the first ``l2_updates``' ``trades``."""

    symbol: str
    timestamp: _Ms
    price: str
    quantity: str
    side: Literal["buy", "sell"]
    event_id: _Id | None = None
    tid: _Id | None = None


class _Trade(_Row, tag="trade", tag_field="type", gc=False):
    pass


class _L2(msgspec.Struct, tag="l2_updates", tag_field="type", gc=False):
    symbol: str
    trades: list[_Row] | None = None  # only on the first l2_updates of a symbol


class _Heartbeat(msgspec.Struct, tag="heartbeat", tag_field="type", gc=False):
    pass


class _RestRow(msgspec.Struct, gc=False):
    timestampms: _Ms
    tid: _Id
    price: str
    amount: str
    type: str
    broken: bool = False


_decode_frame: Final = msgspec.json.Decoder(_Trade | _L2 | _Heartbeat).decode
_decode_any: Final = msgspec.json.Decoder().decode
_decode_rest: Final = msgspec.json.Decoder(list[_RestRow]).decode
_symbols: Final = SymbolMemo(EXCHANGE)


def _trade(row: _Row, received_us: int, conn_id: str, frame_seq: int) -> Trade:
    trade_id = row.tid if row.tid is not None else row.event_id
    if trade_id is None:
        raise BadField("a trade with neither tid nor event_id")
    if match_decimal(row.price) is None:
        raise BadField(f"bad price={show(row.price)}")
    if match_decimal(row.quantity) is None:
        raise BadField(f"bad quantity={show(row.quantity)}")
    native = row.symbol
    return Trade(EXCHANGE, _symbols[native], native, trade_id, row.price, row.quantity, row.side,
                 row.timestamp * 1000, received_us, conn_id, frame_seq)


def _frame(message: _Trade | _L2 | _Heartbeat, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    if type(message) is _Trade:
        try:
            return ParsedFrame("trades", (_trade(message, received_us, conn_id, frame_seq),))
        except ValueError as exc:
            return ParsedFrame("error", error=error_reason(EXCHANGE, "trade", exc))
    if type(message) is _L2:
        rows = message.trades
        if rows is None:
            return _OTHER  # book changes
        try:
            trades = tuple(_trade(row, received_us, conn_id, frame_seq) for row in rows)
        except ValueError as exc:
            return ParsedFrame("error", error=error_reason(EXCHANGE, "l2_updates trades", exc))
        return ParsedFrame("subscribed", trades)
    return _HEARTBEAT


def parse_frame(payload: bytes | str, received_us: int, conn_id: str = "", frame_seq: int = 0, *,
                subscribed: AbstractSet[str] | None = None) -> ParsedFrame:
    """One Gemini market data v2 frame -> ``ParsedFrame``; never raises (see the module docstring)."""
    try:
        message = _decode_frame(payload)
    except (ValueError, TypeError, RecursionError):  # msgspec errors are ValueErrors
        return only_subscribed(_parse_slow(payload, received_us, conn_id, frame_seq), subscribed)
    return only_subscribed(_frame(message, received_us, conn_id, frame_seq), subscribed)


_KNOWN: Final = frozenset({"trade", "l2_updates", "heartbeat"})


def _parse_slow(payload: bytes | str, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    """Everything the typed fast path did not take: other types, errors, bad frames."""
    refused = refused_payload(EXCHANGE, payload)
    if refused is not None:
        return refused
    message: Any = decoded(EXCHANGE, payload, _decode_any)
    if isinstance(message, ParsedFrame):
        return message
    if not isinstance(message, dict):
        return ParsedFrame("error", error=f"{EXCHANGE}: expected a JSON object, got {type(message).__name__}")
    kind = message.get("type")
    if isinstance(kind, str) and kind in _KNOWN:  # one of ours with a bad field: say which
        try:
            parsed = msgspec.convert(message, _Trade | _L2 | _Heartbeat)
        except msgspec.ValidationError as exc:
            return ParsedFrame("error", error=error_reason(EXCHANGE, str(kind), exc))
        return _frame(parsed, received_us, conn_id, frame_seq)
    if message.get("result") == "error":
        return ParsedFrame("error", error=f"{EXCHANGE} error {show(message.get('reason'))}: "
                                         f"{venue_message(message.get('message', ''))}")
    if isinstance(kind, str):
        return _OTHER  # candles, mark prices, anything new
    return ParsedFrame("error", error=f"{EXCHANGE}: a JSON object with no type")


def parse_rest_trades(body: bytes | str, native_symbol: str, received_us: int, *, conn_id: str = "",
                      frame_seq: int = 0) -> tuple[Trade, ...]:
    """Trades of one ``GET /v1/trades/{symbol}`` answer, in page order (Gemini: newest first).

    ``native_symbol`` is the request's symbol (rows do not repeat it). Broken (reversed) trades are left
    out. Raises ``MalformedResponse`` (only) on an error reply or a bad row.
    """
    native = native_symbol.upper()
    symbol = _symbols[native]
    try:
        rows = _decode_rest(body)
    except (ValueError, TypeError, RecursionError) as exc:
        raise MalformedResponse(_rest_error(body, exc)) from None
    trades: list[Trade] = []
    for index, row in enumerate(rows):
        try:
            side = _REST_SIDES.get(row.type)
            if side is None:
                raise BadField(f"bad type={show(row.type)}")
            if match_decimal(row.price) is None:
                raise BadField(f"bad price={show(row.price)}")
            if match_decimal(row.amount) is None:
                raise BadField(f"bad amount={show(row.amount)}")
        except ValueError as exc:
            raise MalformedResponse(f"{EXCHANGE} REST trades row {index}: {exc}") from None
        if row.broken:
            continue
        trades.append(Trade(EXCHANGE, symbol, native, row.tid, row.price, row.amount, side,
                            row.timestampms * 1000, received_us, conn_id, frame_seq))
    return tuple(trades)


def _rest_error(body: bytes | str, exc: Exception) -> str:
    """Why a REST body is unusable: the venue's ``{"result": "error", "reason", "message"}`` when it sent one."""
    try:
        message = _decode_any(body)
    except (ValueError, TypeError, RecursionError):
        return f"{EXCHANGE} REST trades: invalid JSON ({exc})"
    if isinstance(message, dict) and message.get("result") == "error":
        return f"{EXCHANGE} REST error {show(message.get('reason'))}: {venue_message(message.get('message', ''))}"
    return f"{EXCHANGE} REST trades: {exc}"
