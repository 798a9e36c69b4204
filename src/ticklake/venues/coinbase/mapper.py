"""Coinbase: Advanced Trade and legacy Exchange WebSocket frames, and Exchange REST pages, in; trades out.

Advanced Trade (``wss://advanced-trade-ws.coinbase.com``, the current feed)::

    {"channel": "market_trades", "client_id": "", "timestamp": "...", "sequence_num": 12,
     "events": [{"type": "snapshot"|"update",
                 "trades": [{"trade_id": "995098663", "product_id": "BTC-USD", "price": "68923.67",
                             "size": "0.00064", "side": "SELL", "time": "2026-04-07T00:28:58.544778Z"}]}]}

``sequence_num`` goes into ``ParsedFrame.sequence`` for every Advanced Trade frame (heartbeats
and subscriptions included): it is the connection's message counter, so a gap means lost messages.
It must be a non-negative integer within uint64; any other value (-5, 40 digits, "5") makes the
frame an error naming ``sequence_num``: a counter that cannot be one would fake or hide a gap.

Exchange feed (``wss://ws-feed.exchange.coinbase.com``, formerly ``ws-feed.pro``; the 2021 recording)::

    {"type": "match"|"last_match", "trade_id": 881613, "side": "sell", "size": "0.04",
     "price": "14.7775", "product_id": "BAND-GBP", "sequence": 333938798, "time": "..."}

``side`` there is the MAKER's side (Coinbase docs: "The side field indicates the maker order side"),
so the taker side is its opposite. ``last_match`` (the product's latest match, sent once on subscribe)
is a real trade with a real id and is emitted as one: if the previous connection died just before
that trade, it is the only copy ticklake gets, and if it was already captured, dedup by trade id drops
it. The Exchange ``sequence`` is per product, not per connection, so it does not go into
``ParsedFrame.sequence``.

Which side Advanced Trade's ``market_trades.side`` names is not documented; see
``MARKET_TRADES_SIDE_IS_MAKER`` and docs/decisions/coinbase-side.md.

Pure: no I/O, no clock. The only state is the symbol and seconds memos in ``common``.
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from typing import Annotated, Any, Final, Literal

import msgspec

from ticklake.exchanges.mappers.common import (
    FROMISOFORMAT,
    MAX_TRADE_ID,
    SECONDS,
    BadField,
    MalformedResponse,
    SymbolMemo,
    decoded,
    error_reason,
    match_decimal,
    match_decimal_pair,
    match_decimals,
    match_utc_times,
    only_subscribed,
    refused_payload,
    rest_rows,
    rfc3339_to_us,
    show,
    string_trade_id,
    venue_message,
)
from ticklake.model import ParsedFrame, Side, Trade

__all__ = ["EXCHANGE", "MARKET_TRADES_SIDE_IS_MAKER", "parse_frame", "parse_rest_trades"]

EXCHANGE: Final = "coinbase"

MARKET_TRADES_SIDE_IS_MAKER: Final = True
"""Advanced Trade ``market_trades[].side`` is the MAKER's side, so the taker side is its opposite.

Coinbase documents no meaning for this field. Evidence (details and sources in
docs/decisions/coinbase-side.md):
* Coinbase documents the Exchange ``match`` and REST ``/products/{id}/trades`` ``side`` as the maker
  order side. Advanced Trade runs on the same matching engine, its ``trade_id`` values look like the
  Exchange's id sequence (an inference), and nothing documents a flip between the two APIs.
* NautilusTrader's Advanced Trade adapter (``nautilus_coinbase``; the published "latest" API docs of
  ``coinbase_side_to_aggressor``) inverts it: "Coinbase reports the maker side on public market
  trades, so the aggressor is the opposite side." (Older source revisions used it as is.)
* A real ``GET /api/v3/brokerage/products/BTC-USD/ticker`` body (NautilusTrader test data, 2026-04-07)
  lists two ``SELL`` trades at 68923.67 while ``best_ask`` is 68923.67: resting sells being lifted,
  i.e. maker SELL, taker BUY.
