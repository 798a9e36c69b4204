"""Bitfinex v2: WebSocket frames and REST ``trades/{symbol}/hist`` pages in, normalized trades out.

Frames (docs.bitfinex.com: "WebSocket General", "Trades" public channel, "Configuration"):

* events are JSON objects: ``{"event":"info","version":2,"serverId":..,"platform":{"status":1}}`` first on
  every connection; ``{"event":"conf","status":"OK","flags":65536}``; ``{"event":"subscribed",
  "channel":"trades","chanId":N,"symbol":"tBTCUSD","pair":"BTCUSD"}``; ``{"event":"unsubscribed",
  "status":"OK","chanId":N}``; ``{"event":"error","code":10300,"msg":..}`` (10300 subscription failed,
  10301 already subscribed, 10302 unknown channel, 10305 too many channels, 10000 unknown event, 10001
  unknown pair); ``{"event":"pong","cid":N,"ts":ms}``; ``{"event":"info","code":C,"msg":..}``.
* channel messages are JSON arrays ``[CHANNEL_ID, ...]``. With the ``conf`` flag ``SEQ_ALL`` (65536,
  which the feed sets) each ends with the connection's sequence number, 1, 2, 3 ... over all its
  channels, heartbeats included (the cryptofeed recording shows exactly that):
  ``[chanId,[[ID,MTS,AMOUNT,PRICE],...],seq]`` the trades snapshot sent after subscribing (newest
  first), ``[chanId,"te",[ID,MTS,AMOUNT,PRICE],seq]`` a trade as it executes, ``[chanId,"tu",[...],seq]``
  the same trade again once written to the database, ``[chanId,"hb",seq]`` a heartbeat every 15 s.
  The same shapes without the trailing number (a connection without ``SEQ_ALL``) are read too, with
  ``sequence`` None. Any other length or type is an error: the docs warn that fields may be appended
  to messages, and a frame read wrong is worse than a frame refused (an error is a break the feed
  reconciles over REST).

``ID`` is the trade id, shared by all pairs; ``MTS`` epoch ms; ``AMOUNT`` the size, positive when the
taker bought, negative when they sold; ``PRICE``. Both are JSON numbers, read exactly (never through a
float): a plain number keeps its text, exponent notation (``1e-8``) goes through ``Decimal``; a string
is refused. An ``AMOUNT`` of zero has no taker side and fails the frame.

``te`` or ``tu``: both carry the same trade, with the same ID, price, amount and time (since API v2 the
``te`` message already has the database ID; the v1 docs' "SEQ string" is gone). Only ``te`` is stored:
it comes first (``tu`` follows 1-2 s later), and storing both would only make duplicates for the
warehouse to drop. ``tu`` is recognized and stored nowhere ("other"), but its sequence number counts.

Channel ids. A channel message names its channel only by number; which market it is, the
``subscribed`` event of the same connection said. The parser keeps that mapping per connection,
keyed by ``conn_id``: the only state in this module besides the symbol memo. It is rebuilt from the
frames themselves (the ``info`` event that opens each connection clears it; ``subscribed`` and
``unsubscribed`` maintain it), so parsing a connection's frames again in order (replay, the golden
tests, the benchmark) gives the same result. Parsed alone, out of its connection, a trade message
cannot be attributed: it is an error, not a guess. Bounded: ``MAX_CONNECTIONS`` connections (the
oldest forgotten first), ``MAX_CHANNELS`` channels each (Bitfinex allows 25).

Kinds: ``te`` and a snapshot -> "trades" (snapshot rows handed over oldest first); ``hb`` and ``pong``
-> "heartbeat"; ``subscribed`` -> "subscribed"; info 20051 ("Stop/Restart Websocket Server: please
reconnect") and 20061 ("Maintenance ended": the docs advise subscribing again) -> "shutdown", so the
connection is replaced with overlap; ``error`` events -> "error" with the venue's code and message;
everything else (info 20060 maintenance start, ``conf``, ``tu``, other channels) -> "other". Every
channel message reports its number as ``ParsedFrame.sequence``, so the feed sees a jump (a lost
frame) as a break.

A trade of a channel whose symbol is not a spot pair in Bitfinex's form (``common.is_native_symbol``)
keeps ``symbol=""``, and so does one whose market the connection did not subscribe (``only_subscribed``):
both become dead letters. Funding trades (``fUSD``: five fields, ``fte``/``ftu``) are "other".

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from decimal import Decimal
from typing import Annotated, Any, Final

import msgspec

from ticklake.exchanges.mappers.common import (
    MAX_TRADE_ID,
    BadField,
    MalformedResponse,
    SymbolMemo,
    decimal_number_text,
    decoded,
    error_reason,
    match_decimal,
    match_decimal_pair,
    only_subscribed,
    refused_payload,
    rest_rows,
    show,
    venue_message,
)
from ticklake.model import ParsedFrame, Side, Trade

__all__ = ["EXCHANGE", "MAX_CHANNELS", "MAX_CONNECTIONS", "TRADES", "parse_frame", "parse_rest_trades"]

EXCHANGE: Final = "bitfinex"
TRADES: Final = "trades"
EXECUTED: Final = "te"
UPDATED: Final = "tu"
HEARTBEAT: Final = "hb"
SERVER_RESTART: Final = 20051  # "Stop/Restart Websocket Server (please reconnect)"
MAINTENANCE_START: Final = 20060  # "Entering in Maintenance mode": pause, resume after 20061
MAINTENANCE_END: Final = 20061  # "Maintenance ended": the docs advise subscribing again
RECONNECT_CODES: Final = frozenset({SERVER_RESTART, MAINTENANCE_END})
MAX_CONNECTIONS: Final = 4096  # connections whose channel ids are remembered (a feed has a handful)
MAX_CHANNELS: Final = 256  # channels remembered per connection (Bitfinex allows 25)

_MAX_MS: Final = 10**14  # epoch ms below 1e14: before the year 5138; the warehouse checks the range
_NUMBER_STARTS: Final = frozenset("-0123456789")

UInt = Annotated[int, msgspec.Meta(ge=0)]
_Row = tuple[UInt, UInt, msgspec.Raw, msgspec.Raw]  # ID, MTS, AMOUNT, PRICE

_decode_message: Final = msgspec.json.Decoder(tuple[UInt, msgspec.Raw, UInt]).decode  # [chan, body, seq]
_decode_update: Final = msgspec.json.Decoder(tuple[UInt, str, _Row, UInt]).decode  # [chan, "te", row, seq]
_decode_items: Final = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_rows: Final = msgspec.json.Decoder(list[_Row]).decode
_decode_row: Final = msgspec.json.Decoder(_Row).decode
_decode_uint: Final = msgspec.json.Decoder(UInt).decode
_decode_str: Final = msgspec.json.Decoder(str).decode
_decode_decimal: Final = msgspec.json.Decoder(Decimal).decode
_decode_any: Final = msgspec.json.Decoder().decode

_symbols: Final = SymbolMemo(EXCHANGE)
_OTHER: Final = ParsedFrame("other")
_HEARTBEAT: Final = ParsedFrame("heartbeat")
_SUBSCRIBED: Final = ParsedFrame("subscribed")
_SHUTDOWN: Final = ParsedFrame("shutdown")
_HB_BODY: Final = b'"hb"'


class _Channel(msgspec.Struct, frozen=True, gc=False):
    """What a ``subscribed`` event said of a channel id."""

    name: str  # "trades", "book", "ticker" ...
    symbol: str  # "tBTCUSD", "fUSD"; "" for a channel without one
    spot_trades: bool  # the trades channel of a trading pair: the one channel stored


# conn_id -> channel id -> channel: the per-connection state the module docstring explains.
_CHANNELS: Final[dict[str, dict[int, _Channel]]] = {}


def _channels_of(conn_id: str) -> dict[int, _Channel]:
    table = _CHANNELS.get(conn_id)
    if table is None:
        if len(_CHANNELS) >= MAX_CONNECTIONS:
            del _CHANNELS[next(iter(_CHANNELS))]  # the oldest connection: long gone
        table = _CHANNELS[conn_id] = {}
    return table


def forget(conn_id: str) -> None:
    """Drop what is known of a connection's channels (tests; a parser never needs it)."""
    _CHANNELS.pop(conn_id, None)


