"""Binance spot: ``GET /api/v3/historicalTrades?symbol=&fromId=&limit=``, ascending by trade id.

binance-spot-api-docs ``rest-api.md`` ("Old trade lookup"): weight 25; ``limit`` default 500, max
1000; ``fromId`` is the trade id to fetch from (default: the most recent trades); rows ``{id, price,
qty, quoteQty, time, isBuyerMaker, isBestMatch}``, oldest first. ``id`` is the ``@trade`` stream's
``t``. Security type NONE in the current docs (no API key); older revisions marked it MARKET_DATA.

Ids ``first .. last`` are paged from ``fromId=first``. When the span starts before the look-back and
is longer than a page, the first id inside the look-back is found first by bisection over ids (one
``limit=1`` request per halving; ids rise with time), so a week-long outage does not page through a
week of trades only to drop them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Final

import httpx

from ticklake.exchanges.mappers.common import MalformedResponse
from ticklake.exchanges.rest.base import FrameStamp, Span, TradePage
from ticklake.exchanges.rest.client import RateLimit, RestClient, RestError, RestPolicy
from ticklake.venues.binance.mapper import parse_rest_trades

PATH: Final = "/api/v3/historicalTrades"
WEIGHT: Final = 25
MAX_PAGE: Final = 1000

log = logging.getLogger("ticklake.feeds.rest")


class BinanceTrades:
    exchange = "binance"

    def __init__(self, page_size: int = MAX_PAGE) -> None:
        self.page_size = max(1, min(page_size, MAX_PAGE))

    async def pages(self, client: RestClient, span: Span, stamp: FrameStamp) -> AsyncIterator[TradePage]:
        from_id = span.first
        if span.start_us < span.cutoff_us and span.size > self.page_size:
            from_id = await self._first_within_lookback(client, span)
        while from_id <= span.last:
            answer = await client.get(self.exchange, PATH, {"symbol": span.native_symbol, "fromId": from_id,
                                                           "limit": self.page_size}, weight=WEIGHT)
            frame_seq = stamp.next_frame()
            try:
                trades = parse_rest_trades(answer.body, span.native_symbol, answer.received_us,
                                           conn_id=stamp.conn_id, frame_seq=frame_seq)
            except MalformedResponse as exc:
                raise RestError(str(exc), retryable=True, status=answer.status) from None
            trades = tuple(sorted(trades, key=lambda t: t.trade_id))
            yield TradePage(answer.text, answer.received_us, frame_seq, trades)
            if not trades or trades[-1].trade_id < from_id:
                return  # the venue has nothing at or after from_id (yet)
            from_id = trades[-1].trade_id + 1

    async def _first_within_lookback(self, client: RestClient, span: Span) -> int:
        """The lowest id of the span whose trade is not older than the look-back (``last + 1``: none)."""
        low, high = span.first, span.last + 1
        while low < high:
            middle = (low + high) // 2
            answer = await client.get(self.exchange, PATH, {"symbol": span.native_symbol, "fromId": middle,
                                                           "limit": 1}, weight=WEIGHT)
            try:
                trades = parse_rest_trades(answer.body, span.native_symbol, answer.received_us)
            except MalformedResponse as exc:
                raise RestError(str(exc), retryable=True, status=answer.status) from None
            if not trades or trades[0].ts_us >= span.cutoff_us:
                high = middle
            else:
                low = max(middle, trades[0].trade_id) + 1
        return low


# Binance reports the request weight used this minute; past 90 % of its limit, requests wait for the
# next minute rather than collect a 429 (and risk the 418 ban that repeated 429s earn).
WEIGHT_HEADER: Final = "x-mbx-used-weight-1m"
WEIGHT_LIMIT_PER_MINUTE: Final = 6000


def _pause_s(headers: httpx.Headers) -> float | None:
    used = headers.get(WEIGHT_HEADER)
    if used is None or not used.strip().isdigit() or int(used) < WEIGHT_LIMIT_PER_MINUTE * 0.9:
        return None
    log.warning("binance REST: %s of %d request weight used this minute", used, WEIGHT_LIMIT_PER_MINUTE)
    return 60.0 - datetime.now(UTC).second + 0.5


# 6,000 request weight / min per IP documented (``historicalTrades`` weighs 25): half of it here,
# 3,000 / min with bursts of 1,000, leaving the rest for anything else sharing the IP.
POLICY: Final = RestPolicy("https://api.binance.com", RateLimit(burst=1000, per_second=50), pause_s=_pause_s)


FETCHER = BinanceTrades
