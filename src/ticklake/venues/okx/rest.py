"""OKX: ``GET /api/v5/market/history-trades?instId=&type=1&after=&limit=``, newest first.

www.okx.com/docs-v5, "Market data", "GET / Trades history": "Retrieve the recent transactions of an
instrument from the last 3 months with pagination." ``type`` 1 pages by trade id (the default), 2 by
time; ``after`` returns the records *earlier* than the given tradeId (or ts), ``before`` the newer ones;
``limit`` at most and by default 100. Rate limit: 20 requests per 2 seconds per IP. Rows ``{instId,
side, sz, px, source, tradeId, ts}``, newest first; ``tradeId`` is the id ``trades-all`` carries.
Errors come as ``{"code": "<not 0>", "msg": ..., "data": []}``: 50011 is the rate limit (HTTP 429),
51xxx a bad request (51001 "Instrument ID does not exist"), other 50xxx the service's trouble.

A span ``first .. last`` is paged from ``after=last+1`` towards older trades until a page reaches
``first`` or the look-back (at most 3 months: older trades cannot be had); each page's trades are
handed over in id order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from ticklake.exchanges.mappers.common import MalformedResponse
from ticklake.exchanges.rest.base import FrameStamp, Span, TradePage
from ticklake.exchanges.rest.client import RateLimit, RestClient, RestError, RestPolicy
from ticklake.venues.okx.mapper import parse_rest_trades

PATH: Final = "/api/v5/market/history-trades"
MAX_PAGE: Final = 100
BY_TRADE_ID: Final = "1"
_PERMANENT: Final = "REST error '51"  # 51xxx: the request is wrong (unknown instrument, bad parameter)


class OkxTrades:
    exchange = "okx"

    def __init__(self, page_size: int = MAX_PAGE) -> None:
        self.page_size = max(1, min(page_size, MAX_PAGE))

    async def pages(self, client: RestClient, span: Span, stamp: FrameStamp) -> AsyncIterator[TradePage]:
        after = span.last + 1
        while True:
            answer = await client.get(self.exchange, PATH, {"instId": span.native_symbol, "type": BY_TRADE_ID,
                                                           "after": after, "limit": self.page_size})
            frame_seq = stamp.next_frame()
            try:
                trades = parse_rest_trades(answer.body, span.native_symbol, answer.received_us,
                                           conn_id=stamp.conn_id, frame_seq=frame_seq)
            except MalformedResponse as exc:
                raise RestError(str(exc), retryable=_PERMANENT not in str(exc), status=answer.status) from None
            trades = tuple(sorted(trades, key=lambda t: t.trade_id))
            yield TradePage(answer.text, answer.received_us, frame_seq, trades)
            if not trades:
                return
            oldest = trades[0]
            if oldest.trade_id <= span.first or oldest.ts_us < span.cutoff_us or oldest.trade_id >= after:
                return  # reached the span, or the look-back; or the page did not move towards older trades
            after = oldest.trade_id


# A throttle is HTTP 429 with code 50011; should one come as a 2xx body, it is waited out the same way.
def _throttled(body: bytes) -> bool:
    return b'"code":"50011"' in body


# 20 requests per 2 s per IP: half of it here, 5 / s with bursts of 10.
POLICY: Final = RestPolicy("https://www.okx.com", RateLimit(burst=10, per_second=5), throttled=_throttled)


FETCHER = OkxTrades