# --- trades ------------------------------------------------------------------------------------------


def _number_text(raw: msgspec.Raw, field: str) -> str:
    """Exact plain text of a JSON number: its own characters when plain, else via ``Decimal``.

    msgspec has checked that ``raw`` is one valid JSON value; one that starts with ``-`` or a digit is a
    number. A string (``"1.5"``) is refused before ``Decimal``, whose grammar is far wider than JSON's.
    """
    try:
        text = str(raw, "ascii")
        if match_decimal(text) is not None:
            return text
        if not text or text[0] not in _NUMBER_STARTS:
            raise ValueError(text)
        return decimal_number_text(_decode_decimal(raw))
    except (ValueError, TypeError, AttributeError):  # msgspec.DecodeError included
        raise BadField(f"bad {field}={show(bytes(raw).decode('utf-8', 'replace'))}") from None


def _trade(row: _Row, native: str, symbol: str, received_us: int, conn_id: str, frame_seq: int) -> Trade:
    """The normalized trade of one ``[ID, MTS, AMOUNT, PRICE]`` row; ``BadField`` names the bad field."""
    trade_id, mts, amount_raw, price_raw = row
    if trade_id > MAX_TRADE_ID:
        raise BadField(f"bad ID={show(trade_id)}")
    if not 0 < mts < _MAX_MS:
        raise BadField(f"bad MTS={show(mts)}")
    amount = str(amount_raw, "ascii")  # plain numbers, the usual case, in one regex call for both
    price = str(price_raw, "ascii")
    if match_decimal_pair(f"{amount} {price}") is None:
        amount = _number_text(amount_raw, "AMOUNT")
        price = _number_text(price_raw, "PRICE")
    side: Side
    if amount[0] == "-":
        side, qty = "sell", amount[1:]
    else:
        side, qty = "buy", amount
    if not qty.strip("0."):
        raise BadField(f"bad AMOUNT={show(amount)} (zero: no taker side)")
    return Trade(EXCHANGE, symbol, native, trade_id, price, qty, side, mts * 1000, received_us, conn_id, frame_seq)


