"""REST backfill: one shared, rate-limited HTTP client and one trades fetcher per venue.

    client = RestClient(settings.feed, urls={"binance": venue.rest_url})
    fetcher = fetcher_for("binance")
    async for page in fetcher.pages(client, span, stamp): ...

Each venue's fetcher and REST policy (URL, rate limit) are in its folder: ``ticklake/venues/<name>/rest.py``.
"""

from __future__ import annotations

from ticklake.exchanges import registry
from ticklake.exchanges.rest.base import (
    FrameStamp,
    RecentTradeFetcher,
    Span,
    TradeFetcher,
    TradePage,
    VenueFetcher,
    WindowTradeFetcher,
)
from ticklake.exchanges.rest.client import (
    RateLimit,
    RestClient,
    RestError,
    RestPolicy,
    RestResponse,
    TokenBucket,
    default_url,
    policy_for,
)

__all__ = [
    "FrameStamp",
    "RateLimit",
    "RecentTradeFetcher",
    "RestClient",
    "RestError",
    "RestPolicy",
    "RestResponse",
    "Span",
    "TokenBucket",
    "TradeFetcher",
    "TradePage",
    "VenueFetcher",
    "WindowTradeFetcher",
    "default_url",
    "fetcher_for",
    "policy_for",
]


def fetcher_for(exchange: str, page_size: int | None = None) -> TradeFetcher:
    """The REST trades fetcher of ``exchange`` (``page_size``: rows per request, default the venue's max)."""
    try:
        fetcher_class = registry.fetcher_class(exchange)
    except ValueError:
        raise ValueError(f"no REST backfill for exchange {exchange!r}") from None
    return fetcher_class() if page_size is None else fetcher_class(page_size)
