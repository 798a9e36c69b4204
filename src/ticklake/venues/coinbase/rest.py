"""Coinbase Exchange: ``GET /products/{product_id}/trades?after=&limit=``, newest first.

docs.cdp.coinbase.com/exchange/rest-api/pagination: cursor pagination, ``after`` requests the page
*older* than the cursor, ``before`` the newer one; the cursors of a page come back in the ``CB-AFTER``
and ``CB-BEFORE`` headers; ``limit`` default and max 1000. For trades the cursor is the trade id, so
``after=N`` gives the trades with ids below N. Rows ``{time, trade_id, price, size, side}``, with
``side`` the maker's (the mapper inverts it). Public endpoints: 10 requests/s per IP, bursts to 15.

A span ``first .. last`` is paged from ``after=last+1`` towards older trades until a page reaches
``first`` or the look-back; each page's trades are handed over in id order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import quote

from ticklake.exchanges.mappers.common import MalformedResponse
from ticklake.exchanges.rest.base import FrameStamp, Span, TradePage
from ticklake.exchanges.rest.client import RateLimit, RestClient, RestError, RestPolicy
from ticklake.venues.coinbase.mapper import parse_rest_trades

MAX_PAGE: Final = 1000


class CoinbaseTrades:
    exchange = "coinbase"

    def __init__(self, page_size: int = MAX_PAGE) -> None:
        self.page_size = max(1, min(page_size, MAX_PAGE))

    async def pages(self, client: RestClient, span: Span, stamp: FrameStamp) -> AsyncIterator[TradePage]:
        path = f"/products/{quote(span.native_symbol, safe='')}/trades"
        after = span.last + 1
        while True:
            answer = await client.get(self.exchange, path, {"after": after, "limit": self.page_size})
            frame_seq = stamp.next_frame()
            try:
                trades = parse_rest_trades(answer.body, span.native_symbol, answer.received_us,
                                           conn_id=stamp.conn_id, frame_seq=frame_seq)
            except MalformedResponse as exc:
                raise RestError(str(exc), retryable=True, status=answer.status) from None
            trades = tuple(sorted(trades, key=lambda t: t.trade_id))
            yield TradePage(answer.text, answer.received_us, frame_seq, trades)
            if not trades:
                return
            oldest = trades[0]
            if oldest.trade_id <= span.first or oldest.ts_us < span.cutoff_us:
                return
            cursor = answer.headers.get("cb-after", "")
            following = int(cursor) if cursor.isascii() and cursor.isdigit() else oldest.trade_id
            if following >= after:
                return  # the cursor did not move: nothing older to get
            after = following


# Public endpoints: 10 requests / s per IP, bursts to 15 (docs.cdp.coinbase.com/exchange/rest-api/
# rate-limits): half of it here, 5 / s with bursts of 10.
POLICY: Final = RestPolicy("https://api.exchange.coinbase.com", RateLimit(burst=10, per_second=5))


FETCHER = CoinbaseTrades