def _trades(rows: list[_Row], channel: _Channel, seq: int | None, received_us: int, conn_id: str,
            frame_seq: int) -> ParsedFrame:
    native = channel.symbol
    symbol = _symbols[native]
    try:
        trades = tuple(_trade(row, native, symbol, received_us, conn_id, frame_seq) for row in rows)
    except ValueError as exc:
        return ParsedFrame("error", error=error_reason(EXCHANGE, TRADES, exc), sequence=seq)
    if not trades:
        return ParsedFrame("other", sequence=seq)  # an empty snapshot: a market with no trade yet
    return ParsedFrame("trades", trades, sequence=seq)


# --- channel messages ------------------------------------------------------------------------------


def _unknown_channel(chan_id: int, seq: int | None) -> ParsedFrame:
    return ParsedFrame("error", error=f"{EXCHANGE}: a message on channel {chan_id}, which this connection did "
                                      "not subscribe (or was parsed without its subscribed event)", sequence=seq)


def _body(chan_id: int, body: msgspec.Raw, seq: int | None, received_us: int, conn_id: str,
          frame_seq: int) -> ParsedFrame:
    """``[chanId, body(, seq)]``: a heartbeat, a snapshot, or another channel's data."""
    if len(body) == 4 and bytes(body) == _HB_BODY:
        return _HEARTBEAT if seq is None else ParsedFrame("heartbeat", sequence=seq)
    channel = _channels_of(conn_id).get(chan_id)
    if channel is None:
        return _unknown_channel(chan_id, seq)
    if not channel.spot_trades:
        return _OTHER if seq is None else ParsedFrame("other", sequence=seq)  # books, tickers, funding
    try:
        rows = _decode_rows(body)
    except (ValueError, TypeError) as exc:  # a heartbeat-like string, or rows not [ID, MTS, AMOUNT, PRICE]
        return ParsedFrame("error", error=error_reason(EXCHANGE, "trades snapshot", exc), sequence=seq)
    rows.reverse()  # sent newest first; handed over oldest first, as the stream goes
    return _trades(rows, channel, seq, received_us, conn_id, frame_seq)


def _update(chan_id: int, tag: str, row: _Row | msgspec.Raw, seq: int | None, received_us: int, conn_id: str,
            frame_seq: int) -> ParsedFrame:
    """``[chanId, tag, row(, seq)]``: ``te``, ``tu`` (or another channel's tagged update)."""
    channel = _channels_of(conn_id).get(chan_id)
    if channel is None:
        return _unknown_channel(chan_id, seq)
    if not channel.spot_trades:
        return _OTHER if seq is None else ParsedFrame("other", sequence=seq)  # fte/ftu, book checksums
    if tag == UPDATED:
        return _OTHER if seq is None else ParsedFrame("other", sequence=seq)  # the te trade again (docstring)
    if tag != EXECUTED:
        return ParsedFrame("error", error=f"{EXCHANGE} {TRADES}: unknown update type {show(tag)}", sequence=seq)
    if isinstance(row, msgspec.Raw):  # the checked path: the row is still raw
        try:
            rows = [_decode_row(row)]
        except (ValueError, TypeError) as exc:
            return ParsedFrame("error", error=error_reason(EXCHANGE, EXECUTED, exc), sequence=seq)
    else:
        rows = [row]
    return _trades(rows, channel, seq, received_us, conn_id, frame_seq)


