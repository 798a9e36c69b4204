"""Bitstamp: ``GET /api/v2/transactions/{market_symbol}/?time=minute|hour|day``, every trade of a recent window.

www.bitstamp.net/api/ ("Transactions"): "time: The time interval from which we want the transactions to be
returned. Possible values are minute, hour (default) or day." The answer is every trade of the market in
the last minute, hour or day, newest first, in one JSON list: no limit, no cursor, no start time, no
paging. Rows ``{date, tid, amount, price, type}`` (strings); ``date`` is in whole seconds, so **a trade
backfilled from here has a time precise to the second** (``ts_us`` a multiple of 1,000,000), where the same
trade from the stream has its ``microtimestamp``. ``tid`` is the stream's ``id``: the backfill drops what
the stream already delivered by id.

So the fetcher is a ``WindowTradeFetcher`` with ``reach_s`` one day: ``since(start_us)`` asks for the
smallest window that covers ``start_us`` up to now, with a margin of ``MARGIN_S`` for the clocks of
ticklake and Bitstamp disagreeing and for the request's own time in flight (``minute`` while the start is
at most 50 s back, ``hour`` up to 3590 s, ``day`` beyond: a start older than a day gets the day, and the
backfill counts the break as not reconciled). One request, one page, sorted oldest first (by time, then
id). The page holds trades older than ``start_us`` too: the backfill drops them.

``page_size`` is kept because every fetcher has one, but Bitstamp has no limit parameter: a page is the
whole window, however many trades (a busy day of BTC/USD is tens of thousands of rows, a few MB).

Rate limit (www.bitstamp.net/api/, "Request limits"): 400 requests a second, with a default threshold of
10,000 requests per 10 minutes (older pages: 8,000 per 10 minutes), past which requests are refused
(error code 400.002, "Request rejected due to exceeded rate limit"; the HTTP status is not documented:
429 is assumed and waited out; an IP that persists is banned). The 10-minute threshold is the binding
one, 16.7 a second on average: half of it here, 8 a second with bursts of 20.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Final

from ticklake.exchanges.mappers.common import MalformedResponse
from ticklake.exchanges.rest.base import FrameStamp, Span, TradePage
from ticklake.exchanges.rest.client import RateLimit, RestClient, RestError, RestPolicy
from ticklake.venues.bitstamp.mapper import parse_rest_trades

PATH: Final = "/api/v2/transactions/{market}/"
# The windows Bitstamp serves, smallest first: (the ``time`` value, its length in seconds).
WINDOWS: Final[tuple[tuple[str, int], ...]] = (("minute", 60), ("hour", 3600), ("day", 86_400))
REACH_S: Final = 86_400.0
MARGIN_S: Final = 10.0
DEFAULT_PAGE: Final = 1000  # nominal: the venue has no limit parameter (see the module docstring)


def _now_us() -> int:
    return time.time_ns() // 1000


def window_for(start_us: int, now_us: int) -> str:
    """The smallest window (``time`` value) reaching back from ``now_us`` to ``start_us``, with the margin."""
    needed_s = (now_us - start_us) / 1_000_000 + MARGIN_S
    for name, length_s in WINDOWS:
        if needed_s <= length_s:
            return name
    return WINDOWS[-1][0]  # older than a day: the most there is (the backfill counts the break as short)


class BitstampTrades:
    exchange = "bitstamp"
    reach_s: float | None = REACH_S

    def __init__(self, page_size: int = DEFAULT_PAGE, *, clock_us: Callable[[], int] = _now_us) -> None:
        self.page_size = max(1, page_size)
        self._clock_us = clock_us

    async def window(self, client: RestClient, native_symbol: str, name: str, stamp: FrameStamp) -> TradePage:
        """Every trade of ``native_symbol`` in the last ``name`` (minute, hour, day), oldest first."""
        answer = await client.get(self.exchange, PATH.format(market=native_symbol), {"time": name})
        frame_seq = stamp.next_frame()
        try:
            trades = parse_rest_trades(answer.body, native_symbol, answer.received_us, conn_id=stamp.conn_id,
                                       frame_seq=frame_seq)
        except MalformedResponse as exc:
            raise RestError(str(exc), retryable=True, status=answer.status) from None
        return TradePage(answer.text, answer.received_us, frame_seq,
                         tuple(sorted(trades, key=lambda t: (t.ts_us, t.trade_id))))

    async def since(self, client: RestClient, native_symbol: str, start_us: int,
                    stamp: FrameStamp) -> AsyncIterator[TradePage]:
        """Every trade from ``start_us`` to now, as far back as a day (``WindowTradeFetcher``): one page."""
        yield await self.window(client, native_symbol, window_for(start_us, self._clock_us()), stamp)

    async def pages(self, client: RestClient, span: Span, stamp: FrameStamp) -> AsyncIterator[TradePage]:
        """A span of ids cannot be asked for (``TradeFetcher``): Bitstamp's ids do not count a market's trades,
        so the feed never asks by span (``Venue.ids_count_trades``). For whoever holds a span anyway: the
        window from the span's start (its look-back when later), with the trades of the span's ids only."""
        start_us = max(span.start_us, span.cutoff_us)
        async for page in self.since(client, span.native_symbol, start_us, stamp):
            yield page._replace(trades=tuple(t for t in page.trades if span.first <= t.trade_id <= span.last))


# A throttle should come as HTTP 429 (waited out by the client); should one come in a 2xx body, it is
# waited out the same way.
def _throttled(body: bytes) -> bool:
    return b'"400.002"' in body


POLICY: Final = RestPolicy("https://www.bitstamp.net", RateLimit(burst=20, per_second=8), throttled=_throttled)


FETCHER = BitstampTrades
