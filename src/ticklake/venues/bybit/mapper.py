"""Bybit spot (v5): WebSocket ``publicTrade`` frames and ``recent-trade`` REST pages in, normalized trades out.

WebSocket (bybit-exchange.github.io/docs/v5/websocket/public/trade), on ``/v5/public/spot``::

    {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1672304486868,
     "data": [{"T": 1672304486865, "s": "BTCUSDT", "S": "Buy", "v": "0.001", "p": "16578.50",
               "i": "2290000000061666327", "BT": false, "RPI": false, "seq": 1783284617}]}

``data`` is sorted by trade time ascending. ``T`` is the fill time (ms), ``S`` the **taker's** side
("Side of taker. Buy, Sell"), ``v`` the size and ``p`` the price as strings (kept as sent), ``i`` the
trade id *as a string*. On spot it is a digit string (the docs' examples, e.g. ``2100000000007764263``);
on linear/inverse it is a UUID, which is not the spot grammar and fails the frame. ``BT`` marks a block
trade (still a trade of the market: kept). ``seq`` is the "cross sequence" of the matching engine: it
orders events of one symbol across Bybit's channels (the orderbook carries the same ``seq``), so it
jumps by the number of book events between two trades and says nothing about lost *trades*: not read.

Trade ids are numeric but **not a per-market count**: the v3 spot trade page (doc-v3-offline
spot/ws-public/public-trade) says the id "is shared across different symbols ... consecutive: 112,
113, 114" across ETHUSDT, BTCUSDT and BHTBTC; the v5 pages say only "Trade ID" and show ids of the
same form. So ids are unique and rise, but a market's ids skip whatever other markets traded in
between: missing trades cannot be found by id (``feed.py`` says what the feed does instead).

Control messages: a subscribe answer ``{"success": true|false, "ret_msg": "", "conn_id": "...",
"req_id": "...", "op": "subscribe"}`` ("subscribed" or "error"); the answer to our ``{"op":"ping"}``,
``{"success": true, "ret_msg": "pong", "conn_id": ..., "op": "ping"}`` on spot (``{"op": "pong",
"args": [ms], ...}`` on linear/inverse) -> "heartbeat"; anything else -> "other".

REST (bybit-exchange.github.io/docs/v5/market/recent-trade), ``GET /v5/market/recent-trade``::

    {"retCode": 0, "retMsg": "OK", "result": {"category": "spot", "list": [
        {"execId": "2100000000007764263", "symbol": "BTCUSDT", "price": "16618.49", "size": "0.00012",
         "side": "Buy", "time": "1672052955758", "isBlockTrade": false}]},
     "retExtInfo": {}, "time": 1672053054358}

``execId`` is the stream's ``i``, ``side`` the taker's, ``time`` ms *as a string*. A non-zero
``retCode`` is an error reply (``retMsg`` says why).

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

EXCHANGE: Final = "bybit"
TOPIC_PREFIX: Final = "publicTrade."

# Trade times are epoch milliseconds; above 1e15 it is not ms (µs, ns or garbage).
_MAX_MS: Final = 10**15
_MAX_ID_DIGITS: Final = 19  # MAX_TRADE_ID has 19 digits
_Time = Annotated[int, msgspec.Meta(gt=0, lt=_MAX_MS)]
_SIDES: Final[dict[str, Side]] = {"Buy": "buy", "Sell": "sell"}
_HEARTBEAT: Final = ParsedFrame("heartbeat")
_SUBSCRIBED: Final = ParsedFrame("subscribed")
_OTHER: Final = ParsedFrame("other")


class _Row(msgspec.Struct, gc=False):
    T: _Time
    s: str
    S: Literal["Buy", "Sell"]
    v: str
    p: str
    i: str


class _TradeFrame(msgspec.Struct, gc=False):
    topic: str
    data: list[_Row]


class _RestRow(msgspec.Struct, gc=False):
    execId: str  # the venue's field names
    symbol: str
    price: str
    size: str
    side: Literal["Buy", "Sell"]
    time: str


class _RestResult(msgspec.Struct, gc=False):
    rows: list[_RestRow] = msgspec.field(name="list")


class _RestAnswer(msgspec.Struct, gc=False):
    retCode: int
    retMsg: str = ""
    result: msgspec.Raw = msgspec.Raw(b"null")  # decoded once retCode says it is a result, not {}


_decode_trades: Final = msgspec.json.Decoder(_TradeFrame).decode
_decode_any: Final = msgspec.json.Decoder().decode
_decode_rest: Final = msgspec.json.Decoder(_RestAnswer).decode
_decode_result: Final = msgspec.json.Decoder(_RestResult).decode
_symbols: Final = SymbolMemo(EXCHANGE)


def trade_id(text: str) -> int:
    """A spot trade id: ASCII digits that fit the warehouse's id column; ``BadField`` otherwise."""
    # isascii() first: str.isdigit() alone accepts other scripts' digits, which int() would read.
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_ID_DIGITS or int(text) > MAX_TRADE_ID:
        raise BadField(f"bad trade id i={show(text)}")
    return int(text)


