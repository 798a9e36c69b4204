"""Kraken spot: ``GET /0/public/Trades?pair=&since=&count=``, ascending by time (and trade id).

docs.kraken.com "Get Recent Trades": returns the last 1000 trades by default; ``since`` is a Unix
timestamp at nanosecond resolution, ``result.last`` is the ``since`` of the next page (pass it back
verbatim: Kraken warns its precision may change); ``count`` 1 .. 1000. Rows ``[price, volume, time,
side, ordertype, misc, trade_id]``; ``trade_id`` is the id WebSocket v2 sends. ``pair`` is given in
the WebSocket v2 spelling (``BTC/USD``), which names the trades too.

A span starts at the exchange time of the trade just before it (or at the look-back, when that is
later), one nanosecond early so trades stamped in the same microsecond are included; rows outside
the span are the backfill's to drop. Paging stops at the span's last id, an empty page, or a cursor
that does not move.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from ticklake.exchanges.mappers.common import MalformedResponse
from ticklake.exchanges.rest.base import FrameStamp, Span, TradePage
from ticklake.exchanges.rest.client import RateLimit, RestClient, RestError, RestPolicy
from ticklake.venues.kraken.mapper import parse_rest_trades

PATH: Final = "/0/public/Trades"
MAX_PAGE: Final = 1000
_PERMANENT: Final = ("EQuery:", "EGeneral:Invalid arguments")


class KrakenTrades:
    exchange = "kraken"

    def __init__(self, page_size: int = MAX_PAGE) -> None:
        self.page_size = max(1, min(page_size, MAX_PAGE))

    async def pages(self, client: RestClient, span: Span, stamp: FrameStamp) -> AsyncIterator[TradePage]:
        start_us = max(span.start_us, span.cutoff_us)
        since = str(max(0, start_us * 1000 - 1))
        while True:
            answer = await client.get(self.exchange, PATH, {"pair": span.native_symbol, "since": since,
                                                           "count": self.page_size})
            frame_seq = stamp.next_frame()
            try:
                page = parse_rest_trades(answer.body, span.native_symbol, answer.received_us,
                                         conn_id=stamp.conn_id, frame_seq=frame_seq)
            except MalformedResponse as exc:
                # An unknown pair or a bad argument will not get better; anything else may.
                permanent = any(marker in str(exc) for marker in _PERMANENT)
                raise RestError(str(exc), retryable=not permanent, status=answer.status) from None
            trades = tuple(sorted(page.trades, key=lambda t: t.trade_id))
            yield TradePage(answer.text, answer.received_us, frame_seq, trades)
            if not trades or trades[-1].trade_id >= span.last or page.last == since:
                return
            since = page.last


# Kraken throttles with HTTP 200 and ``{"error": ["EGeneral:Too many requests"]}`` in the body.
_THROTTLED: Final = (b"EGeneral:Too many requests", b"EAPI:Rate limit exceeded")


def _throttled(body: bytes) -> bool:
    return any(marker in body for marker in _THROTTLED)


# Public calls are limited per IP, about one a second sustained (docs.kraken.com spot REST rate
# limits): half of it here, one per 2 s with bursts of 2.
POLICY: Final = RestPolicy("https://api.kraken.com", RateLimit(burst=2, per_second=0.5), throttled=_throttled)


FETCHER = KrakenTrades
