"""Kraken spot: WebSocket v2 and v1 trade frames, and REST trade pages, in; normalized trades out.

WebSocket v2 (``wss://ws.kraken.com/v2``, JSON objects, the current API)::

    {"channel": "trade", "type": "snapshot"|"update",
     "data": [{"symbol": "BTC/USD", "side": "buy", "price": 64123.1, "qty": 0.0011,
               "ord_type": "market", "trade_id": 74123456, "timestamp": "2026-11-26T02:00:00.123456Z"}]}

``side`` is the taker's side, ``trade_id`` is Kraken's per-book sequence (the same id the REST
``Trades`` rows carry), and ``price``/``qty`` are JSON *numbers*. They are decoded as
``msgspec.Raw``, i.e. the exact characters the venue sent (``64123.1`` stays ``"64123.1"``), never
through a float. Only a number in exponent notation takes the slower exact route: ``Decimal`` then
``format(d, "f")``. A price or quantity sent as a JSON *string* is not Kraken's grammar and fails the
frame (``Decimal`` would read ``"1_0"`` as 10, and takes ``" 1"``, ``"+1"``, ``"1."``, ``".5"``).
The raw text is also ~2x cheaper than a ``Decimal`` per value (measured: 0.31 vs 0.56 µs to decode a
one-trade frame, plus 0.3 µs to format two Decimals).

WebSocket v1 (``wss://ws.kraken.com``, arrays; the 2021 recordings)::

    [channelID, [[price, volume, time, side "b"|"s", orderType "m"|"l", misc], ...], "trade", "XBT/USD"]

v1 has no trade id. The mapper derives ``trade_id = ts_us * 1000 + index_within_frame``. It is
deterministic: a replay of the raw frame gives the same id, so re-derivation and dedup of replays
work. It is ordered like the trades (time first, then frame order) and unique within a frame. It is
unique across frames unless two different frames of one pair carry trades stamped with the same
microsecond: then the ids can collide, and dedup by id would drop a real trade. v1 timestamps have
µs resolution, so that takes two trades of one pair in the same microsecond, split over two frames.
That is rare, not impossible, and it is the price of having no venue id. The id fits an Int64 until
the year 2262. It is NOT Kraken's trade id: v1 trades must not be deduplicated by id against REST
or v2 trades of the same market.

Pure: no I/O, no clock. The only state is the symbol and seconds memos in ``common``.
"""

from __future__ import annotations

import re
from codecs import ascii_decode
from collections.abc import Set as AbstractSet
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

import msgspec

from ticklake.exchanges.mappers.common import (
    FROMISOFORMAT,
    MAX_TRADE_ID,
    SECONDS,
    UTC_TIME_RE,
    BadField,
    MalformedResponse,
    SymbolMemo,
    decimal_number_text,
    decoded,
    epoch_seconds_text_to_us,
    error_reason,
    match_decimal,
    match_utc_times,
    only_subscribed,
    refused_payload,
    rest_rows,
    rfc3339_to_us,
    show,
    texts_valid,
    venue_message,
)
from ticklake.model import ParsedFrame, Side, Trade

__all__ = ["EXCHANGE", "KrakenTradesPage", "parse_frame", "parse_rest_trades"]

EXCHANGE: Final = "kraken"

_TradeId = Annotated[int, msgspec.Meta(ge=0, le=MAX_TRADE_ID)]


class _V2Row(msgspec.Struct, gc=False):
    symbol: str
    side: Literal["buy", "sell"]
    price: msgspec.Raw  # the JSON number's own text; see the module docstring
    qty: msgspec.Raw
    trade_id: _TradeId
    timestamp: str


class _V2Trade(msgspec.Struct, tag_field="channel", tag="trade", gc=False):
    data: list[_V2Row]


class _V2Heartbeat(msgspec.Struct, tag_field="channel", tag="heartbeat", gc=False):
    pass


_V1Frame = tuple[int, list[list[str]], str, str]

_decode_v2: Final = msgspec.json.Decoder(_V2Trade | _V2Heartbeat).decode
_decode_v1: Final = msgspec.json.Decoder(_V1Frame).decode
_decode_any: Final = msgspec.json.Decoder().decode
_decode_exact: Final = msgspec.json.Decoder(float_hook=Decimal).decode  # REST: numbers -> Decimal
_decode_decimal: Final = msgspec.json.Decoder(Decimal).decode


class _Peek(msgspec.Struct, gc=False):
    """The routing field of a v2 object; decoding only it skips the rest without building it."""

    channel: str | None = None