def parse_frame(payload: bytes | str, received_us: int, conn_id: str = "", frame_seq: int = 0, *,
                subscribed: AbstractSet[str] | None = None) -> ParsedFrame:
    """One Bitfinex WebSocket frame -> ``ParsedFrame``; never raises (see the module docstring)."""
    try:
        if isinstance(payload, bytes):
            comma = payload.find(b",", 1, 24)
            update = payload[0] == 91 and payload[comma + 1] == 34 and payload[comma + 2] == 116  # [N,"t
        else:
            comma = payload.find(",", 1, 24)
            update = payload[0] == "[" and payload[comma + 1:comma + 3] == '"t'
        if update:  # [chanId,"te"|"tu",row,seq]: most frames of a trades connection
            chan_id, tag, row, seq = _decode_update(payload)
            return only_subscribed(_update(chan_id, tag, row, seq, received_us, conn_id, frame_seq), subscribed)
        if comma > 0:  # [chanId,body,seq]: a snapshot, a heartbeat, another channel's data
            chan_id, body, seq = _decode_message(payload)
            return only_subscribed(_body(chan_id, body, seq, received_us, conn_id, frame_seq), subscribed)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, RecursionError):  # msgspec: ValueErrors
        pass
    return only_subscribed(_parse_slow(payload, received_us, conn_id, frame_seq), subscribed)


