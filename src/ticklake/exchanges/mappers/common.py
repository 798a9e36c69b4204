"""Helpers shared by the venue mappers: exact timestamps, exact decimal text, symbol lookup and form.

Everything here is pure and exact: no floats touch a timestamp or a price. The functions raise
``ValueError`` (never anything else) on malformed input; the mappers catch it and turn it into a
``ParsedFrame(kind="error")``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import msgspec

from ticklake.model import ParsedFrame, Trade
from ticklake.venues import VENUES, from_native

__all__ = [
    "AGG_TRADE_SUFFIX",
    "EPOCH",
    "FROMISOFORMAT",
    "MAX_TRADE_ID",
    "SECONDS",
    "UTC_TIME_RE",
    "BadField",
    "MalformedResponse",
    "SecondsMemo",
    "SymbolMemo",
    "decimal_number_text",
    "decoded",
    "epoch_seconds_text_to_us",
    "error_reason",
    "is_decimal_text",
    "is_native_symbol",
    "match_decimal",
    "match_decimal_pair",
    "match_decimals",
    "match_price_qty_time",
    "match_price_qty_times",
    "match_rfc3339",
    "match_utc_time",
    "match_utc_times",
    "only_subscribed",
    "price_qty_times_valid",
    "refused_payload",
    "rfc3339_to_us",
    "show",
    "string_trade_id",
    "texts_valid",
    "utc_time_to_us",
    "venue_message",
]

MAX_TRADE_ID: Final = 2**63 - 1  # trade ids land in an Int64 column
MAX_ERROR_VALUE_CHARS: Final = 40  # an offending value, quoted in an error
MAX_VENUE_MESSAGE_CHARS: Final = 200  # a venue's own error message, passed on
_MAX_DECIMAL_MAGNITUDE: Final = 30  # decimal_number_text: 1e-30 .. 1e30
_MAX_DECIMAL_PLACES: Final = 40


class BadField(ValueError):
    """A frame that parsed as JSON but carries a bad value; the message names the field."""


class MalformedResponse(ValueError):
    """A REST body the backfill cannot use; the message says why (the venue's error, or the field).

    The REST parsers return plain tuples of trades, so this is how they report bad input: they raise
    this and nothing else, whatever the body holds.
    """


_MAX_ID_DIGITS: Final = len(str(MAX_TRADE_ID))


def refused_payload(exchange: str, payload: object) -> ParsedFrame | None:
    """The error for a payload that is not text or is empty; None when it may be decoded."""
    if not isinstance(payload, bytes | str | bytearray | memoryview):
        return ParsedFrame("error", error=f"{exchange}: payload is {type(payload).__name__}, not bytes or str")
    if not payload:
        return ParsedFrame("error", error=f"{exchange}: empty frame")
    return None


def decoded(exchange: str, payload: bytes | str | bytearray | memoryview, decode: Callable[[Any], Any]) -> Any:
    """``payload`` decoded by ``decode`` (a venue's generic JSON decoder), or, when it is not JSON, the
    error ``ParsedFrame`` saying so (never a JSON value: callers tell them apart by type)."""
    try:
        return decode(payload)
    except ValueError as exc:  # msgspec.DecodeError, or a str with lone surrogates
        return ParsedFrame("error", error=f"{exchange}: invalid JSON ({exc})")
    except RecursionError:
        return ParsedFrame("error", error=f"{exchange}: invalid JSON (nested too deeply)")


def rest_rows(exchange: str, rows: list[Any], trade_of: Callable[[Any], Trade]) -> tuple[Trade, ...]:
    """A REST page's rows made trades by ``trade_of``, in page order; the first row it refuses
    (``ValueError``) makes the whole page a ``MalformedResponse`` naming the row and why."""
    trades: list[Trade] = []
    for index, row in enumerate(rows):
        try:
            trades.append(trade_of(row))
        except ValueError as exc:
            raise MalformedResponse(f"{exchange} REST trades row {index}: {exc}") from None
    return tuple(trades)


def string_trade_id(text: str, field: str) -> int:
    """A trade id sent as a JSON string of digits (Coinbase ``trade_id``, OKX ``tradeId``); ``BadField``
    naming ``field`` unless it is ASCII digits within ``MAX_TRADE_ID``."""
    # isascii() first: str.isdigit() alone accepts other scripts' digits, which int() would read.
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_ID_DIGITS or int(text) > MAX_TRADE_ID:
        raise BadField(f"bad {field}={show(text)}")
    return int(text)


def error_reason(venue: str, what: str, exc: Exception) -> str:
    """The short ``ParsedFrame.error`` text: venue, message kind, and why (naming the field)."""
    return f"{venue} {what}: {exc}"


def show(value: object, limit: int = MAX_ERROR_VALUE_CHARS) -> str:
    """A short repr of a value for an error message (frames can be megabytes)."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def venue_message(value: object) -> str:
    """A venue's own error message for ``ParsedFrame.error``: its text, bounded."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > MAX_VENUE_MESSAGE_CHARS:
        text = text[: MAX_VENUE_MESSAGE_CHARS - 3] + "..."
    return text


# A decimal in plain notation: an optional minus, digits, optionally one point followed by digits. No
# plus sign, no exponent, no NaN/Infinity, no spaces, ASCII only ([0-9], not \d, which would accept
# other scripts' digits). Zero and negative values pass: they are well-formed, and deciding that a
# zero or negative price is not a trade is the warehouse's validation (it dead-letters the trade with
# its rule and raw frame, and keeps the frame's other trades), not the parser's.
# Possessive quantifiers (Python >= 3.11) never backtrack, so a check is one linear scan.
_DECIMAL_RE: Final = r"-?+[0-9]++(?:\.[0-9]++)?+"
_DECIMAL: Final = re.compile(_DECIMAL_RE)
# Two or more values joined by single spaces. A call to re costs far more than scanning a few more
# characters, so the hot paths check all of a frame's prices and quantities in one call. A space
# cannot occur inside a valid value; the callers also count the spaces, so that a value with a
# space inside cannot pass as two valid ones.
_DECIMAL_PAIR: Final = re.compile(f"{_DECIMAL_RE} {_DECIMAL_RE}")
_DECIMALS: Final = re.compile(f"{_DECIMAL_RE}(?: {_DECIMAL_RE})*+")
_PLAIN_DECIMAL: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # epoch seconds: never signed
match_decimal: Final = _DECIMAL.fullmatch
"""``re.fullmatch`` of a plain decimal; the hot loops call it directly (no wrapper call)."""
match_decimal_pair: Final = _DECIMAL_PAIR.fullmatch
"""``re.fullmatch`` of ``f"{price} {qty}"``: both plain decimals, in one call."""
match_decimals: Final = _DECIMALS.fullmatch
"""``re.fullmatch`` of ``" ".join(values)``: every value a plain decimal, in one call."""
_plain_fullmatch = _PLAIN_DECIMAL.fullmatch


def is_decimal_text(text: str) -> bool:
    """True when ``text`` is a plain decimal such as ``"64123.10"`` or ``"0.00000638"``."""
    return match_decimal(text) is not None


def texts_valid(texts: list[str]) -> bool:
    """True when every text is a plain decimal: one regex call for a whole frame's values.

    The hot loops append each trade's price and qty to ``texts`` as they go (cheaper in CPython 3.11
    than collecting them afterwards with comprehensions) and call this once per frame.
    """
    if len(texts) == 2:
        return match_decimal_pair(f"{texts[0]} {texts[1]}") is not None
    if not texts:
        return True
    joined = " ".join(texts)
    # A value with a space inside ("1 1") would shift the tokens; as many spaces as joins rules it out.
    return joined.count(" ") == len(texts) - 1 and match_decimals(joined) is not None


def decimal_number_text(value: Decimal) -> str:
    """The exact plain text of a decimal decoded from a JSON number (Kraken v2 price/qty).

    ``format(d, "f")`` never produces exponent notation, so ``1E-8`` becomes ``"0.00000001"`` and
    ``6423.46326000`` keeps its trailing zeros. Raises ``ValueError`` for NaN and infinities, and for
    magnitudes no market has (beyond 1e±30, or more than 40 decimals): written out in plain notation,
    ``1E-999999999`` alone would be a gigabyte of text. Zero and negative values pass, as in
    ``is_decimal_text``: the warehouse dead-letters them with their rule.
    """
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {show(value)}")
    if not value:
        return format(value, "f")  # 0, 0.000, 0E+5 ("0"): adjusted() is meaningless for zero
    exponent = value.as_tuple().exponent
    if not -_MAX_DECIMAL_MAGNITUDE <= value.adjusted() <= _MAX_DECIMAL_MAGNITUDE or (
            isinstance(exponent, int) and exponent < -_MAX_DECIMAL_PLACES):
        raise ValueError(f"decimal out of range: {show(value)}")
    return format(value, "f")


# --- timestamps ----------------------------------------------------------------------------------

_US_PER_SECOND: Final = 1_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_fromisoformat: Final = datetime.fromisoformat
EPOCH: Final = _EPOCH
FROMISOFORMAT: Final = _fromisoformat

# The RFC 3339 shape (section 5.6), checked before fromisoformat reads the fields: CPython's
# fromisoformat is lenient in ways RFC 3339 is not (3.11 accepts "2026-11-26T02:00:00xZ" and
# "...00.Z"). Ranges (month 13, Feb 30, hour 24) are left to fromisoformat, which rejects them.
_RFC3339_RE: Final = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
                      r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})")
match_rfc3339: Final = re.compile(_RFC3339_RE).fullmatch


_PRICE_QTY_TIME_RE: Final = f"{_DECIMAL_RE} {_DECIMAL_RE} {_RFC3339_RE}"
match_price_qty_time: Final = re.compile(_PRICE_QTY_TIME_RE).fullmatch
match_price_qty_times: Final = re.compile(f"{_PRICE_QTY_TIME_RE}(?: {_PRICE_QTY_TIME_RE})*+").fullmatch


def price_qty_times_valid(texts: list[str]) -> bool:
    """True when ``texts`` is ``[price, qty, time, price, qty, time, ...]`` with every price and qty a
    plain decimal and every time an RFC 3339 timestamp: one regex call for a whole frame.

    The hot loops append each trade's three texts as they go, parse the time with ``FROMISOFORMAT``
    (which checks the ranges), and call this once per frame; together that is ``rfc3339_to_us`` and
    ``is_decimal_text`` for every trade, at a fraction of the cost of a call per value.
    """
    if len(texts) == 3:  # one trade, the common case: the pattern itself admits exactly three tokens
        return match_price_qty_time(f"{texts[0]} {texts[1]} {texts[2]}") is not None
    if not texts:
        return True
    joined = " ".join(texts)
    # A value with a space inside would shift the tokens; as many spaces as joins rules it out.
    return joined.count(" ") == len(texts) - 1 and match_price_qty_times(joined) is not None


# The hot loops' timestamp route (``utc_time_to_us`` spells it out; the loops inline it). The first 19
# characters, "2026-11-26T02:00:00" (the second), are looked up in SECONDS, which only ever holds
# seconds that passed rfc3339_to_us's shape check and fromisoformat's range checks, so a hit proves them
# valid; fromisoformat(text).microsecond reads the fraction (truncated past six digits, as in
# rfc3339_to_us); and one regex call per frame checks the rest of every timestamp: an optional fraction
# of 1 to 9 digits, then "Z". Anything else (an offset, a lower-case "z") is not taken there: the frame
# goes to its checked path, which calls rfc3339_to_us. Cheaper than rfc3339_to_us because turning a
# datetime into µs (timedelta attributes, big-int arithmetic) costs more than parsing it.
_SECOND_RE: Final = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
_match_second: Final = re.compile(_SECOND_RE).fullmatch
UTC_TIME_RE: Final = r"[^ ]{19}(?:\.[0-9]{1,9})?+Z"
"""After its first 19 characters (which must have been looked up in ``SECONDS``): the rest of a UTC time."""
match_utc_time: Final = re.compile(UTC_TIME_RE).fullmatch
match_utc_times: Final = re.compile(f"{UTC_TIME_RE}(?: {UTC_TIME_RE})*+").fullmatch
"""``re.fullmatch`` of ``" ".join(times)``, every time as in ``UTC_TIME_RE``. Count the spaces too: a
time with a space inside would shift the tokens."""


class SecondsMemo(dict[str, int]):
    """The second of an RFC 3339 timestamp, ``"YYYY-MM-DDTHH:MM:SS"`` read as UTC, -> epoch µs, memoized.

    The trades of a frame, and of consecutive frames, share a handful of seconds. A missing key is
    checked as ``rfc3339_to_us`` checks that part of a timestamp (shape by regex, ranges by
    ``fromisoformat``), and ``ValueError`` is raised, and nothing stored, unless it is a valid date
    and time: every key in the memo is valid, so a hit needs no further check. Like ``SymbolMemo`` it
    never changes a result, only how fast it comes, and it is bounded (cleared when full).
    """

    __slots__ = ()
    MAX_ENTRIES: Final = 4096

    def __missing__(self, second: str) -> int:
        if type(second) is not str or _match_second(second) is None:
            raise ValueError(f"not an RFC 3339 date and time: {show(second)}")
        try:
            delta = _fromisoformat(second + "Z") - _EPOCH
        except ValueError:
            raise ValueError(f"not an RFC 3339 date and time: {show(second)}") from None
        us = (delta.days * 86_400 + delta.seconds) * _US_PER_SECOND
        if len(self) >= self.MAX_ENTRIES:
            self.clear()
        self[second] = us
        return us


SECONDS: Final = SecondsMemo()
"""The process-wide ``SecondsMemo`` the mappers share."""


def utc_time_to_us(text: str) -> int:
    """``rfc3339_to_us`` of a timestamp in UTC (``...Z``) by the hot loops' route: see ``SECONDS``.

    Equal to ``rfc3339_to_us(text)`` whenever it returns; raises ``ValueError`` for every text that
    ``rfc3339_to_us`` rejects, and also for valid timestamps the route does not take (an offset, a
    lower-case ``z``): where this raises, a hot loop hands its frame to the checked path. The loops
    inline these steps, and check the shape for the whole frame at once, after parsing.
    """
    if type(text) is not str or match_utc_time(text) is None:
        raise ValueError(f"not an RFC 3339 UTC timestamp: {show(text)}")
    return SECONDS[text[:19]] + _fromisoformat(text).microsecond


def rfc3339_to_us(text: str) -> int:
    """Microseconds since the epoch of an RFC 3339 timestamp, exactly, without floats.

    ``2026-11-26T02:00:00.123456789Z`` -> ``1795658400123456``: 0 to 9 fractional digits, ``Z`` or a
    ``±HH:MM`` offset. Digits beyond microseconds are truncated, never rounded, so a trade never moves
    into the next microsecond (msgspec's own datetime decoding rounds, which is why it is not used).

    The shape is checked with a regex, then the fields are read by CPython's C
    ``datetime.fromisoformat`` (Python >= 3.11: takes ``Z`` and any number of fractional digits,
    truncating past six) and turned into µs with exact integer arithmetic on the ``timedelta`` from
    the epoch: ~10x faster than parsing the fields in Python. Raises ``ValueError`` on anything else,
    including impossible dates and a missing UTC offset (such a time names no instant).
    """
    try:
        if match_rfc3339(text) is None:
            raise ValueError
        if text[-1] == "z":  # RFC 3339 allows a lower-case "z"; fromisoformat does not
            text = text[:-1] + "Z"
        # The mappers' hot loops inline the next two lines (with FROMISOFORMAT and EPOCH) to save a call.
        delta = _fromisoformat(text) - _EPOCH
    except (ValueError, TypeError):
        raise ValueError(f"not an RFC 3339 timestamp: {show(text)}") from None
    return (delta.days * 86_400 + delta.seconds) * _US_PER_SECOND + delta.microseconds


def epoch_seconds_text_to_us(text: str) -> int:
    """Microseconds of decimal epoch-seconds text (Kraken v1 ``"1618678142.557535"``), exactly.

    Digits beyond the sixth fractional one are truncated. Raises ``ValueError`` unless the text is
    plain decimal notation.
    """
    if _plain_fullmatch(text) is None:
        raise ValueError(f"not decimal epoch seconds: {show(text)}")
    whole, _, frac = text.partition(".")
    return int(whole) * _US_PER_SECOND + (int((frac + "000000")[:6]) if frac else 0)


# --- symbols -------------------------------------------------------------------------------------

# Binance aggregate trade ids are another id space of a market: its aggTrade trades carry this suffix
# on their native symbol (see the binance mapper), which is not part of the venue's symbol.
AGG_TRADE_SUFFIX: Final = "@aggTrade"


def is_native_symbol(exchange: str, native: str) -> bool:
    """True when ``native`` is spelled as ``exchange`` spells a market (Binance ``BTCUSDT``, Kraken
    ``BTC/USD``, Coinbase ``BTC-USD``): base and quote upper-case letters and digits (lower-case ones
    where the venue spells symbols so, ``Venue.lower_case``: Bitstamp ``btcusd``), joined by the venue's
    ``separator``. That is every spelling ``ticklake.venues.to_native`` can produce for a configured
    market, and nothing with a control character, a space, a letter in the other case (stored under
    another native symbol than the market's), or another separator (Binance ``BTC/USDT`` would be
    read as ``BTC//USDT``). A Binance aggTrade trade's ``AGG_TRADE_SUFFIX`` is allowed.
    """
    venue = VENUES.get(exchange)
    if venue is None or type(native) is not str:
        return False
    if venue.native_form is not None:  # a spelling the separator cannot describe: the venue says
        return venue.native_form(native)
    separator = venue.separator
    lower = venue.lower_case
    if separator:
        base, sep, quote = native.partition(separator)
        return bool(sep) and _is_asset(base, lower) and _is_asset(quote, lower)
    return _is_asset(native.removesuffix(AGG_TRADE_SUFFIX), lower)


def _is_asset(text: str, lower: bool) -> bool:
    # isalnum(): no control characters, spaces or punctuation (and False for ""); then one case only (the
    # venue's): a symbol in the other case would be stored under a second native symbol of the market.
    return text.isalnum() and text == (text.lower() if lower else text.upper())


def only_subscribed(parsed: ParsedFrame, subscribed: AbstractSet[str] | None) -> ParsedFrame:
    """``parsed`` with the canonical symbol blanked on every trade whose market is not in ``subscribed``.

    ``subscribed`` holds the native symbols the connection subscribed to (the feed passes them; None,
    e.g. when raw frames are parsed again, checks nothing). A trade of another market must not become
    a new market with candles: with ``symbol=""`` the warehouse dead-letters it as
    ``unsubscribed_market`` (``warehouse/validation.py``), and bronze still keeps it as the venue sent it.
    """
    trades = parsed.trades
    if subscribed is None or not trades:
        return parsed
    for trade in trades:
        if not _subscribed(trade.native_symbol, subscribed):
            break
    else:
        return parsed  # the usual case: every trade's market was subscribed
    kept = tuple(trade if _subscribed(trade.native_symbol, subscribed) else msgspec.structs.replace(trade, symbol="")
                 for trade in trades)
    return ParsedFrame(parsed.kind, kept, parsed.error, parsed.sequence)


def _subscribed(native: str, subscribed: AbstractSet[str]) -> bool:
    return native in subscribed or native.removesuffix(AGG_TRADE_SUFFIX) in subscribed


class SymbolMemo(dict[str, str]):
    """Native symbol -> canonical symbol for one venue: ``ticklake.venues.from_native``, memoized;
    ``""`` for a symbol not in the venue's form (``is_native_symbol``).

    ``from_native`` costs about as much as decoding a whole trade frame (it tries every Binance
    quote suffix), and a feed sees the same few symbols millions of times; a hit here is one dict
    lookup. This memo and ``SECONDS`` are the only state in the mappers: they never change a result,
    only how fast it comes, and they are bounded (cleared when full) so a flood of junk symbols cannot
    grow them forever.
    """

    __slots__ = ("exchange",)
    MAX_ENTRIES: Final = 65_536

    def __init__(self, exchange: str) -> None:
        super().__init__()
        self.exchange = exchange

    def __missing__(self, native: str) -> str:
        # A native symbol not in the venue's form maps to nothing ("" -> dead letter ``bad_symbol``).
        symbol = from_native(self.exchange, native) if is_native_symbol(self.exchange, native) else ""
        if len(self) >= self.MAX_ENTRIES:
            self.clear()
        self[native] = symbol
        return symbol
