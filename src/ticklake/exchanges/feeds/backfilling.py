"""Where a feed's gaps are filled from: the REST client and fetcher behind its ``Backfill``.

A feed talking to the venue's own WebSocket backfills from the venue's public REST API (or
``rest_url``); one pointed at another WebSocket (a simulator, a proxy) without a ``rest_url`` does
not backfill at all: trades from the real venue would be mixed into another tape.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping

from ticklake.exchanges.backfill import Backfill
from ticklake.exchanges.gaps import GapTracker, SeenTrades
from ticklake.exchanges.rest import RestClient, TradeFetcher, default_url, fetcher_for
from ticklake.model import Message
from ticklake.settings import FeedSettings

log = logging.getLogger("ticklake.feeds")


def display_url(url: str) -> str:
    # A combined-stream URL carries every symbol; the log line needs the endpoint, not the list.
    base, sep, _ = url.partition("?")
    return base + "?..." if sep else base


def rest_base_url(exchange: str, default_ws_url: str, ws_url: str, rest_url: str) -> str:
    """Where gaps of ``exchange`` are filled from: ``rest_url``, else the venue's public REST API when
    the WebSocket is the venue's own; "" when neither (a simulator or proxy without a REST URL: trades
    from the real venue would be mixed into another tape)."""
    if rest_url:
        return rest_url.rstrip("/")
    if not ws_url or ws_url.rstrip("/") == default_ws_url.rstrip("/"):
        return default_url(exchange)
    return ""


def feed_backfill(exchange: str, settings: FeedSettings, gaps: GapTracker,
                  publish: Callable[[list[Message]], Awaitable[None]], *, default_ws_url: str, ws_url: str,
                  rest: RestClient | None, rest_url: str, fetcher: TradeFetcher | None,
                  symbols: Mapping[str, str], rng: random.Random,
                  seen: SeenTrades | None = None, floor_us: int = 0) -> tuple[Backfill, RestClient | None]:
    """The feed's backfill, and the REST client it opened for it (None when it uses ``rest`` or none):
    the feed closes that one when it stops."""
    rest_base = rest_base_url(exchange, default_ws_url, ws_url, rest_url)
    own_rest: RestClient | None = None
    if rest_base and rest is None:
        rest = own_rest = RestClient(settings, urls={exchange: rest_base})
    elif rest_base and rest is not None and rest_url:
        rest.urls[exchange] = rest_url.rstrip("/")
    if not rest_base:
        log.info("%s: WebSocket %s is not the venue's and no REST URL is set: gaps are detected, "
                 "not backfilled", exchange, display_url(ws_url))
    backfill = Backfill(
        exchange, gaps, publish,
        fetcher=(fetcher or fetcher_for(exchange)) if rest_base else None,
        client=rest if rest_base else None,
        lookback_s=settings.backfill_lookback_s,
        symbols=symbols,
        rng=rng,
        seen=seen,
        floor_us=floor_us,
    )
    return backfill, own_rest
