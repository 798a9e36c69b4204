"""REST backfill: one shared, rate-limited HTTP client and one trades fetcher per venue.

    client = RestClient(settings.feed, urls={"binance": venue.rest_url})
    fetcher = fetcher_for("binance")
    async for page in fetcher.pages(client, span, stamp): ...
"""

from __future__ import annotations

from ticklake.exchanges.rest.base import FrameStamp, Span, TradeFetcher, TradePage
from ticklake.exchanges.rest.binance import BinanceTrades
from ticklake.exchanges.rest.client import DEFAULT_URLS, RateLimit, RestClient, RestError, RestResponse, TokenBucket
from ticklake.exchanges.rest.coinbase import CoinbaseTrades
from ticklake.exchanges.rest.kraken import KrakenTrades

__all__ = [
    "DEFAULT_URLS",
    "FETCHERS",
    "BinanceTrades",
    "CoinbaseTrades",
    "FrameStamp",
    "KrakenTrades",
    "RateLimit",
    "RestClient",
    "RestError",
    "RestResponse",
    "Span",
    "TokenBucket",
    "TradeFetcher",
    "TradePage",
    "fetcher_for",
]

FETCHERS: dict[str, type[BinanceTrades] | type[KrakenTrades] | type[CoinbaseTrades]] = {
    "binance": BinanceTrades,
    "kraken": KrakenTrades,
    "coinbase": CoinbaseTrades,
}


def fetcher_for(exchange: str, page_size: int | None = None) -> TradeFetcher:
    """The REST trades fetcher of ``exchange`` (``page_size``: rows per request, default the venue's max)."""
    try:
        fetcher_class = FETCHERS[exchange]
    except KeyError:
        raise ValueError(f"no REST backfill for exchange {exchange!r}") from None
    return fetcher_class() if page_size is None else fetcher_class(page_size)