_decode_peek: Final = msgspec.json.Decoder(_Peek).decode
# What _v2_trades checks, see its docstring: the characters of the frame's numbers, all run together;
# and of a one-trade frame, "price qty timestamp" in one call.
_match_numbers: Final = re.compile(r"[-0-9.]++").fullmatch
_match_row: Final = re.compile(f"[-0-9.]++ [-0-9.]++ {UTC_TIME_RE}").fullmatch
_NUMBER_STARTS: Final = frozenset("-0123456789")  # how a JSON number begins (never a string's '"')
_V2_PARSED: Final = frozenset({"trade", "heartbeat"})
_HEARTBEAT: Final = ParsedFrame("heartbeat")  # frozen, so one instance serves every heartbeat
_V1_SIDES: Final[dict[str, Side]] = {"b": "buy", "s": "sell"}
_symbols: Final = SymbolMemo(EXCHANGE)


class KrakenTradesPage(msgspec.Struct, frozen=True):
    """One ``/0/public/Trades`` page: its trades, and ``last``, the ``since`` of the next page.

    ``last`` is Kraken's cursor as it sent it (epoch nanoseconds, as text): pass it back verbatim.
    """

    trades: tuple[Trade, ...]
    last: str


def parse_frame(payload: bytes | str, received_us: int, conn_id: str = "", frame_seq: int = 0, *,
                subscribed: AbstractSet[str] | None = None) -> ParsedFrame:
    """One Kraken WebSocket frame (v2 or v1) -> ``ParsedFrame``; never raises.

    v2: ``trade`` -> "trades"; ``heartbeat`` -> "heartbeat"; a subscribe ack -> "subscribed" (or
    "error" when ``success`` is false); ``status``, ``pong`` and other channels -> "other".
    v1: trade arrays -> "trades"; ``heartbeat`` -> "heartbeat"; ``subscriptionStatus`` subscribed ->
    "subscribed" (status error -> "error"); ``systemStatus``, book/ticker arrays -> "other".

    A trade whose symbol is not one of ``subscribed`` (the connection's native symbols, e.g.
    ``BTC/USD``; None checks nothing), or not in the venue's form (``btc/usd``, ``BTC/USD\x00``),
    keeps ``symbol=""`` for the warehouse to dead-letter (``common.only_subscribed``,
    ``common.is_native_symbol``). v1 names pairs ``XBT/USD``: compared with v2 spellings, it is not
    subscribed (the feed speaks v2 only; v1 is read from recordings, without ``subscribed``).
    """
    try:
        first = payload[0]
        if first == 123 or first == "{":  # 123 == ord("{"), for bytes payloads
            message = _decode_v2(payload)
        elif first == 91 or first == "[":
            return only_subscribed(_v1_trades(_decode_v1(payload), received_us, conn_id, frame_seq), subscribed)
        else:
            return only_subscribed(_parse_slow(payload, received_us, conn_id, frame_seq), subscribed)
    except (ValueError, TypeError, IndexError, RecursionError):  # msgspec errors are ValueErrors
        return only_subscribed(_parse_slow(payload, received_us, conn_id, frame_seq), subscribed)
    if isinstance(message, _V2Heartbeat):
        return _HEARTBEAT
    return only_subscribed(_v2_trades(message, received_us, conn_id, frame_seq), subscribed)


