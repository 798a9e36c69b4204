"""Gemini: ``GET /v1/trades/{symbol}?timestamp=|since_tid=&limit_trades=``, paged forward in time.

developer.gemini.com trading/rest-api/market-data/list-trades ("List Trades"): "This will return the
trades that have executed since the specified timestamp ... Each request will show at most 500
records"; ``timestamp`` "Only return trades after this timestamp" (ms or s, "Timestamps"), "If not
present, will show the most recent trades"; ``since_tid`` "Only returns trades that executed after
this tid", it "trumps timestamp", and "You may set since_tid to zero to get the earliest available
trade history data"; ``limit_trades`` default 50 (500 at most); ``include_breaks`` (default false)
adds broken trades. Rows come newest first: ``{timestamp, timestampms, tid, price, amount, exchange,
type}``.

Which trades come when more than 500 are after ``timestamp``: the page does not say in so many words.
"since_tid zero gives the earliest available", "a timestamp before the first trade is the same as
requesting the very first item in the list" ("Timestamps"), and the account trade history's recipe
(``/v1/mytrades``: start at ``timestamp`` 0, then the page's highest timestamp + 1, until a page is
empty) all say the same: a page holds the *oldest* ``limit_trades`` trades after the point given,
sorted newest first. So pages go forward: the first from ``timestamp = start - 1 ms`` (trades of the
start's own millisecond included; older ones the backfill drops), each next one from ``since_tid`` =
the newest tid held. Tids are exchange-wide and rise with time, so ``since_tid`` neither repeats nor
skips a trade, even among trades sharing a millisecond (where a timestamp cursor would). A page of
fewer than ``limit_trades`` rows reached the present: the last one.

How far back: "This public API endpoint is limited to retrieving seven calendar days of data" (the
same page also says "With timestamp, there is a 90-day hard limit": the tighter, seven days, is used:
``reach_s``).

Rate limit (docs.gemini.com "Rate Limits"): public entry points 120 requests a minute, "recommend
that you do not exceed 1 request per second", a burst of five more queued; past it HTTP 429. Used
here: one request a second, bursts of 2 (half the documented limit of 2 a second).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import quote

from ticklake.exchanges.mappers.common import MalformedResponse
from ticklake.exchanges.rest.base import FrameStamp, Span, TradePage
from ticklake.exchanges.rest.client import RateLimit, RestClient, RestError, RestPolicy
from ticklake.model import Trade
from ticklake.venues.gemini.mapper import parse_rest_trades

PATH: Final = "/v1/trades/"
MAX_PAGE: Final = 500
REACH_S: Final = 7 * 86_400.0  # "limited to retrieving seven calendar days of data"


class GeminiTrades:
    exchange = "gemini"
    reach_s: float | None = REACH_S

    def __init__(self, page_size: int = MAX_PAGE) -> None:
        self.page_size = max(1, min(page_size, MAX_PAGE))

    async def _page(self, client: RestClient, native_symbol: str, params: dict[str, int],
                    stamp: FrameStamp) -> TradePage:
        answer = await client.get(self.exchange, PATH + quote(native_symbol, safe=""),
                                  {**params, "limit_trades": self.page_size})
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
        """Every trade of ``native_symbol`` from ``start_us`` on, oldest first (``WindowTradeFetcher``)."""
        params = {"timestamp": max(0, start_us // 1000 - 1)}
        since_tid = 0
        while True:
            page = await self._page(client, native_symbol, params, stamp)
            yield page
            if len(page.trades) < self.page_size:
                return  # reached the present
            newest = max(trade.trade_id for trade in page.trades)
            if newest <= since_tid:
                return  # the venue did not move forward: asking again would loop
            since_tid = newest
            params = {"since_tid": since_tid}

    async def pages(self, client: RestClient, span: Span, stamp: FrameStamp) -> AsyncIterator[TradePage]:
        """Gemini's ids are exchange-wide, so the feed never asks by span (``Venue.ids_count_trades``);
        for whoever holds one anyway: the trades from the span's start time (or the look-back) on, the
        pages holding only what is not newer than ``span.end_us`` (when known)."""
        start_us = max(span.start_us, span.cutoff_us)
        async for page in self.since(client, span.native_symbol, start_us, stamp):
            wanted = _not_after(page.trades, span.end_us)
            yield TradePage(page.body, page.received_us, page.frame_seq, wanted)
            if len(wanted) < len(page.trades):
                return


def _not_after(trades: tuple[Trade, ...], end_us: int) -> tuple[Trade, ...]:
    return trades if end_us <= 0 else tuple(trade for trade in trades if trade.ts_us <= end_us)


# 120 requests a minute, "do not exceed 1 request per second": half of the 2 a second allowed.
POLICY: Final = RestPolicy("https://api.gemini.com", RateLimit(burst=2, per_second=1))


FETCHER = GeminiTrades