def _trade(row: _Row, received_us: int, conn_id: str, frame_seq: int) -> Trade:
    if match_decimal(row.p) is None:
        raise BadField(f"bad price p={show(row.p)}")
    if match_decimal(row.v) is None:
        raise BadField(f"bad size v={show(row.v)}")
    native = row.s
    return Trade(EXCHANGE, _symbols[native], native, trade_id(row.i), row.p, row.v, _SIDES[row.S],
                 row.T * 1000, received_us, conn_id, frame_seq)


def _trades(frame: _TradeFrame, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    try:
        trades = tuple(_trade(row, received_us, conn_id, frame_seq) for row in frame.data)
    except ValueError as exc:
        return ParsedFrame("error", error=error_reason(EXCHANGE, "publicTrade", exc))
    return ParsedFrame("trades", trades)


def parse_frame(payload: bytes | str, received_us: int, conn_id: str = "", frame_seq: int = 0, *,
                subscribed: AbstractSet[str] | None = None) -> ParsedFrame:
    """One Bybit v5 public WebSocket frame -> ``ParsedFrame``; never raises.

    ``publicTrade.*`` -> "trades"; a subscribe answer -> "subscribed" (or "error" when ``success`` is
    false); the pong answering our ping -> "heartbeat"; other topics and answers -> "other". A trade
    whose ``s`` is not one of ``subscribed`` (the connection's native symbols; None checks nothing), or
    not in the venue's form (``btcusdt``, ``BTC-USDT``), keeps ``symbol=""`` for the warehouse to
    dead-letter (``common.only_subscribed``, ``common.is_native_symbol``).
    """
    try:
        frame = _decode_trades(payload)
    except (ValueError, TypeError, RecursionError):  # msgspec errors are ValueErrors
        return only_subscribed(_parse_slow(payload, received_us, conn_id, frame_seq), subscribed)
    if not frame.topic.startswith(TOPIC_PREFIX):
        return _OTHER  # another topic whose data happens to look like trades
    return only_subscribed(_trades(frame, received_us, conn_id, frame_seq), subscribed)


def _parse_slow(payload: bytes | str, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    """Everything the typed fast path did not take: control messages, other topics, bad frames."""
    refused = refused_payload(EXCHANGE, payload)
    if refused is not None:
        return refused
    message: Any = decoded(EXCHANGE, payload, _decode_any)
    if isinstance(message, ParsedFrame):
        return message
    if not isinstance(message, dict):
        return ParsedFrame("error", error=f"{EXCHANGE}: expected a JSON object, got {type(message).__name__}")
    topic = message.get("topic")
    if isinstance(topic, str) and topic.startswith(TOPIC_PREFIX):
        try:
            frame = msgspec.convert(message, _TradeFrame)
        except msgspec.ValidationError as exc:
            return ParsedFrame("error", error=error_reason(EXCHANGE, "publicTrade", exc))
        return _trades(frame, received_us, conn_id, frame_seq)
    if topic is not None:
        return _OTHER
    op = message.get("op")
    if message.get("success") is False:
        return ParsedFrame("error", error=f"{EXCHANGE} {show(op)} refused: {venue_message(message.get('ret_msg', ''))}")
    if op == "subscribe" and message.get("success") is True:
        return _SUBSCRIBED
    if op == "pong" or (op == "ping" and message.get("ret_msg") == "pong"):
        return _HEARTBEAT
    return _OTHER


def parse_rest_trades(body: bytes | str, native_symbol: str, received_us: int, *, conn_id: str = "",
                      frame_seq: int = 0) -> tuple[Trade, ...]:
    """Trades of one ``GET /v5/market/recent-trade`` answer, in page order (Bybit: newest first).

    ``native_symbol`` is the request's ``symbol``; a row of another symbol makes the page unusable.
    Raises ``MalformedResponse`` (only) on an error reply (``retCode`` not 0) or a bad row.
    """
    native = native_symbol.upper()
    symbol = _symbols[native]
    try:
        answer = _decode_rest(body)
        if answer.retCode != 0:
            raise MalformedResponse(f"{EXCHANGE} REST error {answer.retCode}: {venue_message(answer.retMsg)}")
        result = _decode_result(answer.result)
    except MalformedResponse:
        raise
    except (ValueError, TypeError, RecursionError) as exc:
        raise MalformedResponse(f"{EXCHANGE} REST trades: {exc}") from None
    trades: list[Trade] = []
    for index, row in enumerate(result.rows):
        try:
            if row.symbol != native:
                raise BadField(f"symbol={show(row.symbol)}, asked for {native}")
            if match_decimal(row.price) is None:
                raise BadField(f"bad price={show(row.price)}")
            if match_decimal(row.size) is None:
                raise BadField(f"bad size={show(row.size)}")
            if not (row.time.isascii() and row.time.isdigit()) or not 0 < int(row.time) < _MAX_MS:
                raise BadField(f"bad time={show(row.time)}")
            trades.append(Trade(EXCHANGE, symbol, native, trade_id(row.execId), row.price, row.size,
                                _SIDES[row.side], int(row.time) * 1000, received_us, conn_id, frame_seq))
        except ValueError as exc:
            raise MalformedResponse(f"{EXCHANGE} REST trades row {index}: {exc}") from None
    return tuple(trades)
