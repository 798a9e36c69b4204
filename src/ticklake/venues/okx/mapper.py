"""OKX v5: WebSocket frames and REST ``history-trades`` pages in, normalized trades out.

Frames (www.okx.com/docs-v5, "WebSocket": connect, subscribe, notice; "Market data": trades, all trades):

* ``trades-all`` (endpoint ``/ws/v5/business``): every trade, one per push::

      {"arg": {"channel": "trades-all", "instId": "BTC-USDT"},
       "data": [{"instId": "BTC-USDT", "tradeId": "130639474", "px": "42219.9", "sz": "0.12060306",
                 "side": "buy", "source": "0", "ts": "1630048897897"}]}

  ``tradeId`` is sequential per instrument (digits as a JSON string), ``px``/``sz`` decimal strings,
  ``side`` the taker's side, ``ts`` epoch milliseconds as a string. ``source`` ("0" normal, "1" an
  Enhanced Liquidity Program order) is not read: both are trades of the book.
* ``trades`` (``/ws/v5/public``) has the same rows, but one row *aggregates the fills of one taker order
  at one price*: ``tradeId`` is the last fill's id, ``count`` how many fills (2022 rows, as in the
  cryptofeed recording, have no ``count``), ``sz`` their sum. Such a row is not a trade: stored under the
  instrument's ids it would hide ``count - 1`` ids, which the gap tracker would then fetch over REST one
  by one and count again (the size twice). So a ``trades`` push is recognized ("other") and nothing of it
  is stored; the feed subscribes ``trades-all`` only.
* ``{"event": "subscribe", "arg": {...}, "connId": ...}`` -> "subscribed"; ``{"event": "error", "code",
  "msg", "connId"}`` (and ``channel-conn-count-error``) -> "error" with the venue's message;
  ``{"event": "notice", "code": "64008", ...}`` ("the connection will soon be closed for a service
  upgrade") -> "shutdown"; the text ``pong`` (the answer to our ``ping``) -> "heartbeat"; every other push
  or event (tickers, books, ``unsubscribe``, ``channel-conn-count``) -> "other".

A trade whose ``instId`` is not one the connection subscribed, or not a spot pair (``BTC-USD-SWAP``),
keeps ``symbol=""`` (``common.only_subscribed``, ``common.is_native_symbol``).

Pure: no I/O, no clock. The only state is the symbol memo in ``common``.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any, Final, Literal

import msgspec

from ticklake.exchanges.mappers.common import (
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
    string_trade_id,
    venue_message,
)
from ticklake.model import ParsedFrame, Trade

__all__ = ["ALL_TRADES", "EXCHANGE", "parse_frame", "parse_rest_trades"]

EXCHANGE: Final = "okx"
ALL_TRADES: Final = "trades-all"
AGGREGATED_TRADES: Final = "trades"
SERVICE_UPGRADE: Final = "64008"  # notice: "The connection will soon be closed for a service upgrade."

_MAX_MS_DIGITS: Final = 14  # epoch ms below 1e14: before the year 5138; the warehouse checks the range


class _Row(msgspec.Struct, gc=False):
    instId: str
    tradeId: str
    px: str
    sz: str
    side: Literal["buy", "sell"]  # the taker's side
    ts: str  # epoch ms, as a JSON string


class _Arg(msgspec.Struct, gc=False):
    channel: str
    instId: str | None = None


class _Push(msgspec.Struct, gc=False):
    arg: _Arg
    data: list[_Row]


class _Peek(msgspec.Struct, gc=False):
    """The routing fields of any JSON frame; decoding only these skips the rest without building it."""

    event: str | None = None
    arg: _Arg | None = None
    code: str | None = None
    msg: str | None = None


class _RestPage(msgspec.Struct, gc=False):
    code: str
    msg: str = ""
    data: list[_Row] = []


_decode_push: Final = msgspec.json.Decoder(_Push).decode
_decode_peek: Final = msgspec.json.Decoder(_Peek).decode
_decode_any: Final = msgspec.json.Decoder().decode
_decode_rest: Final = msgspec.json.Decoder(_RestPage).decode

_symbols: Final = SymbolMemo(EXCHANGE)
_OTHER: Final = ParsedFrame("other")
_HEARTBEAT: Final = ParsedFrame("heartbeat")
_SUBSCRIBED: Final = ParsedFrame("subscribed")
_SHUTDOWN: Final = ParsedFrame("shutdown")


def _ts_us(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_MS_DIGITS:
        raise BadField(f"bad ts={show(text)}")
    return int(text) * 1000


def _trade(row: _Row, native: str, received_us: int, conn_id: str, frame_seq: int) -> Trade:
    """The normalized trade of one row; ``BadField`` names the bad field."""
    price = row.px
    size = row.sz
    if match_decimal_pair(f"{price} {size}") is None:  # one regex call for both, then the wording
        if match_decimal(price) is None:
            raise BadField(f"bad px={show(price)}")
        raise BadField(f"bad sz={show(size)}")
    trade_id = string_trade_id(row.tradeId, "tradeId")
    return Trade(EXCHANGE, _symbols[native], native, trade_id, price, size, row.side, _ts_us(row.ts), received_us,
                 conn_id, frame_seq)


def _all_trades(push: _Push, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    try:
        trades = tuple(_trade(row, row.instId, received_us, conn_id, frame_seq) for row in push.data)
    except ValueError as exc:
        return ParsedFrame("error", error=error_reason(EXCHANGE, ALL_TRADES, exc))
    return ParsedFrame("trades", trades)


def parse_frame(payload: bytes | str, received_us: int, conn_id: str = "", frame_seq: int = 0, *,
                subscribed: AbstractSet[str] | None = None) -> ParsedFrame:
    """One OKX WebSocket frame -> ``ParsedFrame``; never raises (see the module docstring)."""
    try:
        mark = payload[2]
        if mark == 97 or mark == "a":  # '{"arg":...' a push; 97 == ord("a")
            push = _decode_push(payload)
            if push.arg.channel == ALL_TRADES:
                return only_subscribed(_all_trades(push, received_us, conn_id, frame_seq), subscribed)
            return _OTHER  # ``trades`` (aggregated: see the module docstring) or another channel
    except (ValueError, TypeError, IndexError, RecursionError):  # msgspec errors are ValueErrors
        pass
    return only_subscribed(_parse_slow(payload, received_us, conn_id, frame_seq), subscribed)


def _parse_slow(payload: bytes | str, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    """Everything the typed fast path did not take: events, pongs, other channels, bad frames."""
    refused = refused_payload(EXCHANGE, payload)
    if refused is not None:
        return refused
    if payload == b"pong" or payload == "pong":
        return _HEARTBEAT
    try:
        peek = _decode_peek(payload)
    except (ValueError, TypeError, RecursionError):
        return _verdict(payload)
    if peek.event is not None:
        return _event(peek)
    if peek.arg is None:
        return ParsedFrame("error", error=f"{EXCHANGE}: a JSON object with neither event nor arg")
    if peek.arg.channel != ALL_TRADES:
        return _OTHER  # tickers, books, trades (aggregated): pushes ticklake does not store
    try:
        push = msgspec.convert(_decode_any(payload), _Push)
    except msgspec.ValidationError as exc:
        return ParsedFrame("error", error=error_reason(EXCHANGE, ALL_TRADES, exc))
    return _all_trades(push, received_us, conn_id, frame_seq)


def _event(peek: _Peek) -> ParsedFrame:
    event = peek.event
    if event == "subscribe":
        return _SUBSCRIBED
    if event == "error" or (event is not None and event.endswith("-error")):
        return ParsedFrame("error", error=f"{EXCHANGE} {event} {show(peek.code)}: {venue_message(peek.msg)}")
    if event == "notice" and peek.code == SERVICE_UPGRADE:
        return _SHUTDOWN
    return _OTHER  # unsubscribe, channel-conn-count, other notices, anything new


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


def parse_rest_trades(body: bytes | str, native_symbol: str, received_us: int, *, conn_id: str = "",
                      frame_seq: int = 0) -> tuple[Trade, ...]:
    """Trades of one ``GET /api/v5/market/history-trades`` page, in page order (newest first).

    The body is ``{"code": "0", "msg": "", "data": [{instId, side, sz, px, source, tradeId, ts}]}``;
    ``tradeId`` is the id ``trades-all`` carries, so pages and live frames dedup against each other.
    ``native_symbol`` is the request's ``instId``; a row of another instrument fails the page.
    Raises ``MalformedResponse`` (only) on an error reply (``code`` other than "0") or a bad row.
    """
    try:
        page = _decode_rest(body)
    except (ValueError, TypeError, RecursionError) as exc:
        raise MalformedResponse(_rest_error(body, exc)) from None
    if page.code != "0":
        raise MalformedResponse(f"{EXCHANGE} REST error {show(page.code)}: {venue_message(page.msg)}")
    trades: list[Trade] = []
    for index, row in enumerate(page.data):
        try:
            if row.instId != native_symbol:
                raise BadField(f"instId={show(row.instId)} on a page of {show(native_symbol)}")
            trades.append(_trade(row, native_symbol, received_us, conn_id, frame_seq))
        except ValueError as exc:
            raise MalformedResponse(f"{EXCHANGE} REST trades row {index}: {exc}") from None
    return tuple(trades)


def _rest_error(body: bytes | str, exc: Exception) -> str:
    """Why a REST body is unusable: the venue's ``{"code", "msg"}`` when it sent one."""
    try:
        message = _decode_any(body)
    except (ValueError, TypeError, RecursionError):
        return f"{EXCHANGE} REST trades: invalid JSON ({exc})"
    if isinstance(message, dict) and "msg" in message and message.get("code") != "0":
        return f"{EXCHANGE} REST error {show(message.get('code'))}: {venue_message(message['msg'])}"
    return f"{EXCHANGE} REST trades: {exc}"
