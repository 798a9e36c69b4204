"""Query parameters: parsed and checked before any warehouse call.

Every mistake is an ``ApiError(400, message, parameter)``: the message says what is wrong and what is
accepted, so a client can fix the request without reading the docs.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from starlette.datastructures import QueryParams

from ticklake.api.cursor import BadCursor, CursorSeal
from ticklake.api.responses import ECHO_LIMIT, ApiError, shown
from ticklake.model import EXCHANGES
from ticklake.symbols import canonical, split_canonical
from ticklake.warehouse.reader import EPOCH, FAR_FUTURE, TIMEFRAMES

DEFAULT_TIMEFRAME = "1m"
DEFAULT_CANDLE_LIMIT = 500
DEFAULT_TRADE_LIMIT = 1000

# format: json (pages), or a file of the whole range: csv, parquet, arrow (api/export.py).
OHLCV_PARAMETERS = ("exchange", "symbol", "timeframe", "start", "end", "limit", "format")
TRADES_PARAMETERS = ("exchange", "symbol", "start", "end", "limit", "cursor", "format")

_DIGITS = re.compile(r"[0-9]{1,19}")
_EPOCH_MILLIS = re.compile(r"-?[0-9]{1,19}")
# A "+" sent unencoded in a query string arrives as a space: "...T10:00:00 02:00" meant "+02:00".
_SPACE_FOR_PLUS = re.compile(r"(.*:.*\d) (\d{2}(?::?\d{2})?)")
_YEAR_2000_MS = 946_684_800_000
TIME_FORMATS = ("RFC 3339 / ISO 8601 such as 2026-01-02T03:04:05Z or 2026-01-02T05:04:05+02:00 "
                "(no zone means UTC), or integer epoch milliseconds such as 1767323045000")


@dataclass(frozen=True, slots=True)
class OhlcvQuery:
    exchange: str
    symbol: str
    timeframe: str
    start: datetime | None
    end: datetime | None
    limit: int


@dataclass(frozen=True, slots=True)
class TradesQuery:
    exchange: str
    symbol: str
    start: datetime | None
    end: datetime | None
    limit: int
    after: tuple[int, int] | None  # (ts_us, trade_id) of the previous page's last row


def parse_ohlcv(query: QueryParams, max_limit: int) -> OhlcvQuery:
    reject_unknown(query, OHLCV_PARAMETERS)
    exchange, symbol = market(query)
    timeframe = _single(query, "timeframe") or DEFAULT_TIMEFRAME
    if timeframe not in TIMEFRAMES:
        raise ApiError(400, f"unknown timeframe {shown(timeframe)}; accepted: {', '.join(TIMEFRAMES)}",
                       "timeframe")
    start, end = time_range(query)
    return OhlcvQuery(exchange, symbol, timeframe, start, end, limit(query, DEFAULT_CANDLE_LIMIT, max_limit))


def parse_trades(query: QueryParams, max_limit: int, cursors: CursorSeal) -> TradesQuery:
    reject_unknown(query, TRADES_PARAMETERS)
    exchange, symbol = market(query)
    start, end = time_range(query)
    page_size = limit(query, DEFAULT_TRADE_LIMIT, max_limit)
    cursor = _single(query, "cursor")
    after = None
    if cursor is not None:
        try:
            after = cursors.decode(exchange, symbol, cursor)
        except BadCursor as exc:
            raise ApiError(400, f"{exc}; pass the next_cursor of the previous page unchanged, with the "
                                "same exchange and symbol", "cursor") from None
    return TradesQuery(exchange, symbol, start, end, page_size, after)


def reject_unknown(query: QueryParams, accepted: Collection[str]) -> None:
    unknown = sorted({name for name in query if name not in accepted})
    if unknown:
        named = ", ".join(map(shown, unknown[:5])) + (" …" if len(unknown) > 5 else "")
        raise ApiError(400, f"unknown query parameter{'s' if len(unknown) > 1 else ''} {named}; "
                            f"accepted: {', '.join(accepted) or 'none'}", unknown[0][:ECHO_LIMIT])


def _single(query: QueryParams, name: str) -> str | None:
    """The one value of ``name``, None when absent; an empty or repeated value is a mistake."""
    values = query.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, f"{name} given {len(values)} times; give it once", name)
    if not values[0].strip():
        raise ApiError(400, f"{name} is empty; leave it out or give a value", name)
    return values[0].strip()


def market(query: QueryParams) -> tuple[str, str]:
    """``(exchange, canonical symbol)``, both required."""
    exchange = _single(query, "exchange")
    if exchange is None:
        raise ApiError(400, f"exchange is required; one of: {', '.join(EXCHANGES)}", "exchange")
    exchange = exchange.lower()
    if exchange not in EXCHANGES:
        raise ApiError(400, f"unknown exchange {shown(exchange)}; one of: {', '.join(EXCHANGES)}", "exchange")
    return exchange, symbol(_single(query, "symbol"))


def symbol(value: str | None) -> str:
    expected = "a canonical BASE/QUOTE symbol such as BTC/USDT (in a URL: BTC%2FUSDT or BTC/USDT)"
    if value is None:
        raise ApiError(400, f"symbol is required: {expected}", "symbol")
    if "%" in value:  # encoded twice by some clients: BTC%252FUSDT arrives as BTC%2FUSDT
        value = unquote(value)
    try:
        return canonical(*split_canonical(value))
    except ValueError:
        raise ApiError(400, f"symbol {shown(value)} is not {expected}; see /v1/symbols", "symbol") from None


def time_range(query: QueryParams) -> tuple[datetime | None, datetime | None]:
    start = moment(query, "start")
    end = moment(query, "end")
    if start is not None and end is not None and start >= end:
        raise ApiError(400, f"start ({start.isoformat()}) must be before end ({end.isoformat()}); "
                            "end is exclusive", "start")
    return start, end


def moment(query: QueryParams, name: str) -> datetime | None:
    """A point in time in UTC from RFC 3339 / ISO 8601 text or epoch milliseconds."""
    text = _single(query, name)
    if text is None:
        return None
    if _EPOCH_MILLIS.fullmatch(text):
        if 0 <= int(text) < _YEAR_2000_MS:  # surely seconds (or a typo): as milliseconds it falls in 1970
            example = int(text) * 1000 if len(text) == 10 else 1767323045000
            raise ApiError(400, f"{name} {shown(text)} read as epoch milliseconds is before 2000: milliseconds "
                                f"are expected (seconds times 1000, such as {example}), or RFC 3339 text", name)
        value = _from_millis(int(text))
    else:
        spaced = _SPACE_FOR_PLUS.fullmatch(text)
        try:
            parsed = datetime.fromisoformat(f"{spaced[1]}+{spaced[2]}" if spaced else text)
        except ValueError:
            raise ApiError(400, f"{name} {shown(text)} is not a time; accepted: {TIME_FORMATS}", name) from None
        value = _as_utc(parsed)
    if value is None or not EPOCH <= value <= FAR_FUTURE:
        raise ApiError(400, f"{name} {shown(text)} is outside the stored range {EPOCH:%Y-%m-%d} to "
                            f"{FAR_FUTURE:%Y-%m-%d}", name)
    return value


def _as_utc(parsed: datetime) -> datetime | None:
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 shifted past the calendar's ends
        return None


def _from_millis(millis: int) -> datetime | None:
    if millis < 0:
        return None
    try:
        return EPOCH + timedelta(milliseconds=millis)  # exact, unlike fromtimestamp(millis / 1000)
    except OverflowError:
        return None


def limit(query: QueryParams, default: int, maximum: int) -> int:
    text = _single(query, "limit")
    if text is None:
        return min(default, maximum)
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= maximum:
        raise ApiError(400, f"limit {shown(text)} must be an integer from 1 to {maximum} (default {default})",
                       "limit")
    return int(text)
