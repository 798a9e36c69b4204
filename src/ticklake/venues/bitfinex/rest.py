"""Bitfinex: ``GET /v2/trades/{symbol}/hist?limit=&start=&end=&sort=1``, every trade from a time on.

docs.bitfinex.com, "Trades" (REST public, ``rest-public-trades``): ``limit`` "Number of records (Max
10000)" (default 125), ``start``/``end`` epoch milliseconds (records with MTS >= start, <= end),
``sort`` "+1: sort in ascending order | -1: sort in descending order (by MTS field)". Rows ``[ID, MTS,
AMOUNT, PRICE]``; ``ID`` is the id the ``trades`` channel carries. "Rate Limit: 15 reqs/min"; past it
Bitfinex answers HTTP 429 and blocks the IP for a while (the docs' general page: 60 s; the body
``["error",11010,"ratelimit: error"]``, older answers ``{"error":"ERR_RATE_LIMIT"}``). Errors are
``["error", CODE, "message"]`` with HTTP 500 (10020 "symbol: invalid", "limit: invalid"); the client
retries a 500 like any server error, so an unknown symbol costs a few requests before it is given up.
How far back trades are served is not limited in the docs (years of history): ``reach_s`` is None.

``since(start)`` pages forward by time: ``start=`` the newest MTS of the page before, ``sort=1`` (oldest
first), until a page is not full (the present is reached). Asking again from the last millisecond
repeats that millisecond's trades (the backfill drops them by id) but cannot skip any: trades sharing
the page's last millisecond beyond the page are in the next one. A full page of one millisecond cannot
be paged past by time: that millisecond alone is asked once more with the largest page (``end=start``,
10,000), then paging goes on after it. Only a millisecond of more than 10,000 trades could lose some.

Rate: half of the documented 15 a minute. A reconciliation of ten markets that each fit one page takes
about 80 s at that pace; the pages are large, so a long outage costs few more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import quote

from ticklake.exchanges.mappers.common import MalformedResponse
from ticklake.exchanges.rest.base import FrameStamp, Span, TradePage
from ticklake.exchanges.rest.client import RateLimit, RestClient, RestError, RestPolicy
from ticklake.venues.bitfinex.mapper import parse_rest_trades

MAX_PAGE: Final = 10_000
OLDEST_FIRST: Final = 1


def trades_path(native_symbol: str) -> str:
    """The endpoint of one market: the symbol is a path segment, escaped (``tAVAX:USD`` keeps its colon)."""
    return f"/v2/trades/{quote(native_symbol, safe=':')}/hist"


class BitfinexTrades:
    exchange = "bitfinex"
    reach_s: float | None = None  # the whole history is served

    def __init__(self, page_size: int = MAX_PAGE) -> None:
        self.page_size = max(1, min(page_size, MAX_PAGE))

    async def _page(self, client: RestClient, native_symbol: str, params: dict[str, str | int],
                    stamp: FrameStamp) -> TradePage:
        answer = await client.get(self.exchange, trades_path(native_symbol), params)
        frame_seq = stamp.next_frame()
        try:
            trades = parse_rest_trades(answer.body, native_symbol, answer.received_us, conn_id=stamp.conn_id,
                                       frame_seq=frame_seq)
        except MalformedResponse as exc:
            # A 2xx body that is not trades: Bitfinex's error bodies come with HTTP 500 (retried by the
            # client); one that does not is not going to become trades by asking again.
            raise RestError(str(exc), retryable=False, status=answer.status) from None
        return TradePage(answer.text, answer.received_us, frame_seq,
                         tuple(sorted(trades, key=lambda t: (t.ts_us, t.trade_id))))

    async def since(self, client: RestClient, native_symbol: str, start_us: int,
                    stamp: FrameStamp) -> AsyncIterator[TradePage]:
        """Every trade of ``native_symbol`` from ``start_us`` (its millisecond) on, oldest first
        (``WindowTradeFetcher``; the paging is in the module docstring)."""
        start_ms = max(0, start_us // 1000)
        while True:
            page = await self._page(client, native_symbol, {"limit": self.page_size, "start": start_ms,
                                                            "sort": OLDEST_FIRST}, stamp)
            yield page
            if len(page.trades) < self.page_size:
                return  # the present: nothing newer than this page yet
            last_ms = page.trades[-1].ts_us // 1000
            if last_ms <= start_ms:  # a full page of one millisecond: time cannot page within it
                if self.page_size < MAX_PAGE:
                    yield await self._page(client, native_symbol, {"limit": MAX_PAGE, "start": start_ms,
                                                                   "end": start_ms, "sort": OLDEST_FIRST}, stamp)
                start_ms += 1
            else:
                start_ms = last_ms

    async def pages(self, client: RestClient, span: Span, stamp: FrameStamp) -> AsyncIterator[TradePage]:
        """``TradeFetcher``: the pages from the span's start (or the look-back) until they pass its end.
        Bitfinex ids do not count a market's trades, so the feed never asks by span
        (``Venue.ids_count_trades``); this is here for whoever holds a span anyway."""
        async for page in self.since(client, span.native_symbol, max(span.start_us, span.cutoff_us), stamp):
            yield page
            if page.trades and (page.trades[-1].trade_id >= span.last
                                or (span.end_us and page.trades[-1].ts_us > span.end_us)):
                return


def _throttled(body: bytes) -> bool:
    """A throttle in a 2xx body (Bitfinex sends 429; should a 200 carry one, it is waited out the same)."""
    compact = body.replace(b" ", b"")
    return b"ERR_RATE_LIMIT" in compact or compact.startswith(b'["error",11010')


# 15 requests a minute per IP: half of it, one request every 8 s, with a burst of 2.
POLICY: Final = RestPolicy("https://api-pub.bitfinex.com", RateLimit(burst=2, per_second=0.125),
                           throttled=_throttled)


FETCHER = BitfinexTrades
