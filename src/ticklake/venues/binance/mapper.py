"""Binance spot: WebSocket trade frames and REST trade pages in, normalized trades out.

Frames come raw (``/ws/<stream>``: the event object itself) or combined
(``/stream?streams=...``: ``{"stream": name, "data": event}``). Trade events:

* ``@trade``: ``{e:"trade", E, s, t, p, q, T, m, M}``; ``trade_id`` is ``t``.
* ``@aggTrade``: ``{e:"aggTrade", E, s, a, p, q, f, l, T, m, M}``; ``trade_id`` is ``a``. Aggregate ids
  are a different id space from trade ids: a feed must not mix both stream kinds for one symbol.

``m`` is "the buyer is the maker", so the taker sold when it is true. ``T`` is milliseconds unless
the connection asked for ``timeUnit=MICROSECOND``; a value of 1e15 or more is already microseconds.

Pure: no I/O, no clock. The only state is the symbol memo in ``common``.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Annotated, Any, Final

import msgspec

from ticklake.exchanges.mappers.common import (
    AGG_TRADE_SUFFIX,
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
    show,
    venue_message,
)
from ticklake.model import ParsedFrame, Side, Trade

__all__ = ["AGG_TRADE_SUFFIX", "EXCHANGE", "parse_frame", "parse_rest_trades"]

EXCHANGE: Final = "binance"

# Time fields: milliseconds by default, microseconds with timeUnit=MICROSECOND. Epoch ms stays below
# 1e15 until the year 33658; epoch µs is above 1e15 since 2001. Above 1e17 it is neither (ns, garbage).
_MICROS_THRESHOLD: Final = 10**15
_MAX_TIME: Final = 10**17

# Range checks msgspec applies while decoding (in C, at no measurable cost), so the hot path need not.
_TradeId = Annotated[int, msgspec.Meta(ge=0, le=MAX_TRADE_ID)]
_Time = Annotated[int, msgspec.Meta(gt=0, lt=_MAX_TIME)]


class _Trade(msgspec.Struct, tag_field="e", tag="trade", gc=False):
    s: str
    t: _TradeId
    p: str
    q: str
    T: _Time
    m: bool


class _AggTrade(msgspec.Struct, tag_field="e", tag="aggTrade", gc=False):
    s: str
    t: _TradeId = msgspec.field(name="a")  # the aggregate trade id, read into ``t`` so both look alike
    p: str
    q: str
    T: _Time
    m: bool


_TradeEvent = _Trade | _AggTrade

# Aggregate trade ids (`a`) and trade ids (`t`) are two id spaces of one market: an aggTrade's native
# symbol carries AGG_TRADE_SUFFIX (common), so the two never meet in deduplication or gap tracking.


class _Combined(msgspec.Struct, gc=False):
    data: _TradeEvent  # "stream" repeats data.s and the event type: not decoded, to save time


class _RestTrade(msgspec.Struct, gc=False):
    """A row of ``GET /api/v3/trades`` or ``/api/v3/historicalTrades``."""

    id: _TradeId
    price: str
    qty: str
    time: _Time
    isBuyerMaker: bool  # the venue's field name


# Typed decoders are the fast path: one pass from bytes to structs, no intermediate dicts.
_decode_raw: Final = msgspec.json.Decoder(_TradeEvent).decode
_decode_combined: Final = msgspec.json.Decoder(_Combined).decode
_decode_any: Final = msgspec.json.Decoder().decode
_decode_rest: Final = msgspec.json.Decoder(list[_RestTrade]).decode

_TRADE_EVENTS: Final = ("trade", "aggTrade")
_symbols: Final = SymbolMemo(EXCHANGE)


def _side(buyer_is_maker: bool) -> Side:
    return "sell" if buyer_is_maker else "buy"


def _ts_us(value: int) -> int:
    return value * 1000 if value < _MICROS_THRESHOLD else value


def _trade(event: _Trade | _AggTrade, received_us: int, conn_id: str, frame_seq: int) -> Trade:
    """The normalized trade of a decoded event; ``BadField`` names the bad field.

    ``parse_frame`` inlines the same steps for speed and falls back here to word the error.
    """
    if match_decimal(event.p) is None:
        raise BadField(f"bad price p={show(event.p)}")
    if match_decimal(event.q) is None:
        raise BadField(f"bad quantity q={show(event.q)}")
    native = event.s + AGG_TRADE_SUFFIX if type(event) is _AggTrade else event.s
    return Trade(EXCHANGE, _symbols[event.s], native, event.t, event.p, event.q,
                 _side(event.m), _ts_us(event.T), received_us, conn_id, frame_seq)


def parse_frame(payload: bytes | str, received_us: int, conn_id: str = "", frame_seq: int = 0, *,
                subscribed: AbstractSet[str] | None = None) -> ParsedFrame:
    """One Binance WebSocket frame -> ``ParsedFrame``; never raises.

    Trade and aggTrade events give ``kind="trades"`` with one trade; ``{"result": null, "id": N}``
    gives "subscribed"; ``serverShutdown`` gives "shutdown"; error replies give "error" with the
    venue's message; any other event (depth, bookTicker, kline, ...) gives "other". A trade whose
    ``s`` is not one of ``subscribed`` (the connection's native symbols; None checks nothing), or not
    in the venue's form (``BTC/USDT``, ``btcusdt``), keeps ``symbol=""`` for the warehouse to
    dead-letter (``common.only_subscribed``, ``common.is_native_symbol``).
    """
    try:
        # '{"stream":...' (combined) vs '{"e":...' (raw): one character picks the typed decoder. A
        # wrong guess only costs a trip through the slow path, which handles any layout.
        mark = payload[2]  # 115 == ord("s"), for bytes payloads
        event = _decode_combined(payload).data if mark == 115 or mark == "s" else _decode_raw(payload)
    except (ValueError, TypeError, IndexError, RecursionError):  # msgspec errors are ValueErrors
        return only_subscribed(_parse_slow(payload, received_us, conn_id, frame_seq), subscribed)
    # This is _trade() inlined: it runs once per trade on the feed's hot path.
    price = event.p
    qty = event.q
    if match_decimal_pair(f"{price} {qty}") is None:
        # words the error
        return only_subscribed(_trade_frame(event, received_us, conn_id, frame_seq), subscribed)
    ts = event.T
    native = event.s
    return ParsedFrame("trades", (Trade(
        EXCHANGE, _symbols[native] if subscribed is None or native in subscribed else "",
        native + AGG_TRADE_SUFFIX if type(event) is _AggTrade else native, event.t,
        price, qty,
        "sell" if event.m else "buy", ts * 1000 if ts < _MICROS_THRESHOLD else ts,
        received_us, conn_id, frame_seq),))


def _trade_frame(event: _Trade | _AggTrade, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    try:
        return ParsedFrame("trades", (_trade(event, received_us, conn_id, frame_seq),))
    except ValueError as exc:
        kind = "aggTrade" if isinstance(event, _AggTrade) else "trade"
        return ParsedFrame("error", error=error_reason(EXCHANGE, kind, exc))


def _parse_slow(payload: bytes | str, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    """Everything the typed fast path did not take: control messages, other events, bad frames."""
    refused = refused_payload(EXCHANGE, payload)
    if refused is not None:
        return refused
    message: Any = decoded(EXCHANGE, payload, _decode_any)
    if isinstance(message, ParsedFrame):
        return message
    if not isinstance(message, dict):
        return ParsedFrame("error", error=f"{EXCHANGE}: expected a JSON object, got {type(message).__name__}")
    event = message
    if "stream" in message and "data" in message:
        event = message["data"]
        if not isinstance(event, dict):
            return ParsedFrame("error", error=f"{EXCHANGE}: combined frame's data is not an object")
    kind = event.get("e")
    if kind in _TRADE_EVENTS:
        try:
            typed = msgspec.convert(event, _TradeEvent)
        except msgspec.ValidationError as exc:
            return ParsedFrame("error", error=error_reason(EXCHANGE, str(kind), exc))
        return _trade_frame(typed, received_us, conn_id, frame_seq)
    if kind == "serverShutdown":
        return ParsedFrame("shutdown")
    if "error" in message:
        error = message["error"]
        text = error.get("msg", error) if isinstance(error, dict) else error
        return ParsedFrame("error", error=f"{EXCHANGE} error reply: {venue_message(text)}")
    if "code" in message and "msg" in message:
        reason = venue_message(message["msg"])
        return ParsedFrame("error", error=f"{EXCHANGE} error reply {show(message['code'])}: {reason}")
    if "result" in message and "id" in message:
        # SUBSCRIBE/UNSUBSCRIBE answer with a null result; LIST_SUBSCRIPTIONS etc. return data.
        return ParsedFrame("subscribed" if message["result"] is None else "other")
    return ParsedFrame("other")


def parse_rest_trades(body: bytes | str, native_symbol: str, received_us: int, *, conn_id: str = "",
                      frame_seq: int = 0) -> tuple[Trade, ...]:
    """Trades of one ``GET /api/v3/trades`` or ``/api/v3/historicalTrades`` page, in page order.

    Rows are ``{id, price, qty, quoteQty, time, isBuyerMaker, isBestMatch}``; ``id`` is the same
    trade id as the ``@trade`` stream's ``t``, so REST pages and live frames dedup against each other.
    ``native_symbol`` is the ``symbol`` parameter of the request (rows do not repeat it).
    Raises ``MalformedResponse`` (only) on an error reply or a bad row.
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
            if match_decimal(row.price) is None:
                raise BadField(f"bad price={show(row.price)}")
            if match_decimal(row.qty) is None:
                raise BadField(f"bad qty={show(row.qty)}")
            trades.append(Trade(EXCHANGE, symbol, native, row.id, row.price, row.qty, _side(row.isBuyerMaker),
                                _ts_us(row.time), received_us, conn_id, frame_seq))
        except ValueError as exc:
            raise MalformedResponse(f"{EXCHANGE} REST trades row {index}: {exc}") from None
    return tuple(trades)


def _rest_error(body: bytes | str, exc: Exception) -> str:
    """Why a REST body is unusable: the venue's ``{"code", "msg"}`` when it sent one."""
    try:
        message = _decode_any(body)
    except (ValueError, TypeError, RecursionError):
        return f"{EXCHANGE} REST trades: invalid JSON ({exc})"
    if isinstance(message, dict) and "msg" in message:
        return f"{EXCHANGE} REST error {show(message.get('code'))}: {venue_message(message['msg'])}"
    return f"{EXCHANGE} REST trades: {exc}"