Against: cryptofeed's Advanced Trade handler (2024) uses the side as-is; a generated third-party
schema (api-evangelist) calls it "Taker side". Verify against the Exchange REST tape, joined on
trade_id, as the decision record describes, and flip this one constant if the tape disagrees.
"""

_TradeId = Annotated[int, msgspec.Meta(ge=0, le=MAX_TRADE_ID)]
MAX_SEQUENCE: Final = 2**64 - 1  # sequence_num: the connection's message counter, a uint64 at most
# msgspec checks the lower bound while decoding; it cannot hold an upper bound beyond int64, so the
# frames that carry a sequence compare it with MAX_SEQUENCE after decoding (one comparison a frame).
_Sequence = Annotated[int, msgspec.Meta(ge=0)]
_INVERT: Final[dict[str, Side]] = {"buy": "sell", "sell": "buy", "BUY": "sell", "SELL": "buy"}
_AS_IS: Final[dict[str, Side]] = {"BUY": "buy", "SELL": "sell"}
_MARKET_TRADES_TAKER: Final = _INVERT if MARKET_TRADES_SIDE_IS_MAKER else _AS_IS


# --- Advanced Trade ------------------------------------------------------------------------------


class _MarketTrade(msgspec.Struct, gc=False):
    trade_id: str  # digits, as a JSON string
    product_id: str
    price: str
    size: str
    side: Literal["BUY", "SELL"]
    time: str


class _MarketTradesEvent(msgspec.Struct, gc=False):
    trades: list[_MarketTrade] = []


class _MarketTrades(msgspec.Struct, tag_field="channel", tag="market_trades", gc=False):
    events: list[_MarketTradesEvent]
    sequence_num: _Sequence | None = None


class _Heartbeats(msgspec.Struct, tag_field="channel", tag="heartbeats", gc=False):
    sequence_num: _Sequence | None = None


class _Subscriptions(msgspec.Struct, tag_field="channel", tag="subscriptions", gc=False):
    sequence_num: _Sequence | None = None


# --- Exchange feed -------------------------------------------------------------------------------


class _Match(msgspec.Struct, tag_field="type", tag="match", gc=False):
    trade_id: _TradeId
    product_id: str
    price: str
    size: str
    side: Literal["buy", "sell"]  # the maker's side
    time: str


class _LastMatch(_Match, tag="last_match", gc=False):
    pass


class _RestTrade(msgspec.Struct, gc=False):
    """A row of Exchange ``GET /products/{product_id}/trades``."""

    trade_id: _TradeId
    price: str
    size: str
    side: Literal["buy", "sell"]  # the maker's side, as in ``match``
    time: str


_decode_advanced: Final = msgspec.json.Decoder(_MarketTrades | _Heartbeats | _Subscriptions).decode
_decode_exchange: Final = msgspec.json.Decoder(_Match | _LastMatch).decode
_decode_any: Final = msgspec.json.Decoder().decode
_decode_rest: Final = msgspec.json.Decoder(list[_RestTrade]).decode


class _Peek(msgspec.Struct, gc=False):
    """The routing fields of any frame; decoding only these skips the rest without building it."""

    channel: str | None = None
    type: str | None = None
    sequence_num: _Sequence | None = None


_decode_peek: Final = msgspec.json.Decoder(_Peek).decode

# _market_trades: an event's trade ids, joined by commas. 1 to 18 ASCII digits fit Int64 whatever they
# are; a longer id takes the checked path, which words or accepts it.
_match_ids: Final = re.compile(r"[0-9]{1,18}+(?:,[0-9]{1,18}+)*+").fullmatch
_decode_ids: Final = msgspec.json.Decoder(list[int]).decode

_symbols: Final = SymbolMemo(EXCHANGE)
_OTHER: Final = ParsedFrame("other")
_ADVANCED_PARSED: Final = frozenset({"market_trades", "heartbeats", "subscriptions"})
# Exchange-feed messages that carry no trade: book, ticker and full-channel traffic, often most frames.
_EXCHANGE_OTHER_TYPES: Final = frozenset({"ticker", "l2update", "snapshot", "received", "open", "done",
                                          "change", "activate", "status", "auction"})


def parse_frame(payload: bytes | str, received_us: int, conn_id: str = "", frame_seq: int = 0, *,
                subscribed: AbstractSet[str] | None = None) -> ParsedFrame:
    """One Coinbase WebSocket frame (Advanced Trade or Exchange feed) -> ``ParsedFrame``; never raises.

    Advanced Trade: ``market_trades`` -> "trades" (snapshot and update events alike), ``heartbeats``
    -> "heartbeat", ``subscriptions`` -> "subscribed", all with ``sequence`` = ``sequence_num``; other
    channels -> "other". Exchange feed: ``match``/``last_match`` -> "trades", ``heartbeat`` ->
    "heartbeat", ``subscriptions`` -> "subscribed", ticker/l2update/snapshot/... -> "other".
    ``{"type": "error", ...}`` from either -> "error" with the venue's message.

    A trade whose ``product_id`` is not one of ``subscribed`` (the connection's native symbols, e.g.
    ``BTC-USD``; None checks nothing), or not in the venue's form (``btc-usd``, ``BTC/USD``), keeps
    ``symbol=""`` for the warehouse to dead-letter (``common.only_subscribed``, ``common.is_native_symbol``).
    """
    try:
        mark = payload[2]
        if mark == 99 or mark == "c":  # '{"channel":' (Advanced Trade); 99 == ord("c")
            message = _decode_advanced(payload)
        elif mark == 116 or mark == "t":  # '{"type":' (Exchange feed); 116 == ord("t")
            return only_subscribed(_match_frame(_decode_exchange(payload), received_us, conn_id, frame_seq),
                                   subscribed)
        else:
            return only_subscribed(_parse_slow(payload, received_us, conn_id, frame_seq), subscribed)
    except (ValueError, TypeError, IndexError, RecursionError):  # msgspec errors are ValueErrors
        return only_subscribed(_parse_slow(payload, received_us, conn_id, frame_seq), subscribed)
    sequence = message.sequence_num
    if sequence is not None and sequence > MAX_SEQUENCE:
        return _parse_slow(payload, received_us, conn_id, frame_seq)  # words the error
    if isinstance(message, _MarketTrades):
        return only_subscribed(_market_trades(message, received_us, conn_id, frame_seq), subscribed)
    if isinstance(message, _Heartbeats):
        return ParsedFrame("heartbeat", sequence=message.sequence_num)
    return ParsedFrame("subscribed", sequence=message.sequence_num)


def _market_trades(message: _MarketTrades, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    """The trades of a ``market_trades`` frame: the hot path.

    Builds the trades optimistically and checks all trade ids, prices, sizes and timestamps with a
    few regex calls per frame. On any doubt (including timestamps with an offset other than ``Z``, and
    ids with leading zeros) it hands the frame to ``_market_trades_checked``, which is the
    specification (field by field, with the error wording), so both always agree.

    Trade ids: an event's ids are checked (1 to 18 ASCII digits: any such id fits Int64) and turned
    into ints with one msgspec call, as a JSON array. Timestamps take the ``SECONDS`` route (see
    ``common``). The venue batches 250 ms of trades into a frame and the fills of one taker order
    share their time, so a trade whose time text equals the one before it reuses its µs; only the
    times that differ from the one before are checked.
    """
    trades: list[Trade] = []
    append = trades.append
    amounts: list[str] = []  # price and size of every trade
    add_amount = amounts.append
    times: list[str] = []  # every time that differs from the one before it
    add_time = times.append
    taker_of = _MARKET_TRADES_TAKER
    symbols = _symbols
    seconds = SECONDS
    fromisoformat = FROMISOFORMAT
    last_time: str | None = None
    ts_us = 0
    last_native: str | None = None
    symbol = ""
    try:
        for event in message.events:
            rows = event.trades
            if not rows:
                continue
            ids = ",".join([row.trade_id for row in rows])
            # An id with a comma inside would shift the tokens; as many commas as joins rules it out.
            if ids.count(",") != len(rows) - 1 or _match_ids(ids) is None:
                raise BadField("trade_id")
            for row, trade_id in zip(rows, _decode_ids(f"[{ids}]"), strict=True):
                price = row.price
                size = row.size
                add_amount(price)
                add_amount(size)
                time = row.time
                if time != last_time:
                    ts_us = seconds[time[:19]] + fromisoformat(time).microsecond
                    last_time = time
                    add_time(time)
                native = row.product_id
                if native != last_native:  # a frame's trades are mostly, if not all, of one product
                    symbol = symbols[native]
                    last_native = native
                append(Trade(EXCHANGE, symbol, native, trade_id, price, size, taker_of[row.side],
                             ts_us, received_us, conn_id, frame_seq))
    except (ValueError, TypeError):  # msgspec errors are ValueErrors
        return _market_trades_checked(message, received_us, conn_id, frame_seq)
    if amounts:
        joined = " ".join(amounts)
        joined_times = " ".join(times)
        # A value with a space inside would shift the tokens; as many spaces as joins rules it out.
        if (joined.count(" ") != len(amounts) - 1 or match_decimals(joined) is None
                or joined_times.count(" ") != len(times) - 1 or match_utc_times(joined_times) is None):
            return _market_trades_checked(message, received_us, conn_id, frame_seq)
    return ParsedFrame("trades", tuple(trades), "", message.sequence_num)


def _market_trades_checked(message: _MarketTrades, received_us: int, conn_id: str,
                           frame_seq: int) -> ParsedFrame:
    """``_market_trades``, field by field: slower, and says which field is bad."""
    trades: list[Trade] = []
    try:
        for event in message.events:
            for row in event.trades:
                if match_decimal(row.price) is None:
                    raise BadField(f"bad price={show(row.price)}")
                if match_decimal(row.size) is None:
                    raise BadField(f"bad size={show(row.size)}")
                native = row.product_id
                trade_id = string_trade_id(row.trade_id, "trade_id")
                trades.append(Trade(EXCHANGE, _symbols[native], native, trade_id, row.price, row.size,
                                    _MARKET_TRADES_TAKER[row.side], rfc3339_to_us(row.time),
                                    received_us, conn_id, frame_seq))
    except ValueError as exc:
        return ParsedFrame("error", error=error_reason(EXCHANGE, "market_trades", exc),
                           sequence=message.sequence_num)
    return ParsedFrame("trades", tuple(trades), sequence=message.sequence_num)


def _match_trade(row: _Match | _RestTrade, native: str, symbol: str, received_us: int, conn_id: str,
                 frame_seq: int) -> Trade:
    price = row.price
    size = row.size
    if match_decimal_pair(f"{price} {size}") is None:  # one regex call for both, then the wording
        if match_decimal(price) is None:
            raise BadField(f"bad price={show(price)}")
        raise BadField(f"bad size={show(size)}")
    # The Exchange API's side is the maker's (documented), so the taker did the opposite.
    return Trade(EXCHANGE, symbol, native, row.trade_id, price, size, _INVERT[row.side],
                 rfc3339_to_us(row.time), received_us, conn_id, frame_seq)


def _match_frame(match: _Match, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    native = match.product_id
    try:
        trade = _match_trade(match, native, _symbols[native], received_us, conn_id, frame_seq)
    except ValueError as exc:
        kind = "last_match" if isinstance(match, _LastMatch) else "match"
        return ParsedFrame("error", error=error_reason(EXCHANGE, kind, exc))
    return ParsedFrame("trades", (trade,))


def _parse_slow(payload: bytes | str, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    """Everything the typed fast path did not take: control messages, other channels, bad frames."""
    refused = refused_payload(EXCHANGE, payload)
    if refused is not None:
        return refused
    try:
        peek = _decode_peek(payload)
    except (ValueError, TypeError, RecursionError):
        pass  # not an object, or odd field types: the generic decode below words the verdict
    else:
        # Book and ticker frames can be most of a connection's traffic (and kilobytes each): classify
        # them from the routing fields alone instead of building their dicts.
        if (peek.channel is not None and peek.channel not in _ADVANCED_PARSED and peek.type != "error"
                and (peek.sequence_num is None or peek.sequence_num <= MAX_SEQUENCE)):
            return ParsedFrame("other", sequence=peek.sequence_num)
        if peek.channel is None and peek.type in _EXCHANGE_OTHER_TYPES:
            return _OTHER
    message: Any = decoded(EXCHANGE, payload, _decode_any)
    if isinstance(message, ParsedFrame):
        return message
    if not isinstance(message, dict):
        return ParsedFrame("error", error=f"{EXCHANGE}: expected a JSON object, got {type(message).__name__}")
    channel = message.get("channel")
    kind = message.get("type")
    if kind == "error":
        reason = message.get("message") or message.get("reason")
        return ParsedFrame("error", error=f"{EXCHANGE} error: {venue_message(reason)}")
    if channel is not None:
        sequence = message.get("sequence_num")
        if sequence is not None and (type(sequence) is not int or not 0 <= sequence <= MAX_SEQUENCE):
            return ParsedFrame("error", error=f"{EXCHANGE} {show(channel)}: bad sequence_num={show(sequence)}")
        if channel in ("market_trades", "heartbeats", "subscriptions"):
            try:
                typed = msgspec.convert(message, _MarketTrades | _Heartbeats | _Subscriptions)
            except msgspec.ValidationError as exc:
                return ParsedFrame("error", error=error_reason(EXCHANGE, str(channel), exc), sequence=sequence)
            if isinstance(typed, _MarketTrades):
                return _market_trades(typed, received_us, conn_id, frame_seq)
            return ParsedFrame("heartbeat" if isinstance(typed, _Heartbeats) else "subscribed",
                               sequence=typed.sequence_num)
        return ParsedFrame("other", sequence=sequence)  # level2/l2_data, ticker, candles, status, ...
    if kind in ("match", "last_match"):
        try:
            match = msgspec.convert(message, _Match | _LastMatch)
        except msgspec.ValidationError as exc:
            return ParsedFrame("error", error=error_reason(EXCHANGE, str(kind), exc))
        return _match_frame(match, received_us, conn_id, frame_seq)
    if kind == "heartbeat":
        return ParsedFrame("heartbeat")
    if kind == "subscriptions":
        return ParsedFrame("subscribed")
    return _OTHER  # ticker, l2update, snapshot, full-channel messages, anything new


def parse_rest_trades(body: bytes | str, native_symbol: str, received_us: int, *, conn_id: str = "",
                      frame_seq: int = 0) -> tuple[Trade, ...]:
    """Trades of one Exchange ``GET /products/{product_id}/trades`` page, in page order.

    Rows are ``{time, trade_id, price, size, side}``; ``side`` is the maker's, as in ``match``, so it
    is inverted. ``trade_id`` is the id the feeds carry, so pages and live frames dedup against each
    other. ``native_symbol`` is the ``product_id`` of the request (rows do not repeat it).
    Raises ``MalformedResponse`` (only) on an error reply (``{"message": ...}``) or a bad row.
    """
    symbol = _symbols[native_symbol]
    try:
        rows = _decode_rest(body)
    except (ValueError, TypeError, RecursionError) as exc:
        raise MalformedResponse(_rest_error(body, exc)) from None
    return rest_rows(EXCHANGE, rows,
                     lambda row: _match_trade(row, native_symbol, symbol, received_us, conn_id, frame_seq))


def _rest_error(body: bytes | str, exc: Exception) -> str:
    """Why a REST body is unusable: the venue's ``{"message": ...}`` when it sent one."""
    try:
        message = _decode_any(body)
    except (ValueError, TypeError, RecursionError):
        return f"{EXCHANGE} REST trades: invalid JSON ({exc})"
    if isinstance(message, dict) and "message" in message:
        return f"{EXCHANGE} REST error: {venue_message(message['message'])}"
    return f"{EXCHANGE} REST trades: {exc}"