def _v2_trades(message: _V2Trade, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    """The trades of a v2 ``trade`` frame: the hot path.

    Builds the trades optimistically and checks all prices, quantities and timestamps once for the
    whole frame. On any doubt (including numbers in exponent notation and timestamps with an offset
    other than ``Z``) it hands the frame to ``_v2_trades_checked``, which is the specification, so
    both always agree.

    ``price``/``qty`` are ``msgspec.Raw``: msgspec has checked that each is one valid JSON value,
    and a valid JSON value made only of ``-``, digits and ``.`` is a JSON number without an
    exponent (``-?(0|[1-9][0-9]*)(\\.[0-9]+)?``), i.e. a plain decimal. So checking the characters
    suffices, and of all a frame's numbers run together in one call: the whole is made only of
    those characters exactly when every value is. Timestamps take the ``SECONDS``
    route (see ``common``); a trade whose timestamp text equals the one before it reuses its µs,
    and only the timestamps that differ from the one before are checked.
    """
    data = message.data
    if len(data) == 1:  # most update frames: the same steps, without the lists
        row = data[0]
        try:
            price = ascii_decode(row.price)[0]
            qty = ascii_decode(row.qty)[0]
            time = row.timestamp
            # No space count here: no token of the pattern admits a space, and it has exactly three.
            if _match_row(f"{price} {qty} {time}") is None:
                return _v2_trades_checked(message, received_us, conn_id, frame_seq)
            native = row.symbol
            return ParsedFrame("trades", (Trade(
                EXCHANGE, _symbols[native], native, row.trade_id, price, qty, row.side,
                SECONDS[time[:19]] + FROMISOFORMAT(time).microsecond, received_us, conn_id, frame_seq),))
        except (ValueError, TypeError):  # UnicodeDecodeError is a ValueError
            return _v2_trades_checked(message, received_us, conn_id, frame_seq)
    trades: list[Trade] = []
    append = trades.append
    numbers: list[str] = []  # price and qty of every trade
    add_number = numbers.append
    times: list[str] = []  # every timestamp that differs from the one before it
    add_time = times.append
    symbols = _symbols
    seconds = SECONDS
    fromisoformat = FROMISOFORMAT
    decode = ascii_decode
    last_time: str | None = None
    ts_us = 0
    try:
        for row in data:
            price = decode(row.price)[0]
            qty = decode(row.qty)[0]
            add_number(price)
            add_number(qty)
            time = row.timestamp
            if time != last_time:
                ts_us = seconds[time[:19]] + fromisoformat(time).microsecond
                last_time = time
                add_time(time)
            native = row.symbol
            append(Trade(EXCHANGE, symbols[native], native, row.trade_id, price, qty, row.side, ts_us,
                         received_us, conn_id, frame_seq))
    except (ValueError, TypeError):  # UnicodeDecodeError is a ValueError
        return _v2_trades_checked(message, received_us, conn_id, frame_seq)
    if times:
        joined = " ".join(times)
        # A timestamp with a space inside would shift the tokens; as many spaces as joins rules it out.
        if (_match_numbers("".join(numbers)) is None or joined.count(" ") != len(times) - 1
                or match_utc_times(joined) is None):
            return _v2_trades_checked(message, received_us, conn_id, frame_seq)
    return ParsedFrame("trades", tuple(trades))


def _v2_trades_checked(message: _V2Trade, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    """``_v2_trades``, field by field: slower, takes any exact number form, says which field is bad."""
    trades: list[Trade] = []
    try:
        for row in message.data:
            native = row.symbol
            trades.append(Trade(EXCHANGE, _symbols[native], native, row.trade_id, _number_text(row.price, "price"),
                                _number_text(row.qty, "qty"), row.side, rfc3339_to_us(row.timestamp),
                                received_us, conn_id, frame_seq))
    except ValueError as exc:
        return ParsedFrame("error", error=error_reason(EXCHANGE, "v2 trade", exc))
    return ParsedFrame("trades", tuple(trades))


def _number_text(raw: msgspec.Raw, field: str) -> str:
    """Exact plain text of a JSON number: its own characters when plain, else via ``Decimal``.

    The ``Decimal`` route takes exponent notation (``1E-8`` -> ``"0.00000001"``); it rejects NaN and
    infinities. Only JSON numbers are taken: msgspec has checked that ``raw`` is one valid JSON value,
    and one that starts with ``-`` or a digit is a number. A string (``"1.5"``, ``"1_0"``) is refused
    before ``Decimal``, whose grammar is far wider than JSON's.
    """
    try:
        text = str(raw, "ascii")
        if match_decimal(text) is not None:
            return text
        if not text or text[0] not in _NUMBER_STARTS:
            raise ValueError(text)
        return decimal_number_text(_decode_decimal(raw))
    except ValueError:  # msgspec.DecodeError included
        raise BadField(f"bad {field}={show(bytes(raw).decode('utf-8', 'replace'))}") from None


def _v1_trades(frame: _V1Frame, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    _channel_id, rows, name, pair = frame
    if name != "trade":
        return ParsedFrame("other")
    symbol = _symbols[pair]
    trades: list[Trade] = []
    append = trades.append
    texts: list[str] = []
    add_text = texts.append
    sides = _V1_SIDES
    try:
        for index, row in enumerate(rows):
            price, qty, when, side = row[0], row[1], row[2], row[3]
            add_text(price)
            add_text(qty)
            whole, _, frac = when.partition(".")
            if not (whole.isdigit() and frac.isdigit() and when.isascii()):
                raise BadField("time")
            ts_us = int(whole) * 1_000_000 + int((frac + "00000")[:6])
            # See the module docstring: v1 has no trade id, this one is derived from time + position.
            append(Trade(EXCHANGE, symbol, pair, ts_us * 1000 + index, price, qty, sides[side], ts_us,
                         received_us, conn_id, frame_seq))
    except (ValueError, IndexError, KeyError):
        return _v1_trades_checked(rows, pair, symbol, received_us, conn_id, frame_seq)
    if not texts_valid(texts):
        return _v1_trades_checked(rows, pair, symbol, received_us, conn_id, frame_seq)
    return ParsedFrame("trades", tuple(trades))


def _v1_trades_checked(rows: list[list[str]], pair: str, symbol: str, received_us: int, conn_id: str,
                       frame_seq: int) -> ParsedFrame:
    """``_v1_trades``, field by field: slower, and says which field is bad."""
    trades: list[Trade] = []
    try:
        for index, row in enumerate(rows):
            if len(row) < 4:
                raise BadField(f"trade row {index} has {len(row)} fields, expected 6")
            price, qty, when, side = row[0], row[1], row[2], row[3]
            if match_decimal(price) is None:
                raise BadField(f"bad price={show(price)}")
            if match_decimal(qty) is None:
                raise BadField(f"bad volume={show(qty)}")
            taker = _V1_SIDES.get(side)
            if taker is None:
                raise BadField(f"bad side={show(side)}")
            try:
                ts_us = epoch_seconds_text_to_us(when)
            except ValueError:
                raise BadField(f"bad time={show(when)}") from None
            trades.append(Trade(EXCHANGE, symbol, pair, ts_us * 1000 + index, price, qty, taker, ts_us,
                                received_us, conn_id, frame_seq))
    except ValueError as exc:
        return ParsedFrame("error", error=error_reason(EXCHANGE, "v1 trade", exc))
    return ParsedFrame("trades", tuple(trades))


def _parse_slow(payload: bytes | str, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    """Everything the typed fast path did not take: control messages, other channels, bad frames."""
    refused = refused_payload(EXCHANGE, payload)
    if refused is not None:
        return refused
    try:
        peek = _decode_peek(payload)
    except (ValueError, TypeError, RecursionError):
        pass  # an array (v1), or odd field types: the generic decode below words the verdict
    else:
        # v2 book/ticker frames can be most of a connection's traffic: classify them by channel alone.
        if peek.channel is not None and peek.channel not in _V2_PARSED:
            return ParsedFrame("other")
    message: Any = decoded(EXCHANGE, payload, _decode_any)
    if isinstance(message, ParsedFrame):
        return message
    if isinstance(message, list):
        return _slow_v1_array(message, received_us, conn_id, frame_seq)
    if not isinstance(message, dict):
        return ParsedFrame("error", error=f"{EXCHANGE}: expected a JSON object or array, "
                                          f"got {type(message).__name__}")
    channel = message.get("channel")
    if channel == "trade":
        # Re-decode with the typed decoder (msgspec.convert cannot build the Raw price fields from
        # Python objects): it either succeeds (an unusual layout) or words the error with the field.
        try:
            typed = msgspec.json.decode(payload, type=_V2Trade)
        except msgspec.ValidationError as exc:
            return ParsedFrame("error", error=error_reason(EXCHANGE, "v2 trade", exc))
        return _v2_trades(typed, received_us, conn_id, frame_seq)
    if channel == "heartbeat":
        return _HEARTBEAT
    method = message.get("method")
    if method == "subscribe":
        if message.get("success") is True:
            return ParsedFrame("subscribed")
        return ParsedFrame("error", error=f"{EXCHANGE} subscribe failed: {venue_message(message.get('error'))}")
    event = message.get("event")
    if event is not None:
        return _v1_event(message, event)
    if channel is not None or method is not None:
        return ParsedFrame("other")  # status, book, ticker, pong, unsubscribe, ...
    if "error" in message:
        return ParsedFrame("error", error=f"{EXCHANGE} error: {venue_message(message['error'])}")
    return ParsedFrame("other")


def _v1_event(message: dict[str, Any], event: object) -> ParsedFrame:
    if event == "heartbeat":
        return _HEARTBEAT
    if event == "subscriptionStatus":
        status = message.get("status")
        if status == "subscribed":
            return ParsedFrame("subscribed")
        if status == "error":
            reason = venue_message(message.get("errorMessage"))
            return ParsedFrame("error", error=f"{EXCHANGE} subscribe failed: {reason}")
        return ParsedFrame("other")  # unsubscribed
    if event == "error":
        return ParsedFrame("error", error=f"{EXCHANGE} error: {venue_message(message.get('errorMessage'))}")
    return ParsedFrame("other")  # systemStatus, pong, ...


def _slow_v1_array(message: list[Any], received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    if len(message) >= 4 and message[-2] == "trade":
        try:
            typed = msgspec.convert(message, _V1Frame)  # words the error with the field's path
        except msgspec.ValidationError as exc:
            return ParsedFrame("error", error=error_reason(EXCHANGE, "v1 trade", exc))
        return _v1_trades(typed, received_us, conn_id, frame_seq)
    return ParsedFrame("other")  # book, ticker, spread, ohlc arrays


def parse_rest_trades(body: bytes | str, native_symbol: str, received_us: int, *, conn_id: str = "",
                      frame_seq: int = 0) -> KrakenTradesPage:
    """Trades of one ``GET /0/public/Trades`` page, in page order, and the page's ``last`` cursor.

    Body: ``{"error": [], "result": {PAIR: [[price, volume, time, side, ordertype, misc, trade_id],
    ...], "last": "<ns>"}}``. ``time`` is a JSON number of epoch seconds; it is decoded as a Decimal
    and converted to µs exactly (truncated). ``trade_id`` is Kraken's id, the same one WS v2 sends,
    so pages and live v2 frames dedup against each other.

    ``native_symbol`` names the trades (``result`` keys are Kraken's REST pair names such as
    ``XXBTZUSD``, which the canonical mapping does not read): pass the WebSocket v2 spelling,
    e.g. ``"BTC/USD"``. Raises ``MalformedResponse`` (only) on an error reply or a bad row.
    """
    symbol = _symbols[native_symbol]
    try:
        message: Any = _decode_exact(body)
    except (ValueError, TypeError, RecursionError) as exc:
        raise MalformedResponse(f"{EXCHANGE} REST trades: invalid JSON ({exc})") from None
    if not isinstance(message, dict):
        raise MalformedResponse(f"{EXCHANGE} REST trades: expected an object")
    errors = message.get("error")
    if errors:
        raise MalformedResponse(f"{EXCHANGE} REST error: {venue_message(errors)}")
    result = message.get("result")
    if not isinstance(result, dict):
        raise MalformedResponse(f"{EXCHANGE} REST trades: no result object")
    last = result.get("last")
    if isinstance(last, int) and not isinstance(last, bool):
        last = str(last)
    if not isinstance(last, str) or not last.isascii() or not last.isdigit():
        raise MalformedResponse(f"{EXCHANGE} REST trades: bad last={show(last)}")
    pairs = [key for key in result if key != "last"]
    if len(pairs) != 1:
        raise MalformedResponse(f"{EXCHANGE} REST trades: expected one pair in result, got {show(pairs)}")
    rows = result[pairs[0]]
    if not isinstance(rows, list):
        raise MalformedResponse(f"{EXCHANGE} REST trades: rows of {pairs[0]} are not a list")
    trades = rest_rows(EXCHANGE, rows,
                       lambda row: _rest_trade(row, symbol, native_symbol, received_us, conn_id, frame_seq))
    return KrakenTradesPage(trades, last)


def _rest_trade(row: Any, symbol: str, native: str, received_us: int, conn_id: str, frame_seq: int) -> Trade:
    if not isinstance(row, list) or len(row) < 7:
        raise BadField(f"expected [price, volume, time, side, ordertype, misc, trade_id], got {show(row)}")
    price, qty, when, side, trade_id = row[0], row[1], row[2], row[3], row[6]
    if not isinstance(price, str) or match_decimal(price) is None:
        raise BadField(f"bad price={show(price)}")
    if not isinstance(qty, str) or match_decimal(qty) is None:
        raise BadField(f"bad volume={show(qty)}")
    if isinstance(when, bool) or not isinstance(when, int | Decimal) or not 1 <= when < 10**11:
        raise BadField(f"bad time={show(when)}")
    taker = _V1_SIDES.get(side) if isinstance(side, str) else None
    if taker is None:
        raise BadField(f"bad side={show(side)}")
    if type(trade_id) is not int or not 0 <= trade_id <= MAX_TRADE_ID:
        raise BadField(f"bad trade_id={show(trade_id)}")
    ts_us = epoch_seconds_text_to_us(format(when, "f") if isinstance(when, Decimal) else str(when))
    return Trade(EXCHANGE, symbol, native, trade_id, price, qty, taker, ts_us, received_us, conn_id, frame_seq)
