"""Bybit spot: ``GET /v5/market/recent-trade?category=spot&symbol=&limit=``, the most recent trades only.

bybit-exchange.github.io/docs/v5/market/recent-trade: ``category`` (spot), ``symbol`` (upper case),
``limit`` "spot: [1,60], default: 60; others: [1,1000], default: 500". There is no cursor, no start id
and no start time: the answer is always the newest ``limit`` trades. Rows ``{execId, symbol, price,
size, side, time, isBlockTrade}``; ``execId`` is the WebSocket's ``i``. Rows come newest first (the
docs do not say; the SDKs and the docs' one-row example give no order either): sorted here by time,
then id, so a page is always oldest first.

**How far back a backfill reaches: 60 trades per market**, whatever the time they span. At ten trades a
second (BTCUSDT in a busy hour) that is six seconds; on a quiet pair it can be minutes. An outage
(a reconnect, a garbled frame) is recovered in full when no more than 60 trades of the market happened
between the last trade held before it and the REST request, after the backfill's grace of 0.2 s;
otherwise the page does not reach back to that trade and ``ticklake_feed_backfill_short_total`` counts
the break (``exchanges/backfill.py``: how many trades fell in the hole is unknown, since spot ids do not
count a market's trades).

Rate limit (bybit-exchange.github.io/docs/v5/rate-limit): 600 requests per 5 s per IP for HTTP, past
which Bybit answers 403 "access too frequent" and bans the IP for at least 10 minutes; per-endpoint
limits answer HTTP 200 with ``retCode`` 10006 "Too many visits!". Public market endpoints have no
per-account limit. Half of the IP limit is used here; the 10006 body is waited out like a 429.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from ticklake.exchanges.mappers.common import MalformedResponse
from ticklake.exchanges.rest.base import FrameStamp, Span, TradePage
from ticklake.exchanges.rest.client import RateLimit, RestClient, RestError, RestPolicy
from ticklake.venues.bybit.mapper import parse_rest_trades

PATH: Final = "/v5/market/recent-trade"
CATEGORY: Final = "spot"
MAX_PAGE: Final = 60  # spot's documented maximum (others: 1000)
_PERMANENT: Final = ("10001",)  # "params error" (an unknown symbol among them): asking again will not help


class BybitTrades:
    exchange = "bybit"

    def __init__(self, page_size: int = MAX_PAGE) -> None:
        self.page_size = max(1, min(page_size, MAX_PAGE))

    async def recent(self, client: RestClient, native_symbol: str, stamp: FrameStamp) -> TradePage:
        """The newest ``page_size`` trades of ``native_symbol``, oldest first (``RecentTradeFetcher``)."""
        answer = await client.get(self.exchange, PATH, {"category": CATEGORY, "symbol": native_symbol,
                                                        "limit": self.page_size})
        frame_seq = stamp.next_frame()
        try:
            trades = parse_rest_trades(answer.body, native_symbol, answer.received_us, conn_id=stamp.conn_id,
                                       frame_seq=frame_seq)
        except MalformedResponse as exc:
            permanent = any(f"error {code}:" in str(exc) for code in _PERMANENT)
            raise RestError(str(exc), retryable=not permanent, status=answer.status) from None
        return TradePage(answer.text, answer.received_us, frame_seq,
                         tuple(sorted(trades, key=lambda t: (t.ts_us, t.trade_id))))

    async def pages(self, client: RestClient, span: Span, stamp: FrameStamp) -> AsyncIterator[TradePage]:
        """A span of ids cannot be asked for: the one page there is, the most recent (``TradeFetcher``).
        Bybit's ids do not count a market's trades, so the feed never asks by span (``Venue.ids_count_trades``);
        this is here for whoever holds a span anyway."""
        yield await self.recent(client, span.native_symbol, stamp)


def _throttled(body: bytes) -> bool:
    return b'"retCode":10006' in body.replace(b" ", b"")


POLICY: Final = RestPolicy("https://api.bybit.com", RateLimit(burst=300, per_second=60), throttled=_throttled)


FETCHER = BybitTrades