def _parse_slow(payload: bytes | str, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    """Everything the typed fast path did not take: events, frames without ``SEQ_ALL``, bad frames."""
    refused = refused_payload(EXCHANGE, payload)
    if refused is not None:
        return refused
    message: Any = decoded(EXCHANGE, payload, _decode_any)
    if isinstance(message, ParsedFrame):
        return message
    if isinstance(message, dict):
        return _event(message, conn_id)
    if isinstance(message, list):
        return _channel_checked(payload, received_us, conn_id, frame_seq)
    return ParsedFrame("error", error=f"{EXCHANGE}: expected a JSON object or array, got {type(message).__name__}")


def _uint(raw: msgspec.Raw, field: str) -> int:
    try:
        value: int = _decode_uint(raw)
    except (ValueError, TypeError):
        raise BadField(f"bad {field}={show(bytes(raw).decode('utf-8', 'replace'))}") from None
    return value


def _channel_checked(payload: bytes | str, received_us: int, conn_id: str, frame_seq: int) -> ParsedFrame:
    """A channel message field by field: the shapes of the module docstring, with or without ``SEQ_ALL``."""
    try:
        items = _decode_items(payload)
        count = len(items)
        if not 2 <= count <= 4:
            raise BadField(f"a channel message of {count} elements")
        chan_id = _uint(items[0], "CHANNEL_ID")
        second = items[1]
        if bytes(memoryview(second)[:1]) != b'"':  # [chanId, body(, seq)]
            if count == 4:
                raise BadField("a channel message of 4 elements without an update type")
            seq = _uint(items[2], "SEQ") if count == 3 else None
            return _body(chan_id, second, seq, received_us, conn_id, frame_seq)
        tag = _decode_str(second)
        if tag == HEARTBEAT:  # [chanId, "hb"(, seq)]
            if count == 4:
                raise BadField("a heartbeat of 4 elements")
            seq = _uint(items[2], "SEQ") if count == 3 else None
            return ParsedFrame("heartbeat", sequence=seq)
        if count == 2:
            raise BadField(f"update {show(tag)} without its data")
        seq = _uint(items[3], "SEQ") if count == 4 else None
        return _update(chan_id, tag, items[2], seq, received_us, conn_id, frame_seq)
    except ValueError as exc:
        return ParsedFrame("error", error=error_reason(EXCHANGE, "channel message", exc))


# --- events ----------------------------------------------------------------------------------------


def _event(message: dict[str, Any], conn_id: str) -> ParsedFrame:
    event = message.get("event")
    if not isinstance(event, str):
        return ParsedFrame("error", error=f"{EXCHANGE}: a JSON object without an event name")
    code = message.get("code")
    if event == "subscribed":
        return _subscribed(message, conn_id)
    if event == "error":
        where = " ".join(show(message[key]) for key in ("channel", "symbol") if key in message)
        return ParsedFrame("error", error=f"{EXCHANGE} error {show(code)}: {venue_message(message.get('msg'))}"
                                          + (f" ({where})" if where else ""))
    if event == "info":
        if "version" in message:  # the first frame of a connection: its channel ids start afresh
            _CHANNELS.pop(conn_id, None)
            if message["version"] != 2:
                return ParsedFrame("error", error=f"{EXCHANGE}: API version {show(message['version'])}, not 2")
        if type(code) is int and code in RECONNECT_CODES:
            return _SHUTDOWN
        return _OTHER  # the version, 20060 (maintenance starts: the server says when it ends), others
    if event == "conf":
        if message.get("status") != "OK":
            return ParsedFrame("error", error=f"{EXCHANGE} conf refused: {show(message.get('status'))} "
                                              f"{venue_message(message.get('msg', ''))}")
        return _OTHER
    if event == "unsubscribed":
        chan_id = message.get("chanId")
        if isinstance(chan_id, int):
            _channels_of(conn_id).pop(chan_id, None)
        return _OTHER
    if event == "pong":
        return _HEARTBEAT
    return _OTHER  # anything new


def _subscribed(message: dict[str, Any], conn_id: str) -> ParsedFrame:
    name, chan_id, symbol = message.get("channel"), message.get("chanId"), message.get("symbol", "")
    if not isinstance(name, str) or not isinstance(symbol, str) or isinstance(chan_id, bool) \
            or not isinstance(chan_id, int) or chan_id < 0:
        return ParsedFrame("error", error=f"{EXCHANGE} subscribed: bad channel={show(name)}, chanId={show(chan_id)} "
                                          f"or symbol={show(symbol)}")
    table = _channels_of(conn_id)
    if len(table) >= MAX_CHANNELS and chan_id not in table:
        return ParsedFrame("error", error=f"{EXCHANGE} subscribed: more than {MAX_CHANNELS} channels on one "
                                          "connection")
    table[chan_id] = _Channel(name, symbol, name == TRADES and symbol.startswith("t"))
    return _SUBSCRIBED


# --- REST ------------------------------------------------------------------------------------------


def parse_rest_trades(body: bytes | str, native_symbol: str, received_us: int, *, conn_id: str = "",
                      frame_seq: int = 0) -> tuple[Trade, ...]:
    """Trades of one ``GET /v2/trades/{symbol}/hist`` page, in page order (``sort=1``: oldest first).

    The body is ``[[ID, MTS, AMOUNT, PRICE], ...]``; ``ID`` is the id the ``trades`` channel carries, so
    pages and live frames dedup against each other. ``native_symbol`` is the request's symbol (the rows
    do not name it). Errors come as ``["error", CODE, "message"]``, the rate limit also as
    ``{"error": "ERR_RATE_LIMIT"}``. Raises ``MalformedResponse`` (only) on those or on a bad row.
    """
    try:
        rows = _decode_rows(body)
    except (ValueError, TypeError, RecursionError) as exc:
        raise MalformedResponse(_rest_error(body, exc)) from None
    symbol = _symbols[native_symbol] if isinstance(native_symbol, str) else ""
    return rest_rows(EXCHANGE, rows, lambda row: _trade(row, native_symbol, symbol, received_us, conn_id, frame_seq))


def _rest_error(body: bytes | str, exc: Exception) -> str:
    """Why a REST body is unusable: the venue's own error when it sent one."""
    try:
        message = _decode_any(body)
    except (ValueError, TypeError, RecursionError):
        return f"{EXCHANGE} REST trades: invalid JSON ({exc})"
    if isinstance(message, list) and len(message) >= 2 and message[0] == "error":
        text = message[2] if len(message) > 2 else ""
        return f"{EXCHANGE} REST error {show(message[1])}: {venue_message(text)}"
    if isinstance(message, dict) and "error" in message:
        return f"{EXCHANGE} REST error {venue_message(message['error'])}"
    return f"{EXCHANGE} REST trades: {exc}"
